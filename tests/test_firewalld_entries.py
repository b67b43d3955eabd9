"""firewalld's direct rules, passthroughs and rich rules: read with their lines, matched to the
kernel rules they make, and replaced with `firewall-cmd --permanent` commands (pure: no host)."""

from __future__ import annotations

import pytest

from checks.support import audit, filt
from lbfw.errors import InputError
from lbfw.fix.firewalld import firewalld_changes
from lbfw.fix.plan import plan_fixes
from lbfw.managers import firewalld
from lbfw.model import Action, HostFacts, Match, Origin, Rule, Ruleset
from lbfw.pipeline import audit_ruleset
from lbfw.read import iptables

DIRECT_PATH = "/etc/firewalld/direct.xml"
ZONE_PATH = "/etc/firewalld/zones/public.xml"
DIRECT = """\
<?xml version="1.0" encoding="utf-8"?>
<direct>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-s 127.0.0.1 -p tcp --dport 8080 -j ACCEPT</rule>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="1">-p tcp --dport 8080 -j DROP</rule>
  <passthrough ipv="ipv4">-I INPUT -s 127.0.0.1/32 -p tcp --dport 9 -j ACCEPT</passthrough>
  <rule ipv="ipv4" table="filter" chain="OUTPUT" priority="0">-d 127.0.0.1 -j ACCEPT</rule>
  <rule ipv="ipv4" table="raw" chain="PREROUTING" priority="0">! -i lo -s 127.0.0.1 -j DROP</rule>
</direct>
"""
ZONE = """\
<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>Public</short>
  <service name="ssh"/>
  <rule family="ipv4">
    <source address="127.0.0.1"/>
    <port port="9000" protocol="tcp"/>
    <log prefix="lo " level="info">
      <limit value="1/m"/>
    </log>
    <accept/>
  </rule>
  <rule family="ipv4" priority="-1">
    <source address="192.0.2.0/24" invert="True"/>
    <service name="http"/>
    <reject type="icmp-port-unreachable"/>
  </rule>
</zone>
"""
FILES = {DIRECT_PATH: DIRECT, ZONE_PATH: ZONE}

# What iptables-nft-save printed for DIRECT with firewalld 1.3 on its nftables backend (the
# passthrough first: it inserts at the top).
KERNEL = filt(
    "-A INPUT -s 127.0.0.1/32 -p tcp -m tcp --dport 9 -j ACCEPT",
    "-A INPUT -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j ACCEPT",
    "-A INPUT -p tcp -m tcp --dport 8080 -j DROP",
    policy="ACCEPT",
)


def test_entries_are_read_with_their_lines():
    config = firewalld.parse(FILES)
    assert [(d.line, d.chain, d.priority) for d in config.direct] == [
        (3, "INPUT", "0"),
        (4, "INPUT", "1"),
        (6, "OUTPUT", "0"),
        (7, "PREROUTING", "0"),
    ]
    assert config.direct[0].args == ("-s", "127.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT")
    [passthrough] = config.passthroughs
    assert passthrough.line == 5 and passthrough.args[:2] == ("-I", "INPUT")
    narrow, other = config.rich
    assert (narrow.path, narrow.line, narrow.zone, narrow.source) == (ZONE_PATH, 5, "public", "127.0.0.1")
    # the rich language firewall-cmd takes, in firewalld's own order (its Rich_Rule.__str__)
    assert narrow.text == (
        'rule family="ipv4" source address="127.0.0.1" port port="9000" protocol="tcp" '
        'log prefix="lo " level="info" limit value="1/m" accept'
    )
    assert other.text == (
        'rule priority="-1" family="ipv4" source NOT address="192.0.2.0/24" service name="http" '
        'reject type="icmp-port-unreachable"'
    )
    assert other.source is None and firewalld.replacement(other) is None


def test_a_file_firewalld_cannot_read_is_an_input_error_with_its_line():
    with pytest.raises(InputError) as error:
        firewalld.parse({DIRECT_PATH: "<direct>\n  <rule>-j ACCEPT</direct>\n"})
    assert str(error.value).startswith(f"{DIRECT_PATH}:2: not XML firewalld can read")
    with pytest.raises(InputError) as error:
        firewalld.parse({DIRECT_PATH: '<direct>\n<rule ipv="ipv4">-m comment --comment "x -j ACCEPT</rule>\n</direct>'})
    assert str(error.value) == f"{DIRECT_PATH}:2: rule: No closing quotation"


def test_replacements_add_the_loopback_rule_then_remove_the_narrow_one():
    config = firewalld.parse(FILES)
    accept, drop, output, antispoof = config.direct
    head = ("firewall-cmd", "--permanent", "--direct")
    where = ("ipv4", "filter", "INPUT", "0")
    assert firewalld.replacement(accept).commands == (
        (*head, "--add-rule", *where, "-i", "lo", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT"),
        (*head, "--remove-rule", *where, "-s", "127.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT"),
    )
    assert firewalld.replacement(accept, "range").commands[0][-8:] == (
        *("-s", "127.0.0.0/8", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT"),
    )
    assert firewalld.replacement(drop) is None
    assert firewalld.replacement(output).commands[0][-4:] == ("-o", "lo", "-j", "ACCEPT")
    # a rule that names an interface already keeps it: the address becomes the range
    assert firewalld.replacement(antispoof).commands[0][-7:] == ("!", "-i", "lo", "-s", "127.0.0.0/8", "-j", "DROP")
    [passthrough] = config.passthroughs
    assert firewalld.replacement(passthrough).commands[0] == (
        *head,
        "--add-passthrough",
        "ipv4",
        *("-I", "INPUT", "-i", "lo", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"),
    )
    rich = firewalld.replacement(config.rich[0])
    assert rich.commands[0][:4] == ("firewall-cmd", "--permanent", "--zone=public", "--add-rich-rule")
    assert rich.commands[0][4] == config.rich[0].text.replace('"127.0.0.1"', '"127.0.0.0/8"')
    assert rich.commands[1][3:] == ("--remove-rich-rule", config.rich[0].text)
    assert firewalld.how(config.rich[0]).startswith(
        f"{ZONE_PATH}:5: `firewall-cmd --permanent --zone=public --add-rich-rule '"
    )
    assert firewalld.how(config.rich[0]).endswith("`firewall-cmd --reload`")
    assert firewalld.how(drop) == (
        f"{DIRECT_PATH}:4: change it with `firewall-cmd --permanent`, then `firewall-cmd --reload`"
    )


def test_kernel_rules_are_traced_to_the_entry_that_made_them():
    config = firewalld.parse(FILES)
    [table] = iptables.parse(KERNEL, "live:iptables-nft", family="ip", lazy=False)
    passthrough, accept, drop = table.chains["INPUT"].rules
    assert firewalld.entry_for(config, "ip", "filter", "INPUT", passthrough) == config.passthroughs[0]
    assert firewalld.entry_for(config, "ip", "filter", "INPUT", accept) == config.direct[0]
    assert firewalld.entry_for(config, "ip", "filter", "INPUT", drop) == config.direct[1]
    # the iptables backend's chain for a direct rule on INPUT
    assert firewalld.entry_for(config, "ip", "filter", "INPUT_direct", accept) == config.direct[0]
    # not for IPv6, another table, or a rule with another port
    assert firewalld.entry_for(config, "ip6", "filter", "INPUT", accept) is None
    assert firewalld.entry_for(config, "ip", "mangle", "INPUT", accept) is None
    [other] = iptables.parse(
        filt("-A INPUT -s 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j ACCEPT"), "x", family="ip", lazy=False
    )
    assert firewalld.entry_for(config, "ip", "filter", "INPUT", other.chains["INPUT"].rules[0]) is None


def _rich_kernel_rule(port: int) -> Rule:
    """`ip saddr 127.0.0.1 tcp dport PORT accept`, as the nft reader models firewalld's rule."""
    matches = (
        Match("ip.saddr", ((0x7F000001, 0x7F000001),), text="ip saddr 127.0.0.1"),
        Match("meta.l4proto", ((6, 6),), text="tcp"),
        Match("th.dport", ((port, port),), text=f"tcp dport {port}"),
    )
    return Rule(matches, Action("accept"), f"ip saddr 127.0.0.1 tcp dport {port} accept", Origin("live:nftables"))


def test_zone_chains_are_traced_to_the_zone_rich_rule():
    config = firewalld.parse(FILES)
    rich = config.rich[0]
    assert firewalld.entry_for(config, "inet", "firewalld", "filter_IN_public_allow", _rich_kernel_rule(9000)) == rich
    assert firewalld.entry_for(config, "ip", "filter", "IN_public_allow", _rich_kernel_rule(9000)) == rich
    assert firewalld.entry_for(config, "inet", "firewalld", "filter_IN_public_allow", _rich_kernel_rule(22)) is None
    assert firewalld.entry_for(config, "inet", "firewalld", "filter_IN_work_allow", _rich_kernel_rule(9000)) is None
    # an accept never lands in the zone's deny chain
    assert firewalld.entry_for(config, "inet", "firewalld", "filter_IN_public_deny", _rich_kernel_rule(9000)) is None


def test_a_finding_on_a_direct_rule_names_the_file_line_and_commands():
    host = HostFacts(lo_addrs=("127.0.0.1/8",), local_127_route=True, firewalld_files=FILES)
    [finding] = [f for f in audit(KERNEL, host=host) if f.check == "LB002" and "8080" in f.rule.text]
    assert finding.owner == "firewalld" and finding.extra["firewalld"] == firewalld.parse(FILES).direct[0]
    assert finding.message.endswith(
        "This rule is managed by firewalld, which rewrites it: change firewalld's configuration instead "
        f"({DIRECT_PATH}:3: `firewall-cmd --permanent --direct --add-rule ipv4 filter INPUT 0 -i lo -p tcp "
        "--dport 8080 -j ACCEPT`, `firewall-cmd --permanent --direct --remove-rule ipv4 filter INPUT 0 -s 127.0.0.1 "
        "-p tcp --dport 8080 -j ACCEPT`, `firewall-cmd --reload`)."
    )
    # the drop that comes with it is firewalld's too (LB001 has no automatic fix: no commands)
    findings, _ = audit_ruleset(Ruleset(tables=iptables.parse(KERNEL, "live:iptables-nft", family="ip"), host=host))
    [drop] = [f for f in findings if f.check == "LB001"]
    assert drop.owner == "firewalld" and f"({DIRECT_PATH}:4: change it with `firewall-cmd" in drop.message
    # without firewalld's files the same rule is nobody's
    [plain] = [f for f in audit(KERNEL) if f.check == "LB002" and "8080" in f.rule.text]
    assert plain.owner is None and "firewalld" not in plain.message


def test_lbfw_fix_turns_the_refusal_into_firewall_cmd_inside_the_transaction():
    host = HostFacts(lo_addrs=("127.0.0.1/8",), local_127_route=True, firewalld_files=FILES)
    tables = iptables.parse(KERNEL, "live:iptables-nft", family="ip", lazy=False)
    ruleset = Ruleset(tables=tables, host=host)
    findings, _ = audit_ruleset(ruleset)
    plan = plan_fixes(ruleset, findings)
    assert not plan.edits
    changes = firewalld_changes(plan.refusals, findings, "range")
    assert sorted(c.why.split(": ")[-1] for c in changes.values()) == [f"{DIRECT_PATH}:3", f"{DIRECT_PATH}:5"]
    for change in changes.values():
        assert (
            change.manager == "firewalld"
            and change.files == (DIRECT_PATH, DIRECT_PATH + ".old")
            and change.writes == ()
        )
        assert change.commands[-1] == ("firewall-cmd", "--reload") and change.steps() == list(change.commands)
        assert "127.0.0.0/8" in change.commands[0]

"""The checks on small rulesets read by the real parser and judged by the real engine."""

from __future__ import annotations

import pytest

from lbfw.analyze.engine import Engine
from lbfw.checks import ALL, at_or_above, run_checks
from lbfw.suppression import ignored_ids
from lbfw.checks.context import LOOP4_HI, LOOP4_LO, narrow_loopback
from lbfw.checks.docs import DOC_SECTIONS, sections
from lbfw.checks.owners import owner_of
from lbfw.model import HostFacts, Ruleset
from lbfw.read import iptables_save
from lbfw.results import Flow

FLOWS = [Flow(p, s, 80, c) for p in ("tcp", "udp") for c in (None, "127.0.0.2")
         for s in ("127.0.0.1", "127.0.0.53", "127.66.66.66")] + [Flow("tcp", "::1", 80)]


def audit(text: str, family: str = "ip", host=None):
    rs = Ruleset(tables=iptables_save.parse(text, "t.rules", family=family), host=host)
    engine = Engine(rs)
    results = [engine.evaluate(f) for f in FLOWS]
    return run_checks(rs, engine, results)


def ids(findings) -> list:
    return sorted({f.check for f in findings})


def filt(*lines: str, policy: str = "DROP", output: str = "ACCEPT") -> str:
    return "\n".join(["*filter", f":INPUT {policy} [0:0]", ":FORWARD DROP [0:0]", f":OUTPUT {output} [0:0]",
                      *lines, "COMMIT", ""])


def test_every_check_documents_itself_in_ruff_order():
    seen = set()
    for check in ALL:
        assert check.ID not in seen
        seen.add(check.ID)
        assert check.SEVERITY in ("error", "warning", "note")
        assert sections(check.DOC) == list(DOC_SECTIONS), check.ID


@pytest.mark.parametrize("spelling", ["127.0.0.1", "127.0.0.1/32", "127.0.0.1/255.255.255.255"])
def test_lb002_fires_on_every_spelling_of_127_0_0_1(spelling):
    found = audit(filt(f"-A INPUT -s {spelling} -j ACCEPT"))
    lb002 = [f for f in found if f.check == "LB002"]
    assert len(lb002) == 1 and lb002[0].line == 5 and lb002[0].severity == "warning"
    assert "127.0.0.2" in {fl.client for fl in lb002[0].flows}


def test_lb002_quiet_for_interface_and_whole_block():
    assert ids(audit(filt("-A INPUT -i lo -j ACCEPT"))) == []
    assert ids(audit(filt("-A INPUT -s 127.0.0.0/8 -j ACCEPT"))) == []
    # a narrow address on another interface accepts no loopback traffic
    assert "LB002" not in ids(audit(filt("-A INPUT -i eth0 -s 127.0.0.1 -j ACCEPT", "-A INPUT -i lo -j ACCEPT")))


def test_lb002_reported_when_conntrack_masks_it_and_names_bound_clients():
    found = audit(filt("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                       "-A INPUT -s 127.0.0.1/32 -j ACCEPT"))
    lb002 = [f for f in found if f.check == "LB002"]
    assert lb002, found
    clients = {fl.client for fl in lb002[0].flows}
    servers = {fl.server for fl in lb002[0].flows if fl.client is None}
    assert clients == {"127.0.0.2"}          # replies from .53 now pass as ESTABLISHED
    assert servers == set()
    assert "LB001" in ids(found)


def test_lb002_through_a_user_chain_both_ways():
    into = audit(filt("-A INPUT -s 127.0.0.1 -j LOOP", "-A LOOP -j ACCEPT").replace(
        ":OUTPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]\n:LOOP - [0:0]"))
    assert [f.line for f in into if f.check == "LB002"] == [6]
    inside = audit(filt("-A INPUT -j LOOP", "-A LOOP -s 127.0.0.1 -j ACCEPT").replace(
        ":OUTPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]\n:LOOP - [0:0]"))
    assert [f.line for f in inside if f.check == "LB002"] == [7]


def test_unreferenced_chain_is_not_reported():
    text = filt("-A INPUT -i lo -j ACCEPT", "-A DEAD -s 127.0.0.1 -j ACCEPT").replace(
        ":OUTPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]\n:DEAD - [0:0]")
    assert ids(audit(text)) == []


def test_lb002_on_output_destination():
    found = audit(filt("-A OUTPUT -d 127.0.0.1/32 -j ACCEPT", policy="ACCEPT", output="DROP"))
    assert ids(found) == ["LB001", "LB002"]
    lb002 = next(f for f in found if f.check == "LB002")
    assert "destination" in lb002.message and "-o lo" in lb002.message


def test_lb002_owner_match_is_a_note():
    found = audit(filt("-A OUTPUT -d 127.0.0.1/32 -o lo -p tcp --dport 9050 -m owner --uid-owner 0 -j ACCEPT",
                       "-A OUTPUT -j REJECT", policy="ACCEPT", output="DROP"))
    assert {f.severity for f in found} == {"note"}
    assert "LB002" in ids(found) and "LB001" in ids(found)


def test_lb003_narrow_antispoofing_and_route_localnet_makes_it_an_error():
    text = filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -s 127.0.0.1/32 -j DROP")
    found = audit(text)
    assert ids(found) == ["LB003"] and found[0].severity == "warning" and found[0].line == 6
    hot = audit(text, host=HostFacts(route_localnet={"all": 1, "eth0": 1}, local_127_route=True))
    lb003 = [f for f in hot if f.check == "LB003"]
    assert lb003[0].severity == "error" and "route_localnet" in lb003[0].message
    assert "LB005" not in ids(hot)          # policy DROP: the network cannot reach 127.0.0.1 services anyway
    open_text = filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -s 127.0.0.1/32 -j DROP", policy="ACCEPT")
    hot_open = audit(open_text, host=HostFacts(route_localnet={"all": 1}, local_127_route=True))
    assert ids(hot_open) == ["LB003", "LB005"]      # the narrow drop does not protect 127.0.0.1 from 192.0.2.1


def test_lb003_through_a_log_and_drop_chain():
    text = filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -s 127.0.0.1/32 -j LOG_DROP",
                "-A LOG_DROP -j LOG --log-prefix \"spoof \"", "-A LOG_DROP -j DROP").replace(
        ":OUTPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]\n:LOG_DROP - [0:0]")
    assert [(f.check, f.line) for f in audit(text)] == [("LB003", 7)]


def test_lb003_quiet_for_whole_block_and_port_specific_drops():
    assert ids(audit(filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP"))) == []
    text = ("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            "-A PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8080 -j DROP\nCOMMIT\n")
    assert ids(audit(text)) == []


def test_lb005_quiet_when_127_8_is_dropped_or_route_localnet_off():
    host_on = HostFacts(route_localnet={"all": 0, "eth0": 1}, local_127_route=True)
    assert "LB005" in ids(audit(filt("-A INPUT -i lo -j ACCEPT", policy="ACCEPT"), host=host_on))
    protected = filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP", policy="ACCEPT")
    assert ids(audit(protected, host=host_on)) == []
    host_off = HostFacts(route_localnet={"all": 0, "default": 0}, local_127_route=True)
    assert ids(audit(filt("-A INPUT -i lo -j ACCEPT", policy="ACCEPT"), host=host_off)) == []


def test_lb006_lo_without_127_8():
    host = HostFacts(lo_addrs=("127.0.0.1/32", "::1/128"), local_127_route=False)
    found = audit(filt("-A INPUT -i lo -j ACCEPT"), host=host)
    assert ids(found) == ["LB006"] and "127.0.0.1/32" in found[0].message and found[0].source == "live:host"


def test_lb004_ipv6_loopback_blocked_and_quiet_with_lo():
    text = filt("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    rs_found = audit(text, family="ip6")
    assert ids(rs_found) == ["LB004"]
    assert ids(audit(filt("-A INPUT -i lo -j ACCEPT"), family="ip6")) == []
    assert ids(audit(filt("-A INPUT -s ::1/128 -j ACCEPT"), family="ip6")) == []


def test_lb001_names_policy_and_rule():
    found = audit(filt("-A INPUT -s 127.0.0.2 -j DROP", "-A INPUT -s 127.0.0.1 -j ACCEPT", policy="ACCEPT"))
    lb001 = [f for f in found if f.check == "LB001"]
    assert [f.line for f in lb001] == [5]
    assert {fl.client for fl in lb001[0].flows} == {"127.0.0.2"}
    assert lb001[0].rule is not None and lb001[0].severity == "error"


def test_second_table_on_the_same_hook_still_drops():
    text = filt("-A INPUT -i lo -j ACCEPT") + "*security\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n" \
        ":OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    found = audit(text)
    assert ids(found) == ["LB001"] and found[0].table == "security"


def test_suppression_by_comment_line_and_by_rule_comment():
    above = filt("# lbfw: ignore LB002", "-A INPUT -s 127.0.0.1 -j ACCEPT")
    assert ids(audit(above)) == ["LB001"]
    inline = filt('-A INPUT -s 127.0.0.1 -m comment --comment "lbfw: ignore LB002" -j ACCEPT')
    assert ids(audit(inline)) == ["LB001"]
    other = filt('-A INPUT -s 127.0.0.1 -m comment --comment "lbfw: ignore LB003" -j ACCEPT')
    assert ids(audit(other)) == ["LB001", "LB002"]


def test_ignored_ids_parsing():
    assert ignored_ids("keep it. lbfw: ignore LB002, lb003") == {"LB002", "LB003"}
    assert ignored_ids("lbfw: ignore") == {"ALL"}
    assert ignored_ids("nothing here") == frozenset()


def test_narrow_loopback_ranges():
    one = 0x7F000001
    assert narrow_loopback([(one, one)]) == [(one, one)]
    assert narrow_loopback([(LOOP4_LO, LOOP4_HI)]) is None
    assert narrow_loopback([(0x7F000002, 0x7F000002)]) is None          # 127.0.0.2 alone is not the mistake
    assert narrow_loopback([(0, 0xFFFFFFFF)]) is None                    # 0.0.0.0/0 covers all of 127/8
    assert narrow_loopback([(0x7F000000, 0x7F0000FF)]) == [(0x7F000000, 0x7F0000FF)]


@pytest.mark.parametrize("table,chain,comment,owner", [
    ("nat", "DOCKER", None, "docker"),
    ("nat", "DOCKER_OUTPUT", None, "docker"),
    ("raw", "PREROUTING", "DROP REMOTE LOOPBACK", "docker"),
    ("filter", "KUBE-FIREWALL", None, "kube-proxy"),
    ("kube-proxy", "filter-input", None, "kube-proxy"),
    ("filter", "ufw-before-input", None, "ufw"),
    ("firewalld", "filter_INPUT", None, "firewalld"),
    ("filter", "IN_public_allow", None, "firewalld"),
    ("filter", "f2b-sshd", None, "fail2ban"),
    ("fw4", "input", None, "fw4"),
    ("filter", "INPUT", None, None),
    ("filter", "LOOPBACK", "my rule", None),
])
def test_owner_of(table, chain, comment, owner):
    class R:
        pass
    rule = R()
    rule.comment = comment
    rule.action = None
    assert owner_of(table, chain, rule) == owner


def test_manager_owned_finding_names_the_manager():
    text = filt("-A INPUT -j ufw-before-input", "-A ufw-before-input -s 127.0.0.1 -j ACCEPT").replace(
        ":OUTPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]\n:ufw-before-input - [0:0]")
    lb002 = [f for f in audit(text) if f.check == "LB002"]
    assert lb002[0].owner == "ufw" and "ufw's configuration" in lb002[0].message
    assert lb002[0].to_json()["owner"] == "ufw"


def test_fail_on_threshold():
    found = audit(filt("-A INPUT -s 127.0.0.1 -j ACCEPT"))
    assert at_or_above(found, "error") and at_or_above(found, "note") and not at_or_above(found, "never")
    warn_only = [f for f in found if f.severity == "warning"]
    assert not at_or_above(warn_only, "error") and at_or_above(warn_only, "warning")


def test_lb005_narrow_destination_drop_leaves_other_loopback_services_open():
    host = HostFacts(route_localnet={"eth0": 1}, local_127_route=True)
    text = filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -d 127.0.0.1/32 -j DROP", policy="ACCEPT")
    assert ids(audit(text, host=host)) == ["LB003", "LB005"]


def test_kube_firewall_protects_against_route_localnet(examples_dir):
    from lbfw.read import read_sources
    rs = read_sources([str(examples_dir / "kube-proxy-firewall.rules")])
    rs.host = HostFacts(route_localnet={"all": 1, "eth0": 1}, local_127_route=True)
    engine = Engine(rs)
    assert run_checks(rs, engine, [engine.evaluate(f) for f in FLOWS]) == []


def test_lb001_explains_an_accept_in_another_table_does_not_end_the_packet(examples_dir):
    from lbfw.pipeline import audit_ruleset
    from lbfw.read import read_sources
    findings, _ = audit_ruleset(read_sources([str(examples_dir / "nft-two-tables.nft")]))
    assert [(f.check, f.table, f.chain) for f in findings] == [("LB001", "extra", "input")]
    assert "accepted first by inet filter input" in findings[0].message
    assert "accept ends only its own base chain" in findings[0].message


def test_lb002_masked_by_an_earlier_output_drop_is_still_a_warning():
    found = audit(filt("-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -i lo -j ACCEPT",
                       "-A OUTPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -o lo -j ACCEPT", output="DROP"))
    lb002 = {f.chain: f for f in found if f.check == "LB002"}
    assert set(lb002) == {"INPUT", "OUTPUT"}
    assert lb002["INPUT"].severity == "warning" and "INPUT still drops" in lb002["INPUT"].message
    assert lb002["OUTPUT"].severity == "warning" and lb002["OUTPUT"].flows


def test_lb002_redundant_narrow_accept_is_a_note():
    found = audit(filt("-A INPUT -s 127.0.0.1/32 -j ACCEPT", "-A INPUT -i lo -j ACCEPT"))
    assert [(f.check, f.severity) for f in found] == [("LB002", "note")]


def test_lb002_in_raw_is_not_blamed_for_a_filter_drop():
    text = ("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -s 127.0.0.1/32 -j ACCEPT\nCOMMIT\n"
            + filt("-A INPUT -i lo -j ACCEPT"))
    assert [(f.check, f.severity, f.table) for f in audit(text)] == [("LB002", "note", "raw")]


def test_lb002_partial_block_is_named_as_such():
    found = [f for f in audit(filt("-A INPUT -s 127.0.0.0/24 -j ACCEPT")) if f.check == "LB002"]
    assert found and "addresses 127.0.0.0-127.0.0.255 only, not all of 127.0.0.0/8" in found[0].message


def test_checks_never_walk_nat_tables_of_a_kube_proxy_dump():
    """Scaling without timing: on a kube-proxy-shaped dump the checks look at the small filter
    table only; the nat table (almost every rule) is never walked."""
    import sys as _sys
    from pathlib import Path as _Path
    _sys.path.insert(0, str(_Path(__file__).parent / "benchmarks"))
    import generate
    from lbfw.analyze.flows import default_flows
    from lbfw.checks.context import CheckContext

    rs = Ruleset(tables=iptables_save.parse(generate.kube_dump(3000), "kube.rules"))
    nat = next(t for t in rs.tables if t.name == "nat")
    assert sum(len(c.rules) for c in nat.chains.values()) > 2000
    engine = Engine(rs)
    ctx = CheckContext(rs, engine, [engine.evaluate(f) for f in default_flows(rs)])
    found = [f for chk in ALL for f in chk.check(ctx)]
    assert id(nat) not in ctx._reach
    assert {f.check for f in found if f.severity != "note"} == {"LB001", "LB002"}


def test_lb002_negated_drop_that_spares_127_0_0_1_alone():
    found = audit(filt("-A INPUT -p tcp --dport 80 ! -s 127.0.0.1/32 -j DROP", policy="ACCEPT"))
    lb002 = [f for f in found if f.check == "LB002"]
    assert len(lb002) == 1 and "only 127.0.0.1 is let through" in lb002[0].message
    assert {fl.client for fl in lb002[0].flows} == {"127.0.0.2"}
    # sparing the whole block, or a negated interface, is correct
    assert ids(audit(filt("-A INPUT -p tcp --dport 80 ! -s 127.0.0.0/8 -j DROP", policy="ACCEPT"))) == []
    assert ids(audit(filt("-A INPUT -p tcp --dport 80 ! -i lo -j DROP", policy="ACCEPT"))) == []

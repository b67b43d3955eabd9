"""The planner on plain model objects (no reader, no kernel): defines, named sets, refusals,
directions through user chains, and the live helpers that turn edits into content-addressed
changes and each backend's transaction script."""

from __future__ import annotations

import pytest

from lbfw.backends import BACKENDS, RuleMoved, TableRef
from lbfw.fix import live
from lbfw.fix.plan import LiveTarget, apply_to_text, plan_fixes
from lbfw.model import Action, Chain, Origin, Rule, Ruleset, Table
from lbfw.results import Finding


def nft_ruleset(path: str, text: str, rules: dict, hooks: dict, jumps: dict = None):
    """A model of an nft file: ``rules`` maps line number -> chain; ``hooks`` chain -> hook or None."""
    table = Table("inet", "filter", "file", "nft", path)
    lines = text.split("\n")
    for name, hook in hooks.items():
        table.chains[name] = Chain(name, hook=hook, priority=0 if hook else None, policy="drop" if hook else None)
    for line, chain in rules.items():
        target = (jumps or {}).get(line)
        action = Action("jump", target=target) if target else Action("accept")
        table.chains[chain].rules.append(Rule((), action, lines[line - 1].strip(), Origin(path, line)))
    return Ruleset(tables=[table])


def finding(ruleset, line, check="LB002", severity="warning", owner=None, deliberate=None):
    for table in ruleset.tables:
        for chain in table.chains.values():
            for rule in chain.rules:
                if rule.origin.line == line:
                    return Finding(
                        check,
                        severity,
                        "narrow",
                        source=rule.origin.source,
                        line=line,
                        table=table.name,
                        chain=chain.name,
                        rule=rule,
                        owner=owner,
                        deliberate=deliberate,
                    )
    raise LookupError(line)


DEFINE_TWICE = """\
define LOCAL = 127.0.0.1
table inet filter {
\tchain input {
\t\ttype filter hook input priority 0; policy drop;
\t\tip saddr $LOCAL accept
\t}
\tchain output {
\t\ttype filter hook output priority 0; policy drop;
\t\tip daddr $LOCAL tcp dport 9050 accept
\t}
}
"""


def test_define_used_by_two_findings_is_widened_once_in_range_style():
    rs = nft_ruleset("f.nft", DEFINE_TWICE, {5: "input", 9: "output"}, {"input": "input", "output": "output"})
    plan = plan_fixes(rs, [finding(rs, 5), finding(rs, 9)], "range", texts={"f.nft": DEFINE_TWICE})
    assert [(e.line, e.new) for e in plan.edits] == [(1, "define LOCAL = 127.0.0.0/8")]
    assert not plan.refusals


def test_define_used_elsewhere_is_fixed_in_the_rule_not_widened():
    rs = nft_ruleset("f.nft", DEFINE_TWICE, {5: "input", 9: "output"}, {"input": "input", "output": "output"})
    plan = plan_fixes(rs, [finding(rs, 5)], "range", texts={"f.nft": DEFINE_TWICE})
    assert [(e.line, e.new) for e in plan.edits] == [(5, "\t\tip saddr 127.0.0.0/8 accept")]
    assert "line(s) 9" in plan.edits[0].notes[0][1]


def test_define_interface_style_uses_the_direction_of_each_chain():
    rs = nft_ruleset("f.nft", DEFINE_TWICE, {5: "input", 9: "output"}, {"input": "input", "output": "output"})
    plan = plan_fixes(rs, [finding(rs, 5), finding(rs, 9)], texts={"f.nft": DEFINE_TWICE})
    assert [(e.line, e.new) for e in plan.edits] == [
        (5, '\t\tiif "lo" accept'),
        (9, '\t\toif "lo" tcp dport 9050 accept'),
    ]


SET_ONE_LINE = """\
table inet filter {
\tset lo4 { type ipv4_addr; elements = { 127.0.0.1, 192.0.2.1 } }
\tchain input {
\t\ttype filter hook input priority 0; policy drop;
\t\tip saddr @lo4 accept
\t}
}
"""


def test_one_line_named_set_gains_flags_interval_on_its_line():
    rs = nft_ruleset("s.nft", SET_ONE_LINE, {5: "input"}, {"input": "input"})
    plan = plan_fixes(rs, [finding(rs, 5)], texts={"s.nft": SET_ONE_LINE})
    assert [e.new for e in plan.edits] == [
        "\tset lo4 { type ipv4_addr; flags interval; elements = { 127.0.0.0/8, 192.0.2.1 } }"
    ]


SET_SHARED = """\
table inet filter {
\tset trusted {
\t\ttype ipv4_addr
\t\tflags constant
\t\telements = { 127.0.0.1, 192.0.2.1 }
\t}
\tchain input {
\t\ttype filter hook input priority 0; policy drop;
\t\tip saddr @trusted accept
\t}
\tchain forward {
\t\ttype filter hook forward priority 0; policy drop;
\t\tip saddr @trusted accept
\t}
}
"""


def test_named_set_used_by_another_rule_is_refused():
    rs = nft_ruleset("t.nft", SET_SHARED, {9: "input", 13: "forward"}, {"input": "input", "forward": "forward"})
    plan = plan_fixes(rs, [finding(rs, 9)], texts={"t.nft": SET_SHARED})
    assert not plan.edits
    assert "also used at line(s) 13" in plan.refusals[0].why


def test_named_set_flags_line_gains_interval():
    text = SET_SHARED.replace(
        "\tchain forward {\n\t\ttype filter hook forward priority 0; policy drop;\n\t\tip saddr @trusted accept\n\t}\n",
        "",
    )
    rs = nft_ruleset("t.nft", text, {9: "input"}, {"input": "input"})
    plan = plan_fixes(rs, [finding(rs, 9)], texts={"t.nft": text})
    fixed = apply_to_text(text, plan.edits)
    assert "\t\tflags constant, interval\n" in fixed
    assert "\t\telements = { 127.0.0.0/8, 192.0.2.1 }\n" in fixed


USER_CHAIN = """\
table inet filter {
\tchain input {
\t\ttype filter hook input priority 0; policy drop;
\t\tjump loopback
\t}
\tchain output {
\t\ttype filter hook output priority 0; policy drop;
\t\tjump loopback
\t}
\tchain loopback {
\t\tip saddr 127.0.0.1 accept
\t}
}
"""


def test_user_chain_reached_from_both_directions_gets_the_range():
    rs = nft_ruleset(
        "u.nft",
        USER_CHAIN,
        {4: "input", 8: "output", 11: "loopback"},
        {"input": "input", "output": "output", "loopback": None},
        jumps={4: "loopback", 8: "loopback"},
    )
    plan = plan_fixes(rs, [finding(rs, 11)], texts={"u.nft": USER_CHAIN})
    [edit] = plan.edits
    assert edit.new == "\t\tip saddr 127.0.0.0/8 accept"
    assert "no single interface fits" in edit.notes[0][1]


def test_user_chain_reached_from_input_only_gets_the_interface():
    # the output chain's jump is not in the model: only input reaches the chain
    rs = nft_ruleset(
        "u.nft",
        USER_CHAIN,
        {4: "input", 11: "loopback"},
        {"input": "input", "output": "output", "loopback": None},
        jumps={4: "loopback"},
    )
    plan = plan_fixes(rs, [finding(rs, 11)], texts={"u.nft": USER_CHAIN})
    assert [e.new for e in plan.edits] == ['\t\tiif "lo" accept']


@pytest.mark.parametrize(
    "owner, where",
    [("docker", "daemon.json"), ("kube-proxy", "kube-proxy"), ("firewalld", "firewall-cmd"), ("ufw", "before.rules")],
)
def test_manager_owned_rules_are_refused_with_where_to_change(owner, where):
    text = (
        "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;\n"
        "\t\tip saddr 127.0.0.1 accept\n\t}\n}\n"
    )
    rs = nft_ruleset("o.nft", text, {4: "input"}, {"input": "input"})
    plan = plan_fixes(rs, [finding(rs, 4, owner=owner)], texts={"o.nft": text})
    assert not plan.edits and where in plan.refusals[0].why


def test_ufw_rules_in_ufws_own_file_are_fixed():
    text = "*filter\n:ufw-before-input - [0:0]\n-A ufw-before-input -s 127.0.0.1 -j ACCEPT\nCOMMIT\n"
    table = Table("ip", "filter", "file", "iptables", "/etc/ufw/before.rules")
    table.chains["INPUT"] = Chain(
        "INPUT",
        [
            Rule(
                (),
                Action("jump", target="ufw-before-input"),
                "-A INPUT -j ufw-before-input",
                Origin("/etc/ufw/before.rules", 9),
            )
        ],
        hook="input",
        policy="drop",
    )
    table.chains["ufw-before-input"] = Chain(
        "ufw-before-input",
        [Rule((), Action("accept"), "-A ufw-before-input -s 127.0.0.1 -j ACCEPT", Origin("/etc/ufw/before.rules", 3))],
    )
    rs = Ruleset(tables=[table])
    f = Finding(
        "LB002",
        "warning",
        "narrow",
        table="filter",
        chain="ufw-before-input",
        rule=table.chains["ufw-before-input"].rules[0],
        owner="ufw",
    )
    plan = plan_fixes(rs, [f], texts={"/etc/ufw/before.rules": text})
    assert [e.new for e in plan.edits] == ["-A ufw-before-input -i lo -j ACCEPT"]


def test_ufw_user_rules_are_never_edited_by_hand():
    """user.rules is written by `ufw allow ...`: the fix is a ufw command, never an edit of the file."""
    text = "*filter\n:ufw-user-input - [0:0]\n-A ufw-user-input -s 127.0.0.1 -j ACCEPT\nCOMMIT\n"
    table = Table("ip", "filter", "file", "iptables", "/etc/ufw/user.rules")
    table.chains["ufw-user-input"] = Chain(
        "ufw-user-input",
        [Rule((), Action("accept"), "-A ufw-user-input -s 127.0.0.1 -j ACCEPT", Origin("/etc/ufw/user.rules", 3))],
    )
    rs = Ruleset(tables=[table])
    f = Finding(
        "LB002",
        "warning",
        "narrow",
        table="filter",
        chain="ufw-user-input",
        rule=table.chains["ufw-user-input"].rules[0],
        owner="ufw",
    )
    plan = plan_fixes(rs, [f], texts={"/etc/ufw/user.rules": text})
    assert not plan.edits and plan.refusals and "ufw" in plan.refusals[0].why


def test_apply_to_text_refuses_a_line_that_changed():
    from lbfw.fix.plan import Edit

    text = "a\nb\n"
    with pytest.raises(ValueError, match="line 2 changed"):
        apply_to_text(text, [Edit("x", 2, "c", "d", "x:2")])


# --------------------------------------------------------------------------- live helpers (pure)

IPT_DUMP = """\
# Generated by iptables-save v1.8.9 on Sun Nov 22 02:00:00 2026
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A OUTPUT -o eth0 -j ACCEPT
-A INPUT -s 127.0.0.1/32 -j ACCEPT
COMMIT
"""
NFT_DUMP = """\
table inet filter { # handle 4
\tchain input { # handle 1
\t\ttype filter hook input priority filter; policy drop;
\t\tip saddr vmap { 127.0.0.1 : accept, 203.0.113.66 : drop } # handle 3
\t\tip saddr 127.0.0.1 counter packets 12 bytes 720 accept # handle 5
\t}
}
"""


def test_live_locations_in_dumps():
    lines = IPT_DUMP.splitlines()
    legacy, nft = BACKENDS["legacy"], BACKENDS["nftables"]
    assert legacy.locate(lines, LiveTarget("legacy", "ip", "filter", "INPUT", index=2)) == 8
    nft_lines = NFT_DUMP.splitlines()
    at = lambda handle: nft.locate(nft_lines, LiveTarget("nftables", "inet", "filter", "input", handle=handle))  # noqa: E731
    assert at(3) == 4  # a rule with braces is still a rule
    assert at(1) is None  # a chain header is not
    assert at(5) == 5


def _live_plan():
    ref_i = TableRef("legacy", "ip", "filter")
    ref_n = TableRef("nftables", "inet", "filter")
    tables = live.LiveTables({ref_i: IPT_DUMP, ref_n: NFT_DUMP})
    from lbfw.fix.plan import Edit, FixPlan

    plan = FixPlan(
        "interface",
        edits=[
            Edit(
                ref_i.key,
                8,
                "-A INPUT -s 127.0.0.1/32 -j ACCEPT",
                "-A INPUT -i lo -j ACCEPT",
                "w",
                target=LiveTarget("legacy", "ip", "filter", "INPUT", index=2),
            ),
            Edit(
                ref_n.key,
                4,
                NFT_DUMP.splitlines()[3],
                NFT_DUMP.splitlines()[3].replace("127.0.0.1 :", "127.0.0.0/8 :"),
                "w",
                target=LiveTarget("nftables", "inet", "filter", "input", handle=3),
            ),
            Edit(
                ref_n.key,
                5,
                NFT_DUMP.splitlines()[4],
                '\t\tiif "lo" counter packets 12 bytes 720 accept # handle 5',
                "w",
                target=LiveTarget("nftables", "inet", "filter", "input", handle=5),
            ),
        ],
    )
    return plan, tables, ref_i, ref_n


def test_changes_are_content_addressed_transactions_per_backend():
    plan, tables, ref_i, ref_n = _live_plan()
    changes = live.check_unchanged(plan, tables, dict(tables.dumps))
    script, expected = BACKENDS["legacy"].script(ref_i, IPT_DUMP, changes[ref_i])
    # delete by specification (fails the whole restore if the rule is gone), insert where it stands
    assert script == "*filter\n-D INPUT -s 127.0.0.1/32 -j ACCEPT\n-I INPUT 2 -i lo -j ACCEPT\nCOMMIT\n"
    assert expected == {"INPUT": ["-p tcp -m tcp --dport 22 -j ACCEPT", "-i lo -j ACCEPT"]}
    script, how = BACKENDS["nftables"].script(ref_n, NFT_DUMP, changes[ref_n])
    assert script == (
        "insert rule inet filter input handle 3 ip saddr vmap { 127.0.0.0/8 : accept, 203.0.113.66 : drop }\n"
        "delete rule inet filter input handle 3\n"
        'replace rule inet filter input handle 5 iif "lo" counter packets 12 bytes 720 accept\n'
    )
    assert [kind for _, kind in how] == ["insert", "keep"]


def test_an_insert_at_the_top_moves_the_position_not_the_rule():
    plan, tables, ref_i, _ = _live_plan()
    changes = live.check_unchanged(plan, tables, dict(tables.dumps))
    now = IPT_DUMP.replace(":OUTPUT ACCEPT [0:0]\n", ":OUTPUT ACCEPT [0:0]\n-A INPUT -s 192.0.2.9/32 -j DROP\n")
    script, _ = BACKENDS["legacy"].script(ref_i, now, changes[ref_i])
    assert "-D INPUT -s 127.0.0.1/32 -j ACCEPT\n-I INPUT 3 -i lo -j ACCEPT\n" in script
    with pytest.raises(RuleMoved, match="not there any more"):
        BACKENDS["legacy"].script(ref_i, IPT_DUMP.replace("-s 127.0.0.1/32", "-s 127.0.0.2/32"), changes[ref_i])
    copies = IPT_DUMP.replace("COMMIT", "-A INPUT -s 127.0.0.1/32 -j ACCEPT\nCOMMIT")
    with pytest.raises(RuleMoved, match="identical copies"):
        BACKENDS["legacy"].script(ref_i, copies, changes[ref_i])


def test_counters_moving_is_not_a_change_but_a_new_rule_is():
    plan, tables, ref_i, ref_n = _live_plan()
    fresh = dict(tables.dumps)
    fresh[ref_n] = NFT_DUMP.replace("packets 12 bytes 720", "packets 99 bytes 9999")
    assert sum(map(len, live.check_unchanged(plan, tables, fresh).values())) == 3
    fresh[ref_i] = IPT_DUMP.replace("-A INPUT -p tcp", "-A INPUT -p udp -j DROP\n-A INPUT -p tcp")
    with pytest.raises(RuleMoved, match="changed since lbfw read it"):
        live.check_unchanged(plan, tables, fresh)


def test_notes_are_fixed_unless_the_check_judged_them_deliberate():
    text = (
        "table inet filter {\n\tchain output {\n\t\ttype filter hook output priority 0;\n"
        "\t\tip daddr 127.0.0.1 accept\n"
        "\t\tip daddr 127.0.0.1 tcp dport 9050 meta skuid 1000 accept\n\t}\n}\n"
    )
    rs = nft_ruleset("n.nft", text, {4: "output", 5: "output"}, {"output": "output"})
    # the planner reads the check's verdict (Finding.deliberate), not the rule's or message's words
    plan = plan_fixes(
        rs,
        [finding(rs, 4, severity="note"), finding(rs, 5, severity="note", deliberate="meta skuid 1000")],
        texts={"n.nft": text},
    )
    assert [(e.line, e.new) for e in plan.edits] == [(4, '\t\toif "lo" accept')]
    assert [r.where for r in plan.refusals] == ["n.nft:5"] and "owner match" in plan.refusals[0].why


def test_rules_added_to_other_chains_do_not_abort_an_iptables_replace():
    plan, tables, ref_i, ref_n = _live_plan()
    fresh = dict(tables.dumps)
    fresh[ref_i] = IPT_DUMP.replace(
        "-A OUTPUT -o eth0 -j ACCEPT", "-A OUTPUT -o eth0 -j ACCEPT\n-A OUTPUT -o eth1 -j ACCEPT"
    )
    changes = live.check_unchanged(plan, tables, fresh)
    script, _ = BACKENDS["legacy"].script(ref_i, fresh[ref_i], changes[ref_i])
    assert "-I INPUT 2 -i lo -j ACCEPT" in script


def test_anonymous_set_over_several_lines_is_widened_where_it_stands():
    text = (
        "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;\n"
        "\t\tip saddr {\n\t\t\t127.0.0.1,\n\t\t\t192.0.2.7\n\t\t} accept\n\t}\n}\n"
    )
    rs = nft_ruleset("m.nft", text, {4: "input"}, {"input": "input"})
    plan = plan_fixes(rs, [finding(rs, 4)], texts={"m.nft": text})
    assert [(e.line, e.new) for e in plan.edits] == [(5, "\t\t\t127.0.0.0/8,")]

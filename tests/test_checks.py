"""What all the checks share, on small rulesets read by the real parser and judged by the real engine:
the registry and its documentation, reachability, suppression, owners, severities. Each check's own
bad and good examples are in tests/checks/test_lb00N_*.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from checks.support import ROOT, audit, filt, ids
from lbfw.analyze.engine import Engine
from lbfw.checks import ALL, at_or_above
from lbfw.checks.context import LOOP4_HI, LOOP4_LO, CheckContext, narrow_loopback
from lbfw.checks.docs import DOC_SECTIONS, fix_line, sections
from lbfw.checks.fixes import AVAILABILITY, CheckFix
from lbfw.checks.owners import advice, owner_of
from lbfw.checks.reach import JumpGraph, chain_hooks, jump_targets
from lbfw.fix.plan import FIXABLE, SAFETY, STYLES, Topology
from lbfw.model import Action, Chain, Origin, Rule, Ruleset, Table, VmapEntry
from lbfw.read import iptables
from lbfw.suppression import ignored_ids


def test_every_check_documents_itself_in_ruff_order():
    seen = set()
    for check in ALL:
        assert check.ID not in seen
        seen.add(check.ID)
        assert check.SEVERITY in ("error", "warning", "note")
        assert sections(check.DOC) == list(DOC_SECTIONS), check.ID
        assert isinstance(check.FIX, CheckFix) and check.FIX.availability in AVAILABILITY, check.ID


def test_the_planners_tables_are_what_the_checks_declare():
    declared = {c.ID: c.FIX for c in ALL if c.FIX.availability != "never" and not c.FIX.config}
    assert FIXABLE == tuple(declared) == ("LB002", "LB003")
    assert STYLES == ("interface", "range")
    assert {(cid, mode): text for cid, fix in declared.items() for mode, text in fix.safety.items()} == SAFETY
    assert all((cid, mode) in SAFETY for cid, fix in declared.items() for mode in fix.modes)
    with pytest.raises(ValueError):
        CheckFix("sometimes")  # a fix with no way to make it
    with pytest.raises(ValueError):
        CheckFix("always", modes=("range",))  # ... or without its safety text


def test_lb008_is_fixed_in_jail_local_and_the_rule_planner_leaves_it_alone():
    from lbfw.checks.lb008_fail2ban_ignoreip import FIX, ID
    from lbfw.fix.plan import plan_fixes
    from lbfw.results import Finding

    assert FIX.fixable and FIX.config == "jail.local" and not FIX.planned and ID not in FIXABLE
    with pytest.raises(ValueError):
        CheckFix("always", modes=("range",), safety={"range": "x"}, config="jail.local")  # not a rewrite
    with pytest.raises(ValueError):
        CheckFix("never", config="jail.local")
    narrow = Finding("LB008", "warning", "ignoreip = 127.0.0.1", source="/etc/fail2ban/jail.local", line=3)
    text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -s 127.0.0.1 -j ACCEPT\nCOMMIT\n"
    ruleset = Ruleset(tables=iptables.parse(text, "t.rules"))
    found = audit(text)
    plan = plan_fixes(ruleset, [*found, narrow], texts={"t.rules": text})
    alone = plan_fixes(ruleset, found, texts={"t.rules": text})
    # the LB002 edit is planned as without it; LB008 is neither edited nor refused (fix/managers.py fixes it)
    assert {c for e in plan.edits for c in e.checks} == {c for e in alone.edits for c in e.checks} == {"LB002"}
    assert [r.check for r in plan.refusals] == [r.check for r in alone.refusals] == []


def test_lbfw_rules_states_each_checks_fix():
    proc = subprocess.run(
        [sys.executable, "-m", "lbfw", "rules", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    listed = {c["id"]: c["fix"] for c in json.loads(proc.stdout)["checks"]}
    assert listed == {c.ID: c.FIX.to_json() for c in ALL}
    assert listed["LB002"]["availability"] == "sometimes" and listed["LB002"]["modes"] == ["interface", "range"]
    assert listed["LB001"] == {"availability": "never", "modes": [], "safety": {}}
    one = subprocess.run(
        [sys.executable, "-m", "lbfw", "rules", "LB003"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert (
        one.stdout.splitlines()[1]
        == fix_line(ALL[2])
        == ("Fix is sometimes available (lbfw fix; always by range, whatever --style says).")
    )
    docs = (ROOT / "docs" / "checks.md").read_text()
    for check in ALL:
        assert f"| {check.FIX.availability} |" in docs and fix_line(check) in docs


def test_unreferenced_chain_is_not_reported():
    text = filt("-A INPUT -i lo -j ACCEPT", "-A DEAD -s 127.0.0.1 -j ACCEPT", chains=("DEAD",))
    assert ids(audit(text)) == []


def _nft_table() -> Table:
    """input jumps to `both`, output reaches it through a verdict map; `dead` jumps to `both` but
    no hook reaches `dead`; `both` goes to `tail`."""
    table = Table("inet", "filter", "file", "nft", "t.nft")

    def rule(action: Action) -> Rule:
        return Rule((), action, "r", Origin("t.nft", 1))

    table.chains["input"] = Chain(
        "input", [rule(Action("jump", target="both"))], hook="input", priority=0, policy="drop"
    )
    vmap = (VmapEntry(1, Action("jump", target="both")), VmapEntry(2, Action("accept")))
    table.chains["output"] = Chain(
        "output", [rule(Action("vmap", vmap_field="meta.mark", vmap=vmap))], hook="output", priority=0, policy="drop"
    )
    table.chains["both"] = Chain("both", [rule(Action("goto", target="tail"))])
    table.chains["tail"] = Chain("tail", [rule(Action("accept"))])
    table.chains["dead"] = Chain("dead", [rule(Action("jump", target="both"))])
    return table


def test_one_reachability_for_the_checks_and_the_planner():
    table = _nft_table()
    c = table.chains
    assert jump_targets(c["output"].rules[0]) == ["both"]
    assert chain_hooks(table) == {
        id(c["input"]): {"input"},
        id(c["output"]): {"output"},
        id(c["both"]): {"input", "output"},
        id(c["tail"]): {"input", "output"},
    }
    assert [ch.name for ch in JumpGraph(table).below(c["dead"])] == ["dead", "both", "tail"]
    ruleset = Ruleset(tables=[table])
    ctx = CheckContext(ruleset)
    topology = Topology(ruleset)
    for chain in c.values():
        assert topology.hooks(table, chain) == ctx.hooks_of(table, chain), chain.name
    assert {ref.chain.name for ref in ctx.rules()} == {"input", "output", "both", "tail"}


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
    assert narrow_loopback([(0x7F000002, 0x7F000002)]) is None  # 127.0.0.2 alone is not the mistake
    assert narrow_loopback([(0, 0xFFFFFFFF)]) is None  # 0.0.0.0/0 covers all of 127/8
    assert narrow_loopback([(0x7F000000, 0x7F0000FF)]) == [(0x7F000000, 0x7F0000FF)]


@pytest.mark.parametrize(
    "table,chain,comment,owner",
    [
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
    ],
)
def test_owner_of(table, chain, comment, owner):
    class R:
        pass

    rule = R()
    rule.comment = comment
    rule.action = None
    assert owner_of(table, chain, rule) == owner


def test_manager_owned_finding_names_the_manager_as_the_fixer_does():
    from lbfw.fix.plan import plan_fixes

    text = filt(
        "-A INPUT -j ufw-before-input", "-A ufw-before-input -s 127.0.0.1 -j ACCEPT", chains=("ufw-before-input",)
    )
    lb002 = [f for f in audit(text) if f.check == "LB002"]
    assert lb002[0].owner == "ufw" and "ufw's configuration" in lb002[0].message
    assert lb002[0].to_json()["owner"] == "ufw"
    # one wording: the finding ends with the advice, and the refusal is that advice
    assert lb002[0].message.endswith(" " + advice("ufw"))
    rs = Ruleset(tables=iptables.parse(text, "t.rules"))
    plan = plan_fixes(rs, [f for f in audit(text) if f.check == "LB002"], texts={"t.rules": text})
    assert [r.why for r in plan.refusals] == [advice("ufw")]


def test_fail_on_threshold():
    found = audit(filt("-A INPUT -s 127.0.0.1 -j ACCEPT"))
    assert at_or_above(found, "error") and at_or_above(found, "note") and not at_or_above(found, "never")
    warn_only = [f for f in found if f.severity == "warning"]
    assert not at_or_above(warn_only, "error") and at_or_above(warn_only, "warning")


def test_checks_never_walk_nat_tables_of_a_kube_proxy_dump():
    """Scaling without timing: on a kube-proxy-shaped dump the checks look at the small filter
    table only; the nat table (almost every rule) is never walked."""
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).parent / "benchmarks"))
    import generate

    from lbfw.analyze.flows import default_flows
    from lbfw.checks.context import CheckContext

    rs = Ruleset(tables=iptables.parse(generate.kube_dump(3000), "kube.rules"))
    nat = next(t for t in rs.tables if t.name == "nat")
    assert sum(len(c.rules) for c in nat.chains.values()) > 2000
    engine = Engine(rs)
    ctx = CheckContext(rs, engine, [engine.evaluate(f) for f in default_flows(rs)])
    found = [f for chk in ALL for f in chk.check(ctx)]
    assert id(nat) not in ctx._reach
    assert {f.check for f in found if f.severity != "note"} == {"LB001", "LB002"}

"""rules/examples and rules/reference: every check fires on its must-fire examples and stays
quiet on the others (each file declares which in its header; tests/checks/test_lb00N_*.py name
them per check), and every file loads in the real kernel, where real traffic confirms what the
findings say."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from checks.support import declared
from lbfw.checks import ALL
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources
from lbfw.results import DELIVERED

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "rules" / "examples").iterdir() if p.suffix in (".rules", ".v4", ".v6", ".nft"))
REFERENCE = sorted(p for p in (ROOT / "rules" / "reference").iterdir() if p.suffix in (".v4", ".v6", ".nft"))
CHECK_IDS = {c.ID for c in ALL}


def declared_owner(path: Path):
    """`# owner: NAME` in the header: every finding must name that manager."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line[1:].strip().startswith("owner:"):
            return line.split(":", 1)[1].strip()
    return None


def test_examples_cover_every_check_that_files_can_show():
    fired = set()
    for path in EXAMPLES:
        fire, quiet = declared(path)
        assert path.read_text().startswith("# "), f"{path.name}: must start with a # comment"
        assert fire or quiet, f"{path.name}: no must-fire / must-stay-quiet declaration"
        assert set(fire) <= CHECK_IDS and quiet <= CHECK_IDS, path.name
        assert not set(fire) & quiet, path.name
        fired |= set(fire)
    # LB005 and LB006 need live host facts (route_localnet, the local route): tests/checks/test_lb005_*, _lb006_*
    assert fired >= {"LB001", "LB002", "LB003", "LB004"}
    assert {p.suffix for p in EXAMPLES} >= {".rules", ".v6", ".nft"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_fires_what_it_declares(path):
    fire, quiet = declared(path)
    findings, _ = audit_ruleset(read_sources([str(path)]))
    got: dict = {}
    for f in findings:
        got.setdefault(f.check, set()).add(f.severity)
    for check, severity in fire.items():
        assert check in got, f"{path.name}: {check} must fire; got {sorted(got)}"
        if severity:
            assert got[check] == {severity}, f"{path.name}: {check} must be {severity}, got {got[check]}"
    for check in quiet:
        assert check not in got, f"{path.name}: {check} must stay quiet: " + "; ".join(
            f"{f.check} {f.source}:{f.line} {f.message}" for f in findings if f.check == check
        )
    assert set(got) <= set(fire), f"{path.name}: unexpected {sorted(set(got) - set(fire))}"
    owner = declared_owner(path)
    if owner is not None:
        assert findings and all(f.owner == owner for f in findings), [(f.check, f.owner) for f in findings]
        assert all(f"change {owner}'s configuration" in f.message for f in findings if f.severity != "note")
    for f in findings:  # every finding says where
        assert f.source == str(path)
        assert f.line is not None or (f.rule is None and f.chain), f


def _load_argv(path: Path) -> list:
    if path.suffix == ".nft":
        return ["nft", "-f", str(path)]
    if path.suffix == ".v6":
        return ["ip6tables-legacy-restore", str(path)]
    return ["iptables-legacy-restore", str(path)]


@pytest.mark.kernel
@pytest.mark.parametrize("path", EXAMPLES + REFERENCE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ruleset_loads_in_a_private_namespace(path):
    proc = subprocess.run(["unshare", "-n", *_load_argv(path)], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.kernel
@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.suffix in (".rules", ".v6")], ids=lambda p: p.name)
def test_iptables_example_loads_with_iptables_nft_too(path):
    tool = "ip6tables-nft-restore" if path.suffix == ".v6" else "iptables-nft-restore"
    proc = subprocess.run(["unshare", "-n", tool, str(path)], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr


PROOF = [
    "input-narrow-accept.rules",
    "input-narrow-accept-established.rules",
    "output-narrow-accept.rules",
    "user-chain-narrow-accept.rules",
    "lo-accept.rules",
    "ip6-no-loopback.v6",
    "nft-saddr-narrow.nft",
    "nft-vmap.nft",
    "nft-two-tables.nft",
    "nft-iif-lo.nft",
    "docker-published-localhost.rules",
    "kube-proxy-firewall.rules",
    "nft-firewalld-owned.nft",
    "tor-owner-ports.rules",
    "nft-named-set.nft",
]


@pytest.mark.kernel
@pytest.mark.parametrize("name", PROOF)
def test_kernel_agrees_with_the_blocked_flows_findings_name(name):
    """Real traffic: the flows LB001/LB002/LB004 say are broken are broken in the kernel, and
    the examples that must stay quiet deliver every probed flow."""
    from lbfw.sandbox.verify import observe_files

    path = ROOT / "rules" / "examples" / name
    findings, results = audit_ruleset(read_sources([str(path)]))
    verdicts = {r.flow: r.verdict for r in results}
    # the probe's clients run as root: what root meets is the claim real traffic can check
    as_root = {r.flow: r.probed() for r in results}
    broken = []
    for f in findings:
        for flow in f.flows:
            assert verdicts[flow] in ("blocked", "unknown"), (f.check, flow)
            # undecided flows are notes; only the blocked ones are claims
            if flow not in broken and as_root[flow] == "blocked":
                broken.append(flow)
    fire, _ = declared(path)
    if not fire:
        assert not broken
        # a sample of the default flows, each protocol and family
        probe = [r.flow for r in results][:12]
        observed = observe_files([str(path)], probe, timeout=0.5)
        assert observed == [DELIVERED] * len(probe), list(zip(probe, observed))
        return
    assert broken, f"{name}: findings name no flow"
    observed = observe_files([str(path)], broken[:12], timeout=0.5)
    assert observed == ["blocked"] * len(observed), list(zip(broken, observed))


def test_same_named_tables_from_several_sources_keep_their_own_findings():
    """Two files each with a `filter` table: each finding is placed in its own file and judged
    by its own table (the Tor lockdown stays a note next to another file's filter table)."""
    tor = ROOT / "rules" / "examples" / "tor-owner-ports.rules"
    spoof = ROOT / "rules" / "examples" / "antispoof-narrow.rules"
    findings, _ = audit_ruleset(read_sources([str(spoof), str(tor)]))
    by_source = {}
    for f in findings:
        by_source.setdefault(f.source, set()).add((f.check, f.severity))
    assert by_source[str(spoof)] == {("LB003", "warning")}
    assert {sev for _, sev in by_source[str(tor)]} == {"note"}
    for f in findings:
        if f.rule is not None:
            assert f.rule.origin.source == f.source


@pytest.mark.parametrize("path", REFERENCE, ids=lambda p: p.name)
def test_reference_rules_audit_clean_even_with_route_localnet(path):
    from lbfw.analyze.engine import Engine
    from lbfw.analyze.flows import default_flows
    from lbfw.checks import run_checks
    from lbfw.model import HostFacts

    rs = read_sources([str(path)])
    # route_localnet is IPv4's: an IPv6-only ruleset cannot answer it (LB005 rightly fires there)
    localnet = {} if path.suffix == ".v6" else {"all": 1, "eth0": 1}
    rs.host = HostFacts(route_localnet=localnet, local_127_route=True, lo_addrs=("127.0.0.1/8",))
    engine = Engine(rs)
    results = [engine.evaluate(f) for f in default_flows(rs)]
    assert results and all(r.verdict == DELIVERED for r in results)
    assert run_checks(rs, engine, results) == []


NEGATED = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 6379 ! -s 127.0.0.1/32 -j DROP
COMMIT
"""


@pytest.mark.kernel
def test_kernel_drops_what_a_negated_narrow_drop_finding_names(tmp_path):
    """`! -s 127.0.0.1 -j DROP` ("only localhost may reach redis"): LB002 names the flows, and the
    kernel drops them; the default-source flow to the same port gets through. (Kept out of
    rules/examples: the interface-style fixer refuses negations, by design.)"""
    from lbfw.sandbox.verify import observe_files

    path = tmp_path / "negated.rules"
    path.write_text(NEGATED)
    findings, results = audit_ruleset(read_sources([str(path)]))
    lb002 = [f for f in findings if f.check == "LB002"]
    assert len(lb002) == 1 and lb002[0].flows
    control = [r.flow for r in results if r.flow.port == 6379 and r.flow.client is None][:1]
    assert control and all(r.verdict == DELIVERED for r in results if r.flow in control)
    observed = observe_files([str(path)], lb002[0].flows + control, timeout=0.5)
    assert observed == ["blocked"] * len(lb002[0].flows) + ["delivered"], observed

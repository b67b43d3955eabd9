"""Expected findings on the real-world rulesets in ../shared/corpus (read by path, never copied)."""

from __future__ import annotations

import pytest

from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources


def audit(corpus_dir, name):
    findings, results = audit_ruleset(read_sources([str(corpus_dir / name)]))
    return findings, results


def by_check(findings) -> dict:
    out: dict = {}
    for f in findings:
        out.setdefault(f.check, []).append(f)
    return out


def test_ugent_narrow_accept_and_the_flows_it_breaks(corpus_dir):
    findings, _ = audit(corpus_dir, "configs_ugent__iptables-save")
    got = by_check(findings)
    assert set(got) == {"LB001", "LB002"}
    assert 6 in [f.line for f in got["LB002"]]  # -A INPUT -s 127.0.0.1 -d 127.0.0.1 -j ACCEPT
    assert all(f.severity == "warning" for f in got["LB002"])
    lb001 = got["LB001"]
    assert [f.severity for f in lb001] == ["error"] and lb001[0].rule is None and lb001[0].chain == "INPUT"
    flows = lb001[0].flows
    assert any(fl.server == "127.0.0.53" and fl.client is None for fl in flows)  # the reply from .53
    assert any(fl.client == "127.0.0.2" and fl.server == "127.0.0.1" for fl in flows)
    assert not any(
        fl.client is None and fl.server == "127.0.0.1" and fl.proto == "tcp" and fl.port == 25 for fl in flows
    )  # plain 127.0.0.1 -> 127.0.0.1 still works


def test_kornwall_narrow_lo_accepts(corpus_dir):
    got = by_check(audit(corpus_dir, "config_kornwall__iptables-save")[0])
    assert set(got) == {"LB001", "LB002"}
    assert sorted(f.chain for f in got["LB002"]) == ["INPUT", "OUTPUT"]
    assert any(fl.client == "127.0.0.2" for f in got["LB001"] for fl in f.flows)


def test_tails_deliberate_owner_rules_are_notes(corpus_dir):
    findings, _ = audit(corpus_dir, "configs_tails_os__2015-aug-tails-i386-1.5-iptables-save")
    got = by_check(findings)
    assert "LB002" in got and "LB001" in got
    assert {f.severity for f in findings} == {"note"}
    assert all("owner" in f.message for f in got["LB002"])


@pytest.mark.parametrize(
    "name",
    [
        "configs_corny_docker__iptables-save.topos4.1",  # Docker-generated NAT/filter
        "config_memphis_testbed__iptables-save",  # -i lo accept, 127/8 LOG_DROP
        "configs_serverfault__766198.txt",  # ! -i lo -s 127.0.0.0/8 -j REJECT
        "configs_serverfault__759927.txt",  # -d 127.0.0.0/8 ! -i lo -j REJECT
        "config_home_user__typical_home_user_iptables-save",
        "configs_psa__2016__iptables-save.2016-07-07",  # -s 127.0.0.0/8 -i lo accept, NOTRACK
        "configs_srvs_ufw__server1-iptables-save",
        "config_veroneau.net__iptables-save",
        "configs_sqrl_shorewall__2014_sep_iptables-saveakachan",
    ],
)
def test_correct_loopback_rules_stay_quiet(corpus_dir, name):
    findings, results = audit(corpus_dir, name)
    assert findings == [], [(f.check, f.line, f.message) for f in findings]
    assert results and all(r.verdict == "delivered" for r in results)


@pytest.mark.parametrize(
    "name",
    [
        "configs_chair_for_Network_Architectures_and_Services__iptables-save-2016-06-27_16-29-01",
        "configs_medium-sized-company__iptables-save.iptables_mainfw_31.01.2016",
    ],
)
def test_lo_accepting_rulesets_give_at_most_notes(corpus_dir, name):
    """Both accept -i lo first; whatever the engine cannot decide (recent, rpfilter ...) is a
    note that says so, never an error or a narrow-accept warning."""
    findings, results = audit(corpus_dir, name)
    assert {f.severity for f in findings} <= {"note"}
    for f in findings:
        assert f.check == "LB001" and "cannot tell" in f.message
    undecided = [r for r in results if r.verdict == "unknown"]
    assert bool(undecided) == bool(findings)


@pytest.mark.kernel
@pytest.mark.parametrize("name", ["config_kornwall__iptables-save"])  # ugent's 1.3.5 syntax does not load
def test_kernel_blocks_the_flows_the_corpus_findings_name(corpus_dir, name):
    """Real traffic in a private namespace holding the real-world ruleset: a sample of the flows
    LB001/LB002 name is blocked, and a sample of the flows lbfw calls delivered gets through."""
    from lbfw.sandbox.verify import observe_files

    findings, results = audit(corpus_dir, name)
    named = []
    for f in findings:
        for flow in f.flows:
            if flow not in named:
                named.append(flow)
    # one flow per (client, server) pair, both protocols: a small sample that covers each kind
    sample, seen = [], set()
    for flow in named:
        key = (flow.proto, flow.client, flow.server)
        if key not in seen:
            seen.add(key)
            sample.append(flow)
    delivered, seen = [], set()
    for r in results:
        key = (r.flow.proto, r.flow.client, r.flow.server)
        if r.verdict == "delivered" and key not in seen:
            seen.add(key)
            delivered.append(r.flow)
    assert delivered, "nothing delivered: the control sample is empty"
    observed = observe_files([str(corpus_dir / name)], sample + delivered, timeout=0.5)
    expected = ["blocked"] * len(sample) + ["delivered"] * len(delivered)
    assert observed == expected, list(zip(sample + delivered, observed))

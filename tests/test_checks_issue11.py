"""Issue 11 end to end: matches the kernel decides from the packet no longer hide the narrow accept,
unknowns a drop waits behind are warnings, and --verify turns them into errors."""

from __future__ import annotations

from lbfw.checks import escalate_verified
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources
from lbfw.results import Flow

VPS = """table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    ip saddr 127.0.0.1 accept
    tcp dport 22 accept
    icmp type echo-request accept
  }
}
"""


def _audit(tmp_path, text: str, name: str):
    path = tmp_path / name
    path.write_text(text)
    return audit_ruleset(read_sources([str(path)]))


def test_stock_vps_template_is_lb001_error_and_lb002_warning(tmp_path):
    findings, results = _audit(tmp_path, VPS, "vps.nft")
    severities = {(f.check, f.severity) for f in findings}
    assert ("LB001", "error") in severities and ("LB002", "warning") in severities
    assert not any(r.verdict == "unknown" for r in results)  # icmp type never matches TCP/UDP


def test_fragment_hygiene_rule_decides_127_0_0_1(tmp_path):
    rules = (
        "*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A INPUT -f -j DROP\n-A INPUT -s 127.0.0.1/32 -j ACCEPT\nCOMMIT\n"
    )
    _, results = _audit(tmp_path, rules, "frag.rules")
    plain = [r for r in results if r.flow.server == "127.0.0.1" and r.flow.client in (None, "127.0.0.1")]
    assert plain and all(r.verdict == "delivered" for r in plain)


UNDECIDED = """table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    ip saddr 127.0.0.1 accept
    meta hour "08:00"-"18:00" accept
  }
}
"""


def test_an_unknown_match_before_a_drop_policy_is_a_warning_and_verify_makes_it_an_error(tmp_path):
    findings, results = _audit(tmp_path, UNDECIDED, "hour.nft")
    narrow = [f for f in findings if f.check == "LB002"]
    assert narrow and narrow[0].severity == "warning" and "time of day" in narrow[0].message
    assert all(f.severity != "note" for f in findings if f.check == "LB001")
    bound = Flow("tcp", "127.0.0.1", narrow[0].flows[0].port, "127.0.0.2")
    assert bound in narrow[0].flows
    escalated = escalate_verified(findings, {bound: "blocked"})
    assert any(
        f.check == "LB002" and f.severity == "error" and "--verify saw them blocked" in f.message for f in escalated
    )

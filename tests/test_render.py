"""Renderers: the JSON document's stable shape, SARIF's required structure, plain text when piped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbfw.checks import ALL
from lbfw.model import Origin
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources
from lbfw.render import json as render_json
from lbfw.render import sarif, text
from lbfw.results import Finding, Flow

ROOT = Path(__file__).resolve().parent.parent
NARROW = "rules/examples/input-narrow-accept.rules"
FINDING_KEYS = {
    "check",
    "severity",
    "source",
    "line",
    "table",
    "chain",
    "handle",
    "index",
    "rule",
    "message",
    "owner",
    "flows",
    "family",
    "backend",
}
FLOW_KEYS = {"proto", "client", "server", "port", "verdict", "decided_by", "unknown"}


@pytest.fixture(scope="module")
def narrow(request):
    rs = read_sources([str(ROOT / NARROW)])
    findings, results = audit_ruleset(rs)
    return rs, findings, results


def test_json_document_shape(narrow):
    rs, findings, results = narrow
    doc = json.loads(render_json.render_audit(findings, results, rs.sources))
    assert set(doc) == {"version", "tool", "summary", "findings", "flows", "sources"}
    assert doc["summary"] == {"error": 1, "warning": 1, "note": 0}
    for f in doc["findings"]:
        assert set(f) == FINDING_KEYS
        assert f["handle"] is None and f["index"] is None and isinstance(f["line"], int)
        for fl in f["flows"]:
            assert set(fl) == {"proto", "client", "server", "port"}
    lb002 = next(f for f in doc["findings"] if f["check"] == "LB002")
    assert lb002["rule"] == "-A INPUT -s 127.0.0.1/32 -j ACCEPT" and lb002["line"] == 9
    lb001 = next(f for f in doc["findings"] if f["check"] == "LB001")
    assert lb001["rule"] is None and lb001["chain"] == "INPUT"
    assert len(doc["flows"]) == len(results)
    for fl in doc["flows"]:
        assert set(fl) == FLOW_KEYS and fl["verdict"] in ("delivered", "blocked", "unknown")
        assert (fl["decided_by"] is not None) == (fl["verdict"] == "blocked")
    assert doc["sources"] == [
        {"source": str(ROOT / NARROW), "format": "iptables-save", "tables": 1, "chains": 3, "rules": 2, "warnings": []}
    ]


def test_json_verified_flows(narrow):
    rs, findings, results = narrow
    verified = {results[0].flow: results[0].verdict}
    doc = json.loads(render_json.render_audit(findings, results, rs.sources, verified))
    assert doc["flows"][0]["verified"] is True and doc["flows"][0]["observed"] == results[0].verdict
    assert doc["flows"][1]["observed"] is None and doc["flows"][1]["verified"] is False


def _check_sarif(doc: dict) -> None:
    """The properties SARIF 2.1.0 requires and GitHub code scanning reads (no schema offline)."""
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "lbfw" and isinstance(driver["version"], str)
    ids = [r["id"] for r in driver["rules"]]
    assert ids == [c.ID for c in ALL]
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["help"]["text"] and rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    for res in run["results"]:
        assert res["ruleId"] in ids and ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in ("error", "warning", "note", "none")
        assert isinstance(res["message"]["text"], str) and res["message"]["text"]
        assert res["locations"], "GitHub needs a location"
        for loc in res["locations"]:
            assert "physicalLocation" in loc or "logicalLocations" in loc
            if "physicalLocation" in loc:
                phys = loc["physicalLocation"]
                assert isinstance(phys["artifactLocation"]["uri"], str)
                # GitHub needs region.startLine on every file result (sarif-sdk rule GH1003)
                assert isinstance(phys["region"]["startLine"], int) and phys["region"]["startLine"] >= 1


def test_sarif_for_files_points_at_path_and_line(narrow):
    _, findings, _ = narrow
    doc = json.loads(sarif.render(findings))
    _check_sarif(doc)
    res = doc["runs"][0]["results"]
    assert {(r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in res} == {
        ("LB001", 6),
        ("LB002", 9),
    }
    uri = res[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == (ROOT / NARROW).as_uri()  # absolute path -> file:// URI
    rel = Finding(check="LB002", severity="warning", message="m", source="rules/x.rules", line=3)
    assert (
        sarif.result(rel, {"LB002": 1})["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        == "rules/x.rules"
    )


def test_sarif_live_findings_are_logical_locations():
    live = Finding(
        check="LB002",
        severity="warning",
        message="narrow",
        source="live:nftables",
        table="filter",
        chain="input",
        handle=7,
        family="inet",
        flows=[Flow("tcp", "127.0.0.53", 53)],
    )
    doc = sarif.sarif_document([live])
    _check_sarif(doc)
    loc = doc["runs"][0]["results"][0]["locations"][0]
    assert "physicalLocation" not in loc
    assert loc["logicalLocations"][0]["fullyQualifiedName"] == "live:nftables/inet/filter/input/handle/7"


def test_text_is_plain_when_not_a_terminal(narrow):
    rs, findings, results = narrow
    out = text.render_findings(findings, results, rs.sources, color=False)
    assert "\x1b[" not in out
    assert f"{ROOT / NARROW}:9: LB002 warning [filter INPUT]" in out
    assert "-A INPUT -s 127.0.0.1/32 -j ACCEPT" in out
    assert "Found 2 findings: 1 error, 1 warning." in out
    assert max(len(line) for line in out.splitlines()) > 120  # never wrapped
    coloured = text.render_findings(findings, results, rs.sources, color=True)
    assert "\x1b[" in coloured


def test_use_color_only_on_tty_and_respects_no_color(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert text.use_color(Tty()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert text.use_color(Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    with open(__file__) as not_a_tty:
        assert text.use_color(not_a_tty) is False


def test_text_live_locations_and_clean_report():
    live = Finding(
        check="LB002",
        severity="warning",
        message="narrow",
        source="live:legacy",
        table="filter",
        chain="INPUT",
        index=3,
        family="ip",
    )
    assert "live:legacy ip filter INPUT #3: LB002 warning" in text.render_findings([live])
    assert "No loopback problems found" in text.render_findings([])


def test_rich_markup_in_rule_text_is_not_interpreted():
    from lbfw.model import Action, Rule

    rule = Rule(
        matches=(),
        action=Action("accept"),
        text='-A INPUT -m comment --comment "[bold]x[/bold]" -j ACCEPT',
        origin=Origin("f.rules", 4),
    )
    f = Finding(check="LB002", severity="warning", message="see [red]this[/red]", source="f.rules", line=4, rule=rule)
    out = text.render_findings([f])
    assert '"[bold]x[/bold]"' in out and "[red]this[/red]" in out


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "rules" / "examples").glob("*.nft")) + sorted((ROOT / "rules" / "examples").glob("*.rules")),
    ids=lambda p: p.name,
)
def test_every_example_renders_valid_sarif_and_json(path):
    rs = read_sources([str(path)])
    findings, results = audit_ruleset(rs)
    _check_sarif(json.loads(sarif.render(findings)))
    doc = json.loads(render_json.render_audit(findings, results, rs.sources))
    assert all(set(f) == FINDING_KEYS for f in doc["findings"])
    assert all(f["line"] is not None for f in doc["findings"])  # files: every finding has its line

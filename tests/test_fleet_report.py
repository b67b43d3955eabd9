"""`lbfw report`: per-host audit JSON (made by the real audit of the example rulesets), doctor
documents and not-audited markers merged into one fleet report, in every format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lbfw.fleet.load import read_reports
from lbfw.fleet.merge import CLEAN, FINDINGS, NOT_AUDITED, fails, merge
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources
from lbfw.render import fleet_html, fleet_json, fleet_sarif, fleet_text
from lbfw.render.json import audit_document
from lbfw.render.sarif import sarif_document

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "rules" / "examples"


def audit_json(*names: str) -> dict:
    """What `lbfw audit --format json` prints for these example files."""
    ruleset = read_sources([str(EX / n) for n in names])
    findings, results = audit_ruleset(ruleset)
    return json.loads(json.dumps(audit_document(findings, results, ruleset.sources)))


@pytest.fixture(scope="module")
def docs() -> dict:
    return {
        "clean": audit_json("lo-accept.rules"),
        "narrow": audit_json("input-narrow-accept.rules"),
        "docker": audit_json("docker-published-localhost.rules", "output-narrow-accept.rules"),
    }


# The shape `lbfw doctor --format json` prints (tests/kernel/test_fleet_ansible.py merges a real one).
DOCTOR_B = {
    "version": 1,
    "platform": "linux",
    "root": True,
    "plan": None,
    "flows": 0,
    "user": {"name": "root", "uid": 0},
    "summary": {"error": 1, "warning": 0, "note": 0, "ok": 1, "skipped": 0},
    "items": [
        {
            "id": "DR002",
            "name": "lo-without-127-8",
            "severity": "error",
            "subject": "lo",
            "message": "lo has 127.0.0.1/32 only",
            "why": "",
            "fix": ["ip addr add 127.0.0.1/8 dev lo"],
            "data": {},
        },
        {
            "id": "DR001",
            "name": "lo-down",
            "severity": "ok",
            "subject": "lo",
            "message": "lo is up",
            "why": "",
            "fix": [],
            "data": {},
        },
    ],
}


@pytest.fixture()
def fleet_dir(tmp_path, docs) -> Path:
    write = lambda name, doc: (tmp_path / name).write_text(json.dumps(doc))  # noqa: E731
    write("a.json", docs["clean"])
    write("b.json", docs["narrow"])
    write("c.json", docs["narrow"])
    write("e.json", docs["docker"])
    write("d.json", {"version": 1, "host": "d", "not_audited": "unreachable: ssh: Could not resolve hostname d"})
    write("b.doctor.json", DOCTOR_B)
    return tmp_path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lbfw", "report", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_statuses_versions_backends_and_reasons(fleet_dir):
    fleet = merge(read_reports([str(fleet_dir)]))
    assert [h.host for h in fleet.hosts] == ["a", "b", "c", "d", "e"]
    assert [h.status for h in fleet.hosts] == [CLEAN, FINDINGS, FINDINGS, NOT_AUDITED, FINDINGS]
    a, b = fleet.host("a"), fleet.host("b")
    assert a.lbfw_version == "0.1.0" and a.backends == ["iptables-save"] and a.rules == 3
    assert b.checks == {"LB001": 1, "LB002": 1} and b.summary == {"error": 1, "warning": 1, "note": 0}
    assert [i["id"] for i in b.doctor] == ["DR002", "DR001"]
    assert fleet.host("d").reason == "unreachable: ssh: Could not resolve hostname d"
    assert fleet.summary == {
        "hosts": 5,
        "clean": 1,
        "findings": 3,
        "not_audited": 1,
        "error": 2 + fleet.host("e").summary["error"],
        "warning": 2 + fleet.host("e").summary["warning"],
        "note": fleet.host("e").summary["note"],
    }


def test_the_same_rule_on_two_hosts_is_one_group_naming_both(fleet_dir):
    fleet = merge(read_reports([str(fleet_dir)]))
    lb002 = [g for g in fleet.rules if g.check == "LB002" and g.rule == "-A INPUT -s 127.0.0.1/32 -j ACCEPT"]
    assert len(lb002) == 1 and lb002[0].hosts == ["b", "c"]
    assert (lb002[0].backend, lb002[0].table, lb002[0].chain) == ("file", "filter", "INPUT")
    assert fleet.rules[0].hosts == ["b", "c"]  # most hosts first
    policy = [g for g in fleet.rules if g.check == "LB001" and g.rule is None and g.hosts == ["b", "c"]]
    assert len(policy) == 1
    counts = {c.check: (c.findings, c.hosts) for c in fleet.checks}
    assert counts["LB002"][1] == ["b", "c", "e"]
    blocked = {(g.client, g.server, g.port, g.proto): g.hosts for g in fleet.flows}
    assert blocked[("127.0.0.2", "127.0.0.53", 22, "tcp")][:2] == ["b", "c"]
    assert [(g.id, g.name, g.hosts) for g in fleet.doctor] == [("DR002", "lo-without-127-8", ["b"])]  # ok: none


def test_owning_managers_are_counted(fleet_dir, docs):
    owners = {f["owner"] for f in docs["docker"]["findings"]}
    fleet = merge(read_reports([str(fleet_dir)]))
    assert {o.owner for o in fleet.owners} == owners | {None}
    assert sum(o.findings for o in fleet.owners) == sum(len(h.findings) for h in fleet.hosts)


def test_unrecognised_and_unreadable_files_make_their_host_not_audited(tmp_path, docs):
    (tmp_path / "good.json").write_text(json.dumps(docs["clean"]))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "cut.json").write_text(json.dumps(docs["narrow"])[:200])
    (tmp_path / "notes.txt").write_text("not a report")
    fleet = merge(read_reports([str(tmp_path)]))
    assert [(h.host, h.status) for h in fleet.hosts] == [("cut", NOT_AUDITED), ("good", CLEAN), ("list", NOT_AUDITED)]
    assert fleet.host("list").reason == f"unrecognised file {tmp_path / 'list.json'}"
    assert fleet.host("cut").reason.startswith(f"unreadable file {tmp_path / 'cut.json'}: not JSON (line 1:")


def test_the_fleet_report_in_the_directory_it_reads_is_skipped(fleet_dir):
    (fleet_dir / "fleet.json").write_text(fleet_json.render(merge(read_reports([str(fleet_dir)]))))
    assert [h.host for h in merge(read_reports([str(fleet_dir)])).hosts] == ["a", "b", "c", "d", "e"]


def test_two_audits_of_one_host_is_an_input_error(tmp_path, docs):
    (tmp_path / "x.json").write_text(json.dumps(docs["clean"]))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(docs["narrow"], host="x")))
    proc = run_cli(str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    # files are read in name order: other.json names host x first, x.json is the second
    assert proc.stderr.startswith(f"{tmp_path / 'x.json'}: host x has two audit documents (the other is {other})")
    assert "Traceback" not in proc.stderr


def test_exit_codes_follow_fail_on_and_not_audited_hosts(fleet_dir, docs, tmp_path_factory):
    fleet = merge(read_reports([str(fleet_dir)]))
    assert fails(fleet, "error") and not fails(fleet, "never")
    only_clean = tmp_path_factory.mktemp("clean")
    (only_clean / "a.json").write_text(json.dumps(docs["clean"]))
    assert run_cli(str(only_clean)).returncode == 0
    (only_clean / "z.json").write_text(json.dumps({"not_audited": "failed: lbfw exited 2"}))
    proc = run_cli(str(only_clean))
    assert proc.returncode == 1 and "z  not audited: failed: lbfw exited 2" in proc.stdout
    assert run_cli(str(only_clean), "--fail-on", "never").returncode == 0
    assert run_cli(str(fleet_dir), "--format", "yaml").returncode == 2
    missing = run_cli(str(fleet_dir / "nope"))
    assert missing.returncode == 2 and "nope: no such file or directory" in missing.stderr


def test_text_report_names_hosts_rules_and_flows(fleet_dir):
    text = fleet_text.render(merge(read_reports([str(fleet_dir)])))
    assert text.startswith("lbfw fleet report: 5 hosts: 1 clean, 3 with findings, 1 not audited\n")
    assert "  d  not audited: unreachable: ssh: Could not resolve hostname d\n" in text
    assert "2 hosts  LB002 warning  file ip filter INPUT: -A INPUT -s 127.0.0.1/32 -j ACCEPT\n" in text
    assert "tcp 127.0.0.2 -> 127.0.0.53:22 blocked on 2 hosts (b, c)" in text
    assert "tcp 127.0.0.1 (default source) -> 127.0.0.53:22 blocked on 2 hosts (b, c)" in text
    assert "DR002 lo-without-127-8 error on 1 host (b): lo has 127.0.0.1/32 only" in text


def test_json_report_is_the_documented_shape(fleet_dir):
    doc = json.loads(fleet_json.render(merge(read_reports([str(fleet_dir)]))))
    assert doc["kind"] == "lbfw-fleet" and doc["version"] == 1
    assert set(doc) == {
        "version",
        "kind",
        "tool",
        "summary",
        "hosts",
        "checks",
        "rules",
        "owners",
        "blocked_flows",
        "doctor",
    }
    host = doc["hosts"][1]
    assert set(host) == {
        "host",
        "status",
        "reason",
        "lbfw_version",
        "backends",
        "tables",
        "rules",
        "summary",
        "checks",
        "blocked_flows",
        "doctor",
        "files",
    }
    group = doc["rules"][0]
    assert set(group) == {
        "check",
        "severity",
        "backend",
        "family",
        "table",
        "chain",
        "rule",
        "owner",
        "message",
        "hosts",
    }


def test_sarif_has_one_run_per_host_with_the_single_host_fingerprints(fleet_dir):
    sarif = json.loads(fleet_sarif.render(merge(read_reports([str(fleet_dir)]))))
    runs = {r["automationDetails"]["id"]: r for r in sarif["runs"]}
    assert list(runs) == ["lbfw/a", "lbfw/b", "lbfw/c", "lbfw/d", "lbfw/e"]
    assert runs["lbfw/a"]["results"] == []
    d = runs["lbfw/d"]["invocations"][0]
    assert d["executionSuccessful"] is False
    assert d["toolExecutionNotifications"][0]["message"]["text"].startswith("not audited: unreachable")
    ruleset = read_sources([str(EX / "input-narrow-accept.rules")])
    findings, _ = audit_ruleset(ruleset)
    single = sarif_document(findings)["runs"][0]["results"]
    assert [r["partialFingerprints"] for r in runs["lbfw/b"]["results"]] == [r["partialFingerprints"] for r in single]
    assert [r["locations"][0]["physicalLocation"] for r in runs["lbfw/b"]["results"]] == [
        r["locations"][0]["physicalLocation"] for r in single
    ]


def test_html_escapes_whatever_the_host_files_say(tmp_path, docs):
    (tmp_path / "x.json").write_text(
        json.dumps({"host": "<script>alert(1)</script>", "not_audited": "failed: <b>&</b>"})
    )
    page = fleet_html.render(merge(read_reports([str(tmp_path)])))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "failed: &lt;b&gt;&amp;&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page and "default-src 'none'" in page


def _chromium(page: Path, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess:
    import shutil

    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true and chromium is missing (scripts/system-deps.sh installs it)", pytrace=False)
        pytest.skip("chromium is not installed (scripts/system-deps.sh installs it)")
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-sync",
        "--disable-component-update",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1300,1000",
        *mode,
        page.as_uri(),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


class _Cells(HTMLParser):
    """Rows of the table with id ``table_id``, as lists of cell texts."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.inside = dict(attrs).get("id") == self.table_id
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table(dom: str, table_id: str) -> list:
    parser = _Cells(table_id)
    parser.feed(dom)
    return parser.rows


@pytest.mark.slow
def test_html_page_renders_in_chromium_with_the_host_check_matrix(fleet_dir, tmp_path):
    page = tmp_path / "fleet.html"
    assert run_cli(str(fleet_dir), "--format", "html", "-o", str(page)).returncode == 1
    proc = _chromium(page, tmp_path, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    matrix = table(proc.stdout, "matrix")
    assert matrix[0][:8] == ["host", "status", "LB001", "LB002", "LB003", "LB004", "LB005", "LB006"]
    rows = {r[0]: r for r in matrix[1:]}
    assert rows["a"][1:8] == ["clean"] + ["·"] * 6
    assert rows["b"][1:4] == ["findings", "1", "1"] and rows["c"][1:4] == ["findings", "1", "1"]
    assert rows["d"][1:] == ["not audited", "unreachable: ssh: Could not resolve hostname d"]
    offending = table(proc.stdout, "rules")
    assert ["2b, c", "LB002 warning", "file ip filter INPUT", "-A INPUT -s 127.0.0.1/32 -j ACCEPT"] in [
        r[:4] for r in offending
    ]
    shot = tmp_path / "shot.png"
    proc = _chromium(page, tmp_path, f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

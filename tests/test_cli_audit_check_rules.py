"""The audit, check and rules commands as a user runs them: exit codes, formats, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EX = "rules/examples"


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def lbfw(*args, stdin: str | None = None):
    """Run the real CLI in this process (fast); `lbfw_process` runs it as a separate program."""
    from typer.testing import CliRunner

    from lbfw.cli import app

    old = os.getcwd()
    os.chdir(ROOT)
    try:
        try:  # click < 8.2 mixes stderr into stdout unless told not to (the declared floor is 8.1)
            runner = CliRunner(mix_stderr=False)
        except TypeError:
            runner = CliRunner()
        result = runner.invoke(app, list(args), input=stdin)
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def lbfw_process(*args, stdin: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run(
        [sys.executable, "-m", "lbfw", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin,
        # without input, no pipe: lbfw reads a piped standard input as the ruleset
        stdin=subprocess.DEVNULL if stdin is None else None,
        timeout=120,
        env=env,
    )


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


@pytest.mark.parametrize(
    "example,fail_on,code",
    [
        ("input-narrow-accept.rules", "warning", 1),
        ("input-narrow-accept.rules", "error", 1),
        ("input-narrow-accept.rules", "never", 0),
        ("antispoof-narrow.rules", "error", 0),  # LB003 is a warning
        ("antispoof-narrow.rules", "warning", 1),
        ("tor-owner-ports.rules", "warning", 0),  # deliberate: notes only
        ("tor-owner-ports.rules", "note", 1),
        ("lo-accept.rules", "note", 0),
        ("nft-iif-lo.nft", "note", 0),
    ],
)
def test_audit_exit_code_follows_fail_on(example, fail_on, code):
    proc = lbfw("audit", f"{EX}/{example}", "--fail-on", fail_on)
    assert proc.returncode == code, proc.stdout + proc.stderr
    no_traceback(proc)


def test_audit_default_fail_on_is_warning():
    assert lbfw("audit", f"{EX}/antispoof-narrow.rules").returncode == 1
    assert lbfw("audit", f"{EX}/tor-owner-ports.rules").returncode == 0


def test_audit_text_piped_has_no_colour_and_says_where():
    proc = lbfw_process("audit", f"{EX}/input-narrow-accept.rules")
    assert "\x1b[" not in proc.stdout
    assert f"{EX}/input-narrow-accept.rules:9:1: LB002 warning" in proc.stdout
    assert proc.stdout.startswith(f"{EX}/input-narrow-accept.rules:6:1: LB001 error")
    assert proc.stderr == ""


def test_audit_several_sources_are_one_host_grouped_by_source():
    proc = lbfw("audit", f"{EX}/input-narrow-accept.rules", f"{EX}/ip6-no-loopback.v6", "--format", "json")
    doc = json.loads(proc.stdout)
    assert [s["source"] for s in doc["sources"]] == [f"{EX}/input-narrow-accept.rules", f"{EX}/ip6-no-loopback.v6"]
    assert {(f["check"], f["source"]) for f in doc["findings"]} == {
        ("LB001", f"{EX}/input-narrow-accept.rules"),
        ("LB002", f"{EX}/input-narrow-accept.rules"),
        ("LB004", f"{EX}/ip6-no-loopback.v6"),
    }
    text = lbfw("audit", f"{EX}/input-narrow-accept.rules", f"{EX}/ip6-no-loopback.v6").stdout
    assert text.index(f"{EX}/input-narrow-accept.rules:9:1: LB002") < text.index(f"{EX}/ip6-no-loopback.v6:")


def test_audit_reads_standard_input():
    text = (ROOT / EX / "input-narrow-accept.rules").read_text()
    doc = json.loads(lbfw("audit", "-", "--format", "json", stdin=text).stdout)
    assert {(f["check"], f["source"], f["line"]) for f in doc["findings"]} == {("LB001", "-", 6), ("LB002", "-", 9)}


def test_audit_output_file_and_sarif(tmp_path):
    out = tmp_path / "report.sarif"
    proc = lbfw("audit", f"{EX}/nft-vmap.nft", "--format", "sarif", "--output", str(out), "--fail-on", "never")
    assert proc.returncode == 0 and proc.stdout == ""
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0"
    results = doc["runs"][0]["results"]
    lb002 = [r for r in results if r["ruleId"] == "LB002"]
    assert lb002[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == f"{EX}/nft-vmap.nft"
    assert lb002[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 7
    assert not list(tmp_path.glob(".lbfw-*"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["audit", f"{EX}/lo-accept.rules", "--format", "xml"], "'xml' is not one of 'text', 'concise', 'github'"),
        (["audit", f"{EX}/lo-accept.rules", "--fail-on", "sometimes"], "'sometimes' is not one of 'error'"),
        (["audit", f"{EX}/lo-accept.rules", "--select", "LB001,LB999"], "--select: no check named 'LB999'"),
        (["audit", "no/such/file.rules"], "no/such/file.rules: no such file"),
        (["audit", "rules/examples"], "rules/examples: is a directory"),
        (["check", f"{EX}/lo-accept.rules"], "say which flows to check"),
        (["check", f"{EX}/lo-accept.rules", "--to", "127.0.0.1"], ""),
        (["rules", "LB999"], "no check named 'LB999'"),
        (["check", f"{EX}/lo-accept.rules", "--plan", "no/such/plan.toml"], "no/such/plan.toml: cannot read the plan"),
        (
            ["check", f"{EX}/lo-accept.rules", "--plan", "x.toml", "--to", "127.0.0.1:80"],
            "use --to or --plan, not both",
        ),
    ],
)
def test_errors_exit_2_without_traceback(args, message):
    proc = lbfw_process(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert message in proc.stderr
    assert proc.stdout == ""


def test_bad_ruleset_line_is_named_and_no_report_written(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("*filter\n:INPUT DROP [0:0]\n-A INPUT -s 300.1.1.1 -j ACCEPT\nCOMMIT\n")
    out = tmp_path / "out.json"
    proc = lbfw_process("audit", str(bad), "--format", "json", "--output", str(out))
    assert proc.returncode == 2 and proc.stderr.startswith(f"{bad}:3: ")
    no_traceback(proc)
    assert not out.exists()


def test_check_to_and_from():
    narrow = f"{EX}/input-narrow-accept.rules"
    ok = lbfw("check", narrow, "--to", "127.0.0.1:8080/tcp", "--format", "json")
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["flows"][0]["verdict"] == "delivered"
    bad = lbfw("check", narrow, "--to", "127.0.0.1:8080/tcp", "--from", "127.0.0.2", "--format", "json")
    assert bad.returncode == 1
    flow = json.loads(bad.stdout)["flows"][0]
    assert (flow["proto"], flow["client"], flow["server"], flow["port"], flow["verdict"]) == (
        "tcp",
        "127.0.0.2",
        "127.0.0.1",
        8080,
        "blocked",
    )
    assert flow["decided_by"]["chain"] == "INPUT" and flow["decided_by"]["rule"] is None


def test_check_plan_in_order_and_explain(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[[flow]]\nproto = "udp"\nserver = "127.0.0.53"\nport = 53\n\n'
        '[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = 22\n\n'
        '[[flow]]\nproto = "tcp"\nclient = "127.0.0.2"\nserver = "127.66.66.66"\nport = 8080\n'
    )
    proc = lbfw(
        "check", f"{EX}/input-narrow-accept-established.rules", "--plan", str(plan), "--format", "json", "--explain"
    )
    assert proc.returncode == 1
    flows = json.loads(proc.stdout)["flows"]
    assert [(f["server"], f["verdict"]) for f in flows] == [
        ("127.0.0.53", "delivered"),
        ("127.0.0.1", "delivered"),
        ("127.66.66.66", "blocked"),
    ]
    assert all(f["steps"] for f in flows)
    assert {s["packet"] for s in flows[0]["steps"]} >= {"request", "reply"}
    text = lbfw("check", f"{EX}/input-narrow-accept-established.rules", "--plan", str(plan), "--explain")
    assert "blocked   tcp 127.0.0.2 -> 127.66.66.66:8080" in text.stdout
    assert "input" in text.stdout and "policy" in text.stdout


def test_rules_lists_and_documents():
    from lbfw.checks import ALL

    listing = lbfw("rules")
    assert listing.returncode == 0
    for c in ALL:
        assert c.ID in listing.stdout
    one = lbfw("rules", "lb002")
    assert one.returncode == 0 and one.stdout.startswith("LB002 narrow-loopback-accept (warning)")
    for heading in (
        "## What it does",
        "## Why is this bad?",
        "## Example",
        "## Use instead",
        "## Fix safety",
        "## References",
    ):
        assert heading in one.stdout
    data = json.loads(lbfw("rules", "--format", "json").stdout)
    assert [c["id"] for c in data["checks"]] == [c.ID for c in ALL]


def test_docs_checks_md_is_generated_from_the_checks():
    from lbfw.checks.docs import render

    assert (ROOT / "docs" / "checks.md").read_text() == render(), "run `make docs`"


@pytest.mark.kernel
def test_audit_verify_marks_flows_verified_by_real_traffic():
    proc = lbfw(
        "audit", f"{EX}/input-narrow-accept-established.rules", "--verify", "--format", "json", "--fail-on", "never"
    )
    assert proc.returncode == 0, proc.stderr
    flows = json.loads(proc.stdout)["flows"]
    assert flows and all(f["verified"] for f in flows), [f for f in flows if not f["verified"]]
    assert {f["verdict"] for f in flows} == {"delivered", "blocked"}
    text = lbfw("audit", f"{EX}/input-narrow-accept-established.rules", "--verify", "--fail-on", "never")
    assert f"verified by real traffic: {len(flows)} of {len(flows)} agree" in text.stdout

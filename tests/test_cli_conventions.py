"""The CLI conventions a sysadmin and a pipeline expect, tried as they use them: real processes,
real pipes, process substitution, a pty for colour and progress, configuration files."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EX = "rules/examples"
NARROW = f"{EX}/output-narrow-accept.rules"  # the README's standard buggy host
LBFW = [sys.executable, "-m", "lbfw"]


def run(*args, stdin=None, env=None, input=None, cwd=ROOT):
    """lbfw as a program; standard input /dev/null unless given (a pipe would be read)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    environ.update(env or {})
    return subprocess.run(
        [*LBFW, *args],
        cwd=cwd,
        env=environ,
        input=input,
        capture_output=True,
        text=True,
        stdin=stdin if input is None else None,
        timeout=120,
    )


def on_pty(*args, env=None, stdout_tty=True, stderr_tty=True):
    """lbfw with stdout and/or stderr on a pseudo-terminal: (what the pty got, piped stdout)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "TERM")}
    environ.update({"TERM": "xterm-256color", **(env or {})})
    main, secondary = pty.openpty()
    os.set_blocking(main, False)
    # what is not on the pty goes to files: a full pipe nobody reads yet would stall lbfw
    out_file, err_file = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 - closed below, once lbfw has exited
    proc = subprocess.Popen(
        [*LBFW, *args],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=secondary if stdout_tty else out_file,
        stderr=secondary if stderr_tty else err_file,
    )
    os.close(secondary)
    got = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the last holder of the pty's other end has gone
                break
            got += chunk
            if not chunk:
                break
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    out_file.seek(0)
    piped = out_file.read()
    out_file.close()
    err_file.close()
    os.close(main)
    return got.decode("utf-8", "replace"), piped.decode(), proc.returncode


# --------------------------------------------------------------------------- the first screen


def test_the_standard_buggy_host_fits_one_screen_and_leads_with_findings():
    proc = run("audit", NARROW, env={"COLUMNS": "100"})
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1
    assert len(lines) <= 30 and max(map(len, lines)) <= 100
    assert lines[0] == f"{NARROW}:9:1: LB001 error  filter OUTPUT policy"
    assert f"{NARROW}:10:1: LB002 warning  filter OUTPUT" in lines
    assert "47231" not in proc.stdout and "any port" in proc.stdout
    assert "(default source)" not in proc.stdout  # one flow per packet, no duplicate rows
    assert "1 fixable with `lbfw fix`" in proc.stdout


def test_flows_view_and_json_always_has_every_flow():
    view = run("audit", NARROW, "--flows").stdout
    assert "client \\ server" in view and "default 127.0.0.1" in view
    doc = json.loads(run("audit", NARROW, "-f", "json").stdout)
    assert len(doc["flows"]) == 30 and sum(f["verdict"] == "blocked" for f in doc["flows"]) == 8


# --------------------------------------------------------------------------- conventions


def test_version_and_short_help():
    from lbfw import __version__

    assert run("--version").stdout == f"lbfw {__version__}\n"
    for args in (["-h"], ["audit", "-h"], ["fix", "-h"]):
        proc = run(*args)
        assert proc.returncode == 0 and "Usage: " in proc.stdout, args


def test_help_shows_choices_and_readable_metavars():
    text = run("audit", "-h", env={"COLUMNS": "200"}).stdout
    # optional and repeatable: typer 0.29 writes `[SOURCE]...`, the floor 0.24 `[SOURCE]`
    assert re.search(r"Usage: lbfw audit \[OPTIONS\] \[SOURCE\](\.\.\.)?\n", text)
    # the choices in help: click 8.2 writes [a|b], typer 0.29 <a|b>
    for choices in (
        "text|concise|github|json|sarif",
        "error|warning|note|never",
        "auto|iptables-save|ip6tables-save|nft|nft-json",
    ):
        assert re.search(rf"[<\[]{re.escape(choices)}[>\]]", text), choices
    assert "--config PATH" in text and "-o, --output FILE" in text and "--select IDS" in text
    assert re.search(r"[<\[]interface\|range[>\]]", run("fix", "-h", env={"COLUMNS": "200"}).stdout)


@pytest.mark.parametrize(
    "words,expected",
    [
        ("lbfw audit --format ", ["text", "concise", "github", "json", "sarif"]),
        ("lbfw audit --fail-on ", ["error", "warning", "note", "never"]),
        ("lbfw fix --style ", ["interface", "range"]),
        ("lbfw check --format ", ["text", "json"]),
    ],
)
def test_the_shell_completes_every_choice(words, expected):
    env = {"_LBFW_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()))}
    program = shutil.which("lbfw") or str(Path(sys.executable).parent / "lbfw")
    proc = subprocess.run(
        [program], env={**os.environ, **env}, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
    )
    assert proc.stdout.split() == expected


def test_completion_can_be_installed():
    text = run("--help").stdout
    assert "--install-completion" in text
    # typer detects the calling shell (make runs recipes under sh, which it does not support): name it
    shown = run("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert "_lbfw_completion" in shown.stdout


def test_choices_are_checked_by_the_parser():
    proc = run("audit", NARROW, "-f", "xml")
    assert proc.returncode == 2 and "'xml' is not one of" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- standard input and pipes


def test_a_pipe_without_dash_is_the_ruleset_and_stderr_says_so():
    text = (ROOT / NARROW).read_text()
    proc = run("audit", "-f", "json", input=text)
    doc = json.loads(proc.stdout)
    assert {f["source"] for f in doc["findings"]} == {"-"} and proc.returncode == 1
    assert "reading the ruleset from standard input" in proc.stderr
    quiet = run("audit", "-q", input=text)
    assert quiet.stderr == "" and "LB002" in quiet.stdout


def test_an_empty_pipe_is_an_error_never_the_live_host():
    proc = run("audit", input="")
    assert proc.returncode == 2 and "standard input is a pipe but empty" in proc.stderr and proc.stdout == ""


def test_check_reads_a_pipe_too():
    proc = run("check", "--to", "127.0.0.53:8080/tcp", input=(ROOT / NARROW).read_text())
    assert proc.returncode == 1 and proc.stdout.startswith("blocked")


def _bash(command: str):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["LBFW"] = " ".join(LBFW)
    return subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )


def test_process_substitution_is_read_once_for_audit_check_and_fix():
    audit = _bash(f"$LBFW audit -f json <(cat {NARROW})")
    assert audit.returncode == 1, audit.stderr
    assert {f["check"] for f in json.loads(audit.stdout)["findings"]} == {"LB001", "LB002"}
    check = _bash(f"$LBFW check --to 127.0.0.1:22 <(cat {NARROW})")
    assert check.returncode == 0, check.stderr
    fix = _bash(f"$LBFW fix <(cat {NARROW})")
    assert fix.returncode == 1, fix.stderr
    assert "-A OUTPUT -o lo -j ACCEPT" in fix.stdout or "+-A OUTPUT" in fix.stdout


@pytest.mark.kernel
def test_process_substitution_is_read_once_for_verify_and_audit_verify():
    verify = _bash(f"$LBFW verify -f json <(cat {NARROW})")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["agree"] is True
    audit = _bash(f"$LBFW audit --verify -f json <(cat {NARROW})")
    doc = json.loads(audit.stdout)
    assert all(f["verified"] for f in doc["flows"]), audit.stderr


def test_fix_of_a_pipe_says_it_cannot_write_it():
    proc = run("fix", input=(ROOT / NARROW).read_text())
    assert proc.returncode == 2 and "standard input cannot be fixed in place" in proc.stderr


# --------------------------------------------------------------------------- exit codes


def test_fix_exits_1_when_it_leaves_findings_it_cannot_fix_and_says_why():
    proc = run("fix", f"{EX}/ip6-no-loopback.v6")
    assert run("audit", f"{EX}/ip6-no-loopback.v6").returncode == 1
    assert proc.returncode == 1 and proc.stdout == ""
    assert "LB004: not fixed: ipv6-loopback-blocked has no automatic fix" in proc.stderr
    clean = run("fix", f"{EX}/lo-accept.rules")
    assert clean.returncode == 0 and "nothing to fix" in clean.stderr


# --------------------------------------------------------------------------- selection, quiet, statistics


def test_select_and_ignore():
    def checks(*args):
        return {f["check"] for f in json.loads(run("audit", NARROW, "-f", "json", *args).stdout)["findings"]}

    assert checks() == {"LB001", "LB002"}
    assert checks("--select", "LB002") == {"LB002"}
    assert checks("--ignore", "lb001,LB003") == {"LB002"}
    assert run("audit", NARROW, "--select", "LB002", "--ignore", "LB002").returncode == 0


def test_quiet_prints_nothing_when_clean():
    clean = run("audit", f"{EX}/lo-accept.rules", "-q")
    assert clean.returncode == 0 and clean.stdout == "" and clean.stderr == ""
    assert run("check", f"{EX}/lo-accept.rules", "--to", "127.0.0.53:53/udp", "-q").stdout == ""


def test_statistics():
    proc = run("audit", NARROW, "--statistics")
    assert proc.stdout.splitlines() == [
        "1  LB001       loopback-blocked",
        "1  LB002  [*]  narrow-loopback-accept",
        "[*] fixable with `lbfw fix`",
    ]
    assert proc.returncode == 1


# --------------------------------------------------------------------------- configuration


def test_configuration_file(tmp_path):
    conf = tmp_path / "lbfw.toml"
    conf.write_text(
        'ignore = ["LB001"]\nfail-on = "error"\nflows = ["127.0.0.1:8125/udp"]\n'
        '[per-path-ignores]\n"*.v6" = ["LB004"]\n'
    )
    doc = json.loads(run("audit", NARROW, f"{EX}/ip6-no-loopback.v6", "-f", "json", "--config", str(conf)).stdout)
    assert {f["check"] for f in doc["findings"]} == {"LB002"}
    assert {"proto": "udp", "client": None, "server": "127.0.0.1", "port": 8125} in [
        {k: fl[k] for k in ("proto", "client", "server", "port")} for fl in doc["flows"]
    ]
    # fail-on = "error" and only a warning left: exit 0; the option wins over the file
    assert run("audit", NARROW, "--config", str(conf)).returncode == 0
    assert run("audit", NARROW, "--config", str(conf), "--fail-on", "warning").returncode == 1
    # $LBFW_CONFIG names it too; --select replaces the file's selection
    by_env = run("audit", NARROW, "-f", "json", "--select", "LB001,LB002", env={"LBFW_CONFIG": str(conf)})
    assert {f["check"] for f in json.loads(by_env.stdout)["findings"]} == {"LB002"}


@pytest.mark.parametrize(
    "body,line,words",
    [
        ('select = ["LB001"]\nfail-on = "sometimes"\n', 2, "fail-on: 'sometimes' is not one of"),
        ("colour = true\n", 1, "colour: unknown key"),
        ('ignore = ["LB0042"]\n', 1, "no check named 'LB0042'"),
        ('flows = ["10.0.0.1:80"]\n', 1, "not a loopback address"),
        ("ignore = []\nselect = [1,,]\n", 2, "not valid TOML"),
    ],
)
def test_configuration_mistakes_name_the_line(tmp_path, body, line, words):
    conf = tmp_path / "bad.toml"
    conf.write_text(body)
    proc = run("audit", NARROW, "--config", str(conf))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{conf}:{line}: ") and words in proc.stderr


def test_the_default_configuration_path_is_overridden_in_tests():
    from lbfw import config

    assert os.environ["LBFW_CONFIG"] == "" and config.config_path(None) is None
    assert config.DEFAULT_PATH == "/etc/lbfw/lbfw.toml"


# --------------------------------------------------------------------------- colour and progress on a terminal


def test_colour_on_a_terminal_and_rich_decides_no_color_term_dumb_force_color():
    coloured, _, code = on_pty("audit", NARROW)
    assert code == 1 and "\x1b[" in coloured and "LB001" in coloured
    no_color, _, _ = on_pty("audit", NARROW, env={"NO_COLOR": "1"})
    assert "\x1b[31m" not in no_color and "\x1b[1;31m" not in no_color and "LB001" in no_color
    dumb, _, _ = on_pty("audit", NARROW, env={"TERM": "dumb"})
    assert "\x1b[" not in dumb and "LB001" in dumb
    forced = run("audit", NARROW, env={"FORCE_COLOR": "1"})
    assert "\x1b[" in forced.stdout
    assert "\x1b[" not in run("audit", NARROW).stdout


def test_progress_on_a_terminal_on_stderr_never_in_piped_output(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    big = tmp_path / "kube.rules"
    big.write_text(generate.kube_dump(140000))  # the size the issue names
    got, piped, code = on_pty("audit", str(big), "-f", "json", stdout_tty=False, stderr_tty=True)
    assert code in (0, 1) and "reading" in got and "kube.rules" in got  # wrapped at the pty's 80 columns
    assert "reading" not in piped and json.loads(piped)["sources"][0]["source"] == str(big)
    # a quick run on a terminal shows none, and piped stderr never does
    quick, _, _ = on_pty("audit", NARROW, stdout_tty=False, stderr_tty=True)
    assert "reading" not in quick and "\x1b[?25l" not in quick
    piped_run = run("audit", str(big), "-f", "json")
    assert "reading" not in piped_run.stderr

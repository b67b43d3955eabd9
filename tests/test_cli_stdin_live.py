"""`--live`: automation (ssh without a terminal, Ansible, cron under a pipe) hands lbfw a standard input it
never writes to; --live reads this host's rules instead of taking that pipe for a ruleset."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lbfw.sandbox.netns import Namespace


def _lbfw(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lbfw", *args], input=stdin, capture_output=True, text=True)


def test_an_empty_pipe_without_live_is_an_error_not_the_live_host():
    proc = _lbfw("audit")
    assert proc.returncode == 2 and "standard input is a pipe but empty" in proc.stderr


def test_live_with_a_source_is_a_usage_error(examples_dir):
    proc = _lbfw("audit", "--live", str(examples_dir / "cis.rules"))
    assert proc.returncode == 2 and "--live" in proc.stderr


@pytest.mark.kernel
def test_live_reads_the_namespaces_rules_although_stdin_is_a_pipe(examples_dir):
    with Namespace() as ns:
        ns.load_iptables((examples_dir / "input-narrow-accept.rules").read_text(), backend="legacy")
        argv = [sys.executable, "-m", "lbfw", "audit", "--live", "--format", "concise", "--fail-on", "never"]
        proc = ns.run(argv, input="", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "LB002" in proc.stdout and "standard input" not in proc.stderr

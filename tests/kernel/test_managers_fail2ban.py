"""LB008 and its fix with the real fail2ban (Debian's package: `scripts/system-deps.sh managers`),
its server running in a private network namespace with a private /etc and /run: the narrow
ignoreip is reported with its file and line, `lbfw fix` shows the jail.local diff, `--write`
writes it and reloads fail2ban, whose jail then ignores 127.0.0.0/8."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from private_etc import make_etc, run_with_etc  # tests/kernel is on sys.path

from lbfw.sandbox.netns import Namespace

pytestmark = pytest.mark.kernel

JAIL_LOCAL = """\
# this host's jails
[DEFAULT]
ignoreip = 127.0.0.1 192.0.2.10
bantime = 1h

[lbfw-test]
enabled = true
filter = sshd
backend = polling
logpath = /etc/lbfw-test.log
"""

# in the private namespaces: start fail2ban, run lbfw (dry run, then --write), ask the jail, stop
SCRIPT = r"""
import json, subprocess, sys, time
def run(*argv):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    return {"code": p.returncode, "out": p.stdout, "err": p.stderr}
out = {"start": run("fail2ban-client", "-x", "start")}
for _ in range(100):
    if run("fail2ban-client", "ping")["code"] == 0:
        break
    time.sleep(0.1)
lbfw = [sys.executable, "-m", "lbfw"]
out["audit"] = run(*lbfw, "audit", "--format", "json")
out["dry"] = run(*lbfw, "fix")
out["write"] = run(*lbfw, "fix", "--write")
out["ignoreip"] = run("fail2ban-client", "get", "lbfw-test", "ignoreip")
out["stop"] = run("fail2ban-client", "stop")
print(json.dumps(out))
"""


# the same, then `lbfw fix --apply --detach` that nobody confirms: the watchdog puts jail.local back
DETACHED = SCRIPT.replace(
    'out["write"] = run(*lbfw, "fix", "--write")\n',
    'out["detach"] = run(*lbfw, "fix", "--live", "--apply", "--detach", "--confirm-timeout", "3",'
    ' "--backup-dir", sys.argv[1], "--format", "json")\n'
    'out["pending"] = {"jail": open("/etc/fail2ban/jail.local").read(),'
    ' "ignoreip": run("fail2ban-client", "get", "lbfw-test", "ignoreip")}\n'
    "time.sleep(8)\n",
)


@pytest.fixture
def etc():
    if shutil.which("fail2ban-client") is None:
        why = "fail2ban is not installed: run scripts/system-deps.sh (make setup)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    folder = make_etc(
        {
            "fail2ban/jail.local": JAIL_LOCAL,
            "lbfw-test.log": "",
            "fail2ban/fail2ban.local": "[Definition]\nlogtarget = STDERR\ndbfile = :memory:\n",
        }
    )
    shutil.copytree(
        "/etc/fail2ban",
        folder / "fail2ban",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("jail.local", "fail2ban.local", "defaults-debian.conf"),
    )
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_narrow_ignoreip_is_reported_and_fixed_with_the_real_fail2ban(etc):
    run_dir = Path(tempfile.mkdtemp(prefix="lbfw-run-"))
    try:
        with Namespace() as ns:
            proc = run_with_etc(ns, etc, [sys.executable, "-c", SCRIPT], binds=((run_dir, "/run"),))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["start"]["code"] == 0, out["start"]
    [finding] = [f for f in json.loads(out["audit"]["out"])["findings"] if f["check"] == "LB008"]
    assert finding["source"] == "/etc/fail2ban/jail.local" and finding["line"] == 3
    assert "ignoreip = 127.0.0.1 192.0.2.10" in finding["message"] and finding["owner"] == "fail2ban"
    assert out["dry"]["code"] == 1, out["dry"]
    assert "-ignoreip = 127.0.0.1 192.0.2.10\n+ignoreip = 127.0.0.1/8 ::1 192.0.2.10\n" in out["dry"]["out"]
    assert out["write"]["code"] == 0, out["write"]
    assert "ran `fail2ban-client reload`" in out["write"]["err"]
    assert (etc / "fail2ban/jail.local").read_text() == JAIL_LOCAL.replace(
        "ignoreip = 127.0.0.1 192.0.2.10", "ignoreip = 127.0.0.1/8 ::1 192.0.2.10"
    )
    [bak] = list((etc / "fail2ban").glob("jail.local.lbfw-*.bak"))
    assert bak.read_text() == JAIL_LOCAL and (bak.stat().st_mode & 0o777) == 0o600
    assert "127.0.0.0/8" in out["ignoreip"]["out"] and "192.0.2.10" in out["ignoreip"]["out"], out["ignoreip"]


def test_an_unconfirmed_jail_local_fix_is_put_back_by_the_watchdog(etc):
    """`--apply` writes jail.local and reloads fail2ban inside the fix's transaction: unconfirmed,
    the watchdog restores the file byte for byte and reloads fail2ban again."""
    run_dir = Path(tempfile.mkdtemp(prefix="lbfw-run-"))
    backups = Path(tempfile.mkdtemp(prefix="lbfw-backups-"))
    os.chmod(backups, 0o700)
    try:
        with Namespace() as ns:
            proc = run_with_etc(
                ns, etc, [sys.executable, "-c", DETACHED, str(backups)], binds=((run_dir, "/run"),), timeout=300
            )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(backups, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["start"]["code"] == 0, out["start"]
    assert out["detach"]["code"] == 0, out["detach"]
    assert json.loads(out["detach"]["out"])["transaction"]
    pending = out["pending"]
    assert "ignoreip = 127.0.0.1/8 ::1 192.0.2.10" in pending["jail"]
    assert "127.0.0.0/8" in pending["ignoreip"]["out"], pending["ignoreip"]  # fail2ban was reloaded with it
    assert (etc / "fail2ban/jail.local").read_text() == JAIL_LOCAL  # the watchdog put it back
    assert "127.0.0.0/8" not in out["ignoreip"]["out"] and "127.0.0.1" in out["ignoreip"]["out"], out["ignoreip"]

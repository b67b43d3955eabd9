"""ufw's own commands in `lbfw fix`, with the real ufw (Debian's package: scripts/system-deps.sh)
enabled inside a private network namespace with a private /etc (the host's ufw, firewall and /etc
are never touched).

The host is a hardened ufw: before.rules without its `-i lo -j ACCEPT`, and loopback let in by
`ufw allow from 127.0.0.1` alone, so a client bound to 127.0.0.2 is refused. `lbfw fix` shows
ufw's commands and changes nothing; `--apply` runs them inside its transaction (user.rules and
the kernel change, 127.0.0.2 -> 127.0.0.1 gets through); an unconfirmed `--detach` is put back by
the watchdog, and `lbfw rollback` puts an applied one back.
"""

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

# in the private namespaces: enable ufw, allow 127.0.0.1, then the steps named on the command line
SCRIPT = r"""
import json, re, socket, subprocess, sys, time
BACKUPS = sys.argv[1]
lbfw = [sys.executable, "-m", "lbfw"]
def run(*argv):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    return {"code": p.returncode, "out": p.stdout, "err": p.stderr}
def connects():
    # a real TCP connection from a client bound to 127.0.0.2 to a listener on 127.0.0.1
    server = socket.socket(); server.bind(("127.0.0.1", 8080)); server.listen(1)
    client = socket.socket(); client.bind(("127.0.0.2", 0)); client.settimeout(1.0)
    try:
        client.connect(("127.0.0.1", 8080))
        return True
    except OSError:
        return False
    finally:
        client.close(); server.close()
def state():
    return {
        "user_rules": open("/etc/ufw/user.rules").read(),
        # the rules, without the dump's timestamps and the chains' packet counters
        "kernel": re.sub(r"\[\d+:\d+\]", "", re.sub(r"(?m)^#.*\n", "", run("iptables-save")["out"])),
        "connects": connects(),
    }
out = {"enable": run("ufw", "--force", "enable"), "allow": run("ufw", "allow", "from", "127.0.0.1")}
out["before"] = state()
for step in sys.argv[2:]:
    if step == "audit":
        out["audit"] = run(*lbfw, "audit", "--live", "--format", "json")
    elif step == "dry":
        out["dry"] = run(*lbfw, "fix", "--live", "--format", "json")
        out["after_dry"] = state()
    elif step == "apply":
        out["apply"] = run(*lbfw, "fix", "--live", "--apply", "--yes", "--backup-dir", BACKUPS, "--format", "json")
        out["after_apply"] = state()
    elif step == "rollback":
        transaction = json.loads(out["apply"]["out"])["transaction"]
        out["rollback"] = run(*lbfw, "rollback", transaction, "--backup-dir", BACKUPS)
        out["after_rollback"] = state()
    elif step == "detach":
        out["detach"] = run(
            *lbfw, "fix", "--live", "--apply", "--detach", "--confirm-timeout", "3",
            "--backup-dir", BACKUPS, "--format", "json",
        )
        out["pending"] = state()
        time.sleep(8)  # past the deadline: the watchdog reverts
        out["after_deadline"] = state()
print(json.dumps(out))
"""

NARROW = "-A ufw-user-input -s 127.0.0.1/32 -j ACCEPT"
ON_LO = "-A ufw-user-input -i lo -j ACCEPT"


@pytest.fixture
def etc():
    if shutil.which("ufw") is None:
        why = "ufw is not installed: run scripts/system-deps.sh (make setup)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    folder = make_etc({})
    shutil.copytree("/etc/ufw", folder / "ufw", dirs_exist_ok=True)
    (folder / "default").mkdir(exist_ok=True)
    shutil.copy2("/etc/default/ufw", folder / "default/ufw")
    before = folder / "ufw/before.rules"
    text = before.read_text()
    assert "-A ufw-before-input -i lo -j ACCEPT\n" in text  # Debian's ufw as shipped
    before.write_text(text.replace("-A ufw-before-input -i lo -j ACCEPT\n", ""))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _run(etc: Path, *steps: str) -> dict:
    backups = Path(tempfile.mkdtemp(prefix="lbfw-backups-"))
    os.chmod(backups, 0o700)
    try:
        with Namespace() as ns:
            proc = run_with_etc(ns, etc, [sys.executable, "-c", SCRIPT, str(backups), *steps], timeout=300)
    finally:
        shutil.rmtree(backups, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["enable"]["code"] == 0 and out["allow"]["code"] == 0, (out["enable"], out["allow"])
    before = out["before"]
    assert NARROW in before["kernel"] and not before["connects"]  # the narrow rule lets 127.0.0.1 alone in
    return out


def test_ufw_rule_is_attributed_and_the_dry_run_shows_ufw_commands_and_changes_nothing(etc):
    out = _run(etc, "audit", "dry")
    findings = json.loads(out["audit"]["out"])["findings"]
    narrow = [f for f in findings if f.get("owner") == "ufw" and f["chain"] == "ufw-user-input"]
    assert narrow and all("`ufw delete`" in f["message"] for f in narrow), findings
    assert out["dry"]["code"] == 1, out["dry"]
    doc = json.loads(out["dry"]["out"])
    [change] = doc["managed"]
    assert change["manager"] == "ufw" and "/etc/ufw/user.rules" in change["files"]
    assert ["ufw", "delete", "allow", "from", "127.0.0.1"] in change["commands"], change
    assert "runs `ufw delete allow from 127.0.0.1`" in out["dry"]["err"]
    assert out["after_dry"] == out["before"]  # files, kernel and traffic as they were


def test_apply_runs_ufw_and_rollback_puts_user_rules_back(etc):
    out = _run(etc, "apply", "rollback")
    assert out["apply"]["code"] == 0, out["apply"]
    applied = out["after_apply"]
    assert NARROW not in applied["kernel"] and ON_LO in applied["kernel"], applied["kernel"]
    assert "-A ufw-user-input -s 127.0.0.1 -j ACCEPT" not in applied["user_rules"]
    assert "in_lo" in applied["user_rules"] and applied["connects"]  # 127.0.0.2 -> 127.0.0.1 gets through
    assert out["rollback"]["code"] == 0, out["rollback"]
    back = out["after_rollback"]
    assert back["user_rules"] == out["before"]["user_rules"]  # byte for byte
    assert NARROW in back["kernel"] and ON_LO not in back["kernel"] and not back["connects"]


def test_an_unconfirmed_ufw_change_is_put_back_by_the_watchdog(etc):
    out = _run(etc, "detach")
    assert out["detach"]["code"] == 0, out["detach"]
    assert json.loads(out["detach"]["out"])["transaction"]
    pending = out["pending"]
    assert NARROW not in pending["kernel"] and pending["connects"]
    after = out["after_deadline"]
    assert after["user_rules"] == out["before"]["user_rules"], after["user_rules"]
    assert NARROW in after["kernel"] and ON_LO not in after["kernel"] and not after["connects"]

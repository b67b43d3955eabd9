"""Another program inserting and deleting at INPUT 1 while lbfw applies (what fail2ban and Docker
do): in 20 trials per iptables backend, lbfw never replaces another rule. Each trial ends with
either lbfw's change made where the old rule stood, or nothing changed and lbfw saying so
(RuleMoved, exit 1); the `--dport 22` rule under the DROP policy is there every time.

The whole test runs in a private namespace, with XTABLES_LOCKFILE naming a lock file of the
test's own (lbfw, the churner and iptables all honour it), so the host's lock is never taken.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lbfw.sandbox.netns import Namespace

pytestmark = pytest.mark.kernel

RULES = """\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 127.0.0.1/32 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""

# Bans at the top of INPUT, added and removed by specification as fail2ban does, as fast as the tool goes.
CHURN = r"""
n=0
while :; do
  n=$(( (n % 200) + 1 ))
  "$1" -w -I INPUT 1 -s 192.0.2.$n/32 -j DROP
  "$1" -w -D INPUT -s 192.0.2.$n/32 -j DROP
done
"""

TRIALS = r"""
import json, subprocess, sys, time
from lbfw.backends import RuleMoved
from lbfw.commands.fix import audit
from lbfw.fix import live
from lbfw.fix.plan import plan_fixes
from lbfw.read.live import read_live
backend, restore, save, backups, rules = sys.argv[1:6]
outcomes = []
for trial in range(20):
    subprocess.run([restore, "-w"], input=rules, text=True, check=True)
    churn = subprocess.Popen(["sh", "-c", sys.argv[6], "churn", backend.replace("-restore", "")])
    time.sleep(0.05)
    try:
        ruleset = read_live()
        tables = live.read_tables(ruleset)
        plan = plan_fixes(ruleset, audit(ruleset), texts=tables.texts, locate=live.make_locator(ruleset, tables))
        plan.edits = [e for e in plan.edits if e.target.backend == sys.argv[7]]
        assert len(plan.edits) == 1, (plan.edits, plan.refusals)
        try:
            live.apply_plan(plan, tables, backups, confirm=lambda *_: True, say=lambda _: None)
            outcome = "applied"
        except RuleMoved as err:
            outcome = "moved"
    finally:
        churn.kill()
        churn.wait()
    left = [line for line in subprocess.run([save, "-t", "filter"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("-A INPUT") and "192.0.2." not in line]
    outcomes.append({"outcome": outcome, "rules": left})
print(json.dumps(outcomes))
"""


@pytest.mark.parametrize("backend", ["legacy", "iptables-nft"])
def test_churn_at_input_1_never_makes_lbfw_replace_another_rule(tmp_path, backend):
    suffix = "legacy" if backend == "legacy" else "nft"
    lock = tmp_path / "xtables.lock"
    env = dict(os.environ, XTABLES_LOCKFILE=str(lock))
    with Namespace() as ns:
        if backend == "legacy" and not ns.legacy_available():
            pytest.fail("legacy xtables is not available in this kernel")
        proc = subprocess.run(
            ns.enter_argv(
                [
                    sys.executable,
                    "-c",
                    TRIALS,
                    f"iptables-{suffix}-restore",
                    f"iptables-{suffix}-restore",
                    f"iptables-{suffix}-save",
                    str(tmp_path / "b"),
                    RULES,
                    CHURN,
                    backend,
                ]
            ),
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    assert len(outcomes) == 20
    for trial in outcomes:
        # the ssh rule is never touched; the loopback rule is the old one (nothing changed) or
        # the new one standing where the old one stood, and lbfw's word matches the kernel's
        if trial["outcome"] == "applied":
            assert trial["rules"] == ["-A INPUT -i lo -j ACCEPT", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"], trial
        else:
            assert trial["rules"] == [
                "-A INPUT -s 127.0.0.1/32 -j ACCEPT",
                "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
            ]
    assert any(t["outcome"] == "applied" for t in outcomes), outcomes

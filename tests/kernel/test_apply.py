"""`lbfw fix --apply` against a real kernel: every live test runs lbfw INSIDE a private network
namespace it creates (nsenter), never on the host.

What is proven, with each backend (iptables-legacy, iptables-nft, nftables): the buggy examples
are fixed so that real traffic on every default loopback flow is delivered and a re-audit is
clean; tables lbfw did not fix stay byte-identical; a concurrent change aborts with nothing
changed; no confirmation (timeout on a terminal) restores the exact previous state; a failed
apply changes nothing; backups are private; --yes is required without a terminal. tests/kernel/test_live_*.py prove
the rest of the transaction: churn, interruptions, the watchdog, rollback and backups.
"""

from __future__ import annotations

import json
import os
import pty
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lbfw.analyze.flows import default_flows
from lbfw.read import read_sources
from lbfw.sandbox.netns import Namespace
from lbfw.sandbox.traffic import observe

pytestmark = pytest.mark.kernel

# Tables lbfw must never write to: Docker's NAT and raw tables with their deliberate 127.0.0.1/32s
# (legacy and iptables-nft), and a native nft table naming 127.0.0.11 (Docker's embedded resolver).
UNRELATED_IPT = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8080 -m comment --comment "DROP REMOTE LOOPBACK" -j DROP
COMMIT
"""
UNRELATED_NFT = """\
table ip dockerish {
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr 127.0.0.11 udp dport 53 counter dnat to 127.0.0.11:46635 comment "embedded DNS"
\t}
}
"""

LBFW = [sys.executable, "-m", "lbfw"]


def snapshot(ns) -> dict:
    """Every table as the kernel prints it (timestamps aside; nft with handles).

    The nft handles of iptables-nft's own tables are left out: a rule lbfw changes there is
    deleted and inserted by content (iptables has no handles, iptables-nft-save shows none), so
    it comes back with a new one. Native nft tables keep every handle, and are compared with them."""
    out = {}
    owned = set()
    for tool, family in (
        ("iptables-legacy-save", None),
        ("ip6tables-legacy-save", None),
        ("iptables-nft-save", "ip"),
        ("ip6tables-nft-save", "ip6"),
    ):
        text = ns.run([tool], check=False).stdout
        out[tool] = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        if family:
            owned |= {(family, line[1:]) for line in text.splitlines() if line.startswith("*")}
    blocks = re.split(r"(?m)^(?=table )", ns.run(["nft", "-a", "list", "ruleset"]).stdout)
    for i, block in enumerate(blocks):
        head = block.split(None, 3)[1:3]
        if tuple(head) in owned:
            blocks[i] = re.sub(r"(?m)^(\t\t.*?) # handle \d+$", r"\1", block)
    out["nft"] = "".join(blocks)
    return out


def unrelated(ns) -> dict:
    return {
        "legacy nat": _no_comments(ns.run(["iptables-legacy-save", "-t", "nat"]).stdout),
        "nft nat": _no_comments(ns.run(["iptables-nft-save", "-t", "nat"]).stdout),
        "legacy raw": _no_comments(ns.run(["iptables-legacy-save", "-t", "raw"]).stdout),
        "nft raw": _no_comments(ns.run(["iptables-nft-save", "-t", "raw"]).stdout),
        "nft dockerish": ns.run(["nft", "-a", "list", "table", "ip", "dockerish"]).stdout,
    }


def _no_comments(text: str) -> str:
    """Without the timestamp comments and with chain counters zeroed (traffic moves them)."""
    return "\n".join(re.sub(r"\[\d+:\d+\]$", "[0:0]", line) for line in text.splitlines() if not line.startswith("#"))


def setup(ns, ipt: Path | None, nft_text: str | None) -> None:
    if nft_text is not None:  # first: an example may start with `flush ruleset`
        ns.load_nft(nft_text)
    ns.load_iptables(UNRELATED_IPT, backend="legacy")
    ns.load_iptables(UNRELATED_IPT, backend="nft")
    ns.load_nft(UNRELATED_NFT)
    if ipt is not None:
        text = ipt.read_text()
        ns.load_iptables(text, backend="legacy")
        ns.load_iptables(text, backend="nft")


def lbfw_in(ns, *args, stdin=subprocess.DEVNULL, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ns.enter_argv(LBFW + list(args)), stdin=stdin, capture_output=True, text=True, timeout=timeout
    )


def python_in(ns, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ns.enter_argv([sys.executable, "-c", code]),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def flows_for(paths: list) -> list:
    flows = []
    for flow in default_flows(read_sources([str(p) for p in paths])):
        if flow not in flows:
            flows.append(flow)
    return flows


def nft_example(examples_dir, name: str) -> str:
    text = (examples_dir / name).read_text()
    # `table ip filter` would share its name with iptables-nft's filter table loaded beside it.
    return text.replace("table ip filter", "table ip vmapf")


CASES = [
    ("input-narrow-accept.rules", "nft-saddr-narrow.nft"),
    ("output-narrow-accept.rules", "nft-define.nft"),
    ("input-narrow-accept-lo.rules", "nft-antispoof-narrow.nft"),
    ("input-narrow-accept-established.rules", "nft-vmap.nft"),
    ("user-chain-narrow-accept.rules", None),
    ("antispoof-narrow.rules", None),
]


@pytest.mark.parametrize("ipt_name, nft_name", CASES, ids=[c[0] for c in CASES])
def test_apply_fixes_every_backend_and_touches_nothing_else(examples_dir, tmp_path, ipt_name, nft_name):
    ipt = examples_dir / ipt_name
    nft_text = nft_example(examples_dir, nft_name) if nft_name else None
    flow_sources = [ipt] + ([examples_dir / nft_name] if nft_name else [])
    flows = flows_for(flow_sources)
    backups = tmp_path / "backups"
    with Namespace() as ns:
        setup(ns, ipt, nft_text)
        before_unrelated = unrelated(ns)
        proc = lbfw_in(ns, "fix", "--apply", "--yes", "--backup-dir", str(backups))
        assert proc.returncode == 0, proc.stderr
        assert "re-audit: 0 LB002/LB003 finding(s) left" in proc.stderr
        assert unrelated(ns) == before_unrelated  # before any traffic moves a counter
        # the kernel delivers every loopback flow now
        seen = observe(ns, flows, timeout=0.5)
        assert [f.label() for f, v in zip(flows, seen) if v != "delivered"] == []
        if ipt_name == CASES[0][0]:  # once (it costs a process): `lbfw audit` itself agrees
            audit = json.loads(lbfw_in(ns, "audit", "--format", "json").stdout)
            assert [f for f in audit["findings"] if f["check"] in ("LB002", "LB003")] == []
        # every backend was fixed: both iptables backends, and nft when loaded
        touched = {
            line.split()[0] for line in proc.stderr.splitlines() if re.match(r"^\S+ \S+ \S+ \S+ (#|handle)", line)
        }
        assert {"legacy", "iptables-nft"} <= touched, proc.stderr
        if nft_text:
            assert "nftables" in touched, proc.stderr
    # backups: a private directory of private files, one per touched table plus the manifest
    [backup] = list(backups.iterdir())
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    files = list(backup.iterdir())
    assert len(files) >= 3
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


@pytest.mark.parametrize("name, why", [("nft-firewalld-owned.nft", "firewall-cmd")])
def test_what_cannot_be_fixed_live_is_refused_and_nothing_changes(examples_dir, tmp_path, name, why):
    with Namespace() as ns:
        setup(ns, None, (examples_dir / name).read_text())
        before = snapshot(ns)
        proc = lbfw_in(ns, "fix", "--apply", "--yes", "--backup-dir", str(tmp_path / "b"))
        assert proc.returncode == 1, proc.stderr
        assert why in proc.stderr and "not fixed" in proc.stderr
        assert snapshot(ns) == before
    assert not (tmp_path / "b").exists()


def test_without_a_terminal_yes_is_required(examples_dir, tmp_path):
    with Namespace() as ns:
        setup(ns, examples_dir / "input-narrow-accept.rules", None)
        before = snapshot(ns)
        proc = lbfw_in(ns, "fix", "--apply", "--backup-dir", str(tmp_path / "b"))
        assert proc.returncode == 2
        assert "--yes" in proc.stderr and "Traceback" not in proc.stderr
        assert snapshot(ns) == before


def test_no_confirmation_on_the_terminal_restores_the_exact_previous_state(examples_dir, tmp_path):
    with Namespace() as ns:
        setup(ns, examples_dir / "input-narrow-accept.rules", examples_dir.joinpath("nft-saddr-narrow.nft").read_text())
        before = snapshot(ns)
        master, slave = pty.openpty()
        try:
            started = time.monotonic()
            proc = subprocess.run(
                ns.enter_argv(LBFW + ["fix", "--apply", "--confirm-timeout", "2", "--backup-dir", str(tmp_path / "b")]),
                stdin=slave,
                capture_output=True,
                text=True,
                timeout=120,
            )
            elapsed = time.monotonic() - started
        finally:
            os.close(slave)
            os.close(master)
        assert proc.returncode == 1, proc.stderr
        assert "Keep the new rules?" in proc.stderr and "previous rules are back" in proc.stderr
        assert elapsed >= 2
        # exact: same rules, same positions, same nft handles
        assert snapshot(ns) == before


def test_confirmation_keeps_the_fix_and_rollback_restores_the_newest_backup(examples_dir, tmp_path):
    backups = tmp_path / "b"
    with Namespace() as ns:
        setup(ns, examples_dir / "input-narrow-accept.rules", examples_dir.joinpath("nft-saddr-narrow.nft").read_text())
        before = snapshot(ns)
        before_inet = ns.run(["nft", "list", "table", "inet", "filter"]).stdout
        master, slave = pty.openpty()
        try:
            child = subprocess.Popen(
                ns.enter_argv(LBFW + ["fix", "--apply", "--confirm-timeout", "20", "--backup-dir", str(backups)]),
                stdin=slave,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and child.poll() is None:
                # answer once the backup exists: the rules are applied and the prompt is up
                time.sleep(0.3)
                if any(backups.glob("*/manifest.json")):
                    time.sleep(0.3)
                    os.write(master, b"yes\n")
                    break
            out, err = child.communicate(timeout=60)
        finally:
            os.close(slave)
            os.close(master)
        assert child.returncode == 0, err
        assert "-A INPUT -i lo -j ACCEPT" in ns.run(["iptables-legacy-save", "-t", "filter"]).stdout
        assert snapshot(ns) != before

        proc = lbfw_in(ns, "rollback", "--backup-dir", str(backups))
        assert proc.returncode == 0, proc.stderr
        # lbfw's own changes undone by content: the exact previous rules, nft handles included
        assert snapshot(ns) == before
        assert ns.run(["nft", "list", "table", "inet", "filter"]).stdout == before_inet


CONCURRENT = r"""
import json, subprocess, sys
from lbfw.errors import ApplyError
from lbfw.commands.fix import audit
from lbfw.fix import live
from lbfw.fix.plan import plan_fixes
from lbfw.read.live import read_live
ruleset = read_live()
tables = live.read_tables(ruleset)
plan = plan_fixes(ruleset, audit(ruleset), texts=tables.texts, locate=live.make_locator(ruleset, tables))
assert plan.edits, plan.refusals
# someone else inserts a rule at the top of INPUT between lbfw's read and its apply
subprocess.run(["iptables-legacy", "-w", "-I", "INPUT", "1", "-p", "udp", "--dport", "9", "-j", "ACCEPT"], check=True)
try:
    live.apply_plan(plan, tables, sys.argv[1], confirm=lambda *_: True)
except ApplyError as err:
    print(json.dumps({"aborted": str(err)}))
else:
    print(json.dumps({"aborted": None}))
"""


def test_a_concurrent_change_aborts_and_changes_nothing(examples_dir, tmp_path):
    with Namespace() as ns:
        setup(ns, examples_dir / "input-narrow-accept.rules", examples_dir.joinpath("nft-saddr-narrow.nft").read_text())
        proc = subprocess.run(
            ns.enter_argv([sys.executable, "-c", CONCURRENT, str(tmp_path / "b")]),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["aborted"] and "changed since lbfw read it" in result["aborted"]
        # nothing lbfw planned was applied: only the other writer's rule is new
        legacy = ns.run(["iptables-legacy-save", "-t", "filter"]).stdout
        assert "-A INPUT -p udp -m udp --dport 9 -j ACCEPT\n-A INPUT -s 127.0.0.1/32 -j ACCEPT" in legacy
        assert "-i lo" not in legacy
        assert "-o lo" not in ns.run(["iptables-nft-save", "-t", "filter"]).stdout
        assert 'iif "lo"' not in ns.run(["nft", "list", "table", "inet", "filter"]).stdout
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


FAILING = r"""
import dataclasses, json, sys
from lbfw.errors import ApplyError
from lbfw.commands.fix import audit
from lbfw.fix import live
from lbfw.fix.plan import plan_fixes
from lbfw.read.live import read_live
ruleset = read_live()
tables = live.read_tables(ruleset)
plan = plan_fixes(ruleset, audit(ruleset), texts=tables.texts, locate=live.make_locator(ruleset, tables))
# the nft transaction runs last and is made to fail in the kernel (a rule nft rejects):
# the iptables backends applied before it must be put back
plan.edits = [dataclasses.replace(e, new=e.new.replace('iif "lo"', 'iif "lo" meta nosuchkey 1'))
              if e.target.backend == "nftables" else e for e in plan.edits]
assert {e.target.backend for e in plan.edits} == {"legacy", "iptables-nft", "nftables"}, plan.edits
try:
    live.apply_plan(plan, tables, sys.argv[1], confirm=lambda *_: True)
except ApplyError as err:
    print(json.dumps({"failed": str(err)}))
else:
    print(json.dumps({"failed": None}))
"""


def test_a_failed_apply_changes_nothing(examples_dir, tmp_path):
    with Namespace() as ns:
        setup(ns, examples_dir / "input-narrow-accept.rules", examples_dir.joinpath("nft-saddr-narrow.nft").read_text())
        before = snapshot(ns)
        proc = subprocess.run(
            ns.enter_argv([sys.executable, "-c", FAILING, str(tmp_path / "b")]),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["failed"] and "nft -f failed" in result["failed"]
        after = snapshot(ns)
        for key in ("iptables-legacy-save", "iptables-nft-save"):
            assert after[key] == before[key], key
        # nft: same rules; the restored iptables-nft table may get new handles, the native one may not
        assert ns.run(["nft", "-a", "list", "table", "inet", "filter"]).stdout in before["nft"]


def test_without_root_exit_2_with_what_to_run():
    # A user namespace without a mapping: lbfw runs as uid 65534 there (and can still read its files);
    # and a network namespace of its own, so that even a bug could not reach the host's firewall.
    proc = subprocess.run(
        ["unshare", "-U", "-n", "--", *LBFW, "fix", "--apply", "--yes"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr
    assert "needs root" in proc.stderr and "sudo lbfw fix" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_live_dry_run_shows_each_backend_in_its_own_syntax_and_verify_changes_nothing(examples_dir):
    with Namespace() as ns:
        setup(ns, examples_dir / "input-narrow-accept.rules", examples_dir.joinpath("nft-saddr-narrow.nft").read_text())
        before = snapshot(ns)
        proc = lbfw_in(ns, "fix", "--dry-run", "--verify")
        assert proc.returncode == 1, proc.stderr
        assert "--- a/live:legacy/ip/filter\n" in proc.stdout
        assert "--- a/live:iptables-nft/ip/filter\n" in proc.stdout
        assert "--- a/live:nftables/inet/filter\n" in proc.stdout
        assert "+-A INPUT -i lo -j ACCEPT\n" in proc.stdout
        assert re.search(r'^\+\s+iif "lo" accept # handle \d+$', proc.stdout, re.M)
        m = re.search(r"(\d+) repaired by the fix, (\d+) broken by it", proc.stderr)
        assert m and int(m.group(1)) > 0 and m.group(2) == "0", proc.stderr
        assert "repaired: tcp 127.0.0.2 -> 127.0.0.1" in proc.stderr
        assert snapshot(ns) == before


def test_ctrl_c_while_waiting_for_confirmation_restores_the_previous_state(examples_dir, tmp_path):
    import signal

    backups = tmp_path / "b"
    with Namespace() as ns:
        setup(ns, examples_dir / "output-narrow-accept.rules", examples_dir.joinpath("nft-define.nft").read_text())
        before = snapshot(ns)
        master, slave = pty.openpty()
        try:
            # nsenter execs lbfw (no fork for a network namespace): the signal reaches Python itself
            child = subprocess.Popen(
                ns.enter_argv(LBFW + ["fix", "--apply", "--confirm-timeout", "30", "--backup-dir", str(backups)]),
                stdin=slave,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(backups.glob("*/manifest.json")):
                time.sleep(0.2)
            time.sleep(0.5)
            assert snapshot(ns) != before  # applied, waiting for the answer
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=60)
        finally:
            os.close(slave)
            os.close(master)
        assert child.returncode == 130, err
        assert "previous rules are back" in err and "Traceback" not in err
        assert snapshot(ns) == before

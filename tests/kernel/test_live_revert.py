"""The confirmation window of `lbfw fix --apply`, in private namespaces, on all three backends:
every way it can end without a confirmation ends with the exact previous rules, and a revert
or a rollback undoes only lbfw's own changes (rules other programs added meanwhile stay).

- a ban inserted at INPUT 1 during the window survives the revert (legacy, iptables-nft, nftables);
- SIGHUP, SIGTERM, a closed terminal, and a SIGKILL of lbfw (the watchdog reverts at the deadline);
- `--detach --format json` and `lbfw confirm ID` (the contract the Ansible modules use), and a
  confirmation after the deadline (exit 1, the old rules back);
- rules added after a confirmed apply survive `lbfw rollback`;
- the named-set host is fixed live (a copy of the rule before itself; traffic proves it).
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_apply import LBFW, flows_for, lbfw_in, setup, snapshot

from lbfw.sandbox.netns import Namespace
from lbfw.sandbox.traffic import observe

pytestmark = pytest.mark.kernel

BAN = "192.0.2.66"
ALL = {"live:legacy/ip/filter", "live:iptables-nft/ip/filter", "live:nftables/inet/filter"}


def loaded(ns, examples_dir: Path) -> None:
    setup(ns, examples_dir / "input-narrow-accept.rules", examples_dir.joinpath("nft-saddr-narrow.nft").read_text())


def state_of(backups: Path) -> dict:
    [path] = list(backups.glob("*/state.json"))
    return json.loads(path.read_text())


def wait_applied(backups: Path, timeout: float = 90) -> dict:
    """state.json once every table's change is made (lbfw is then at its prompt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = state_of(backups)
            if set(state.get("applied", {})) == ALL:
                return state
        except (ValueError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError("lbfw never applied its changes")


class Prompted:
    """lbfw fix --apply with a terminal of its own (a pty), run in the namespace."""

    def __init__(self, ns, backups: Path, timeout: int):
        self.master: int | None
        self.master, slave = pty.openpty()
        self.child = subprocess.Popen(
            ns.enter_argv(LBFW + ["fix", "--apply", "--confirm-timeout", str(timeout), "--backup-dir", str(backups)]),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(slave)

    def finish(self, timeout: float = 60) -> tuple:
        out, err = self.child.communicate(timeout=timeout)
        if self.master is not None:
            os.close(self.master)
        return self.child.returncode, err


def add_bans(ns) -> None:
    ns.run(["iptables-legacy", "-w", "-I", "INPUT", "1", "-s", BAN, "-j", "DROP"])
    ns.run(["iptables-nft", "-I", "INPUT", "1", "-s", BAN, "-j", "DROP"])
    ns.run(["nft", "insert", "rule", "inet", "filter", "input", "ip", "saddr", BAN, "drop"])


def remove_bans(ns) -> None:
    """Delete the bans (each must be there): what is left must be the rules from before."""
    ns.run(["iptables-legacy", "-w", "-D", "INPUT", "-s", BAN, "-j", "DROP"])
    ns.run(["iptables-nft", "-D", "INPUT", "-s", BAN, "-j", "DROP"])
    listing = ns.run(["nft", "-a", "list", "chain", "inet", "filter", "input"]).stdout
    [handle] = [line.split("# handle ")[1] for line in listing.splitlines() if f"ip saddr {BAN} drop" in line]
    ns.run(["nft", "delete", "rule", "inet", "filter", "input", "handle", handle.strip()])


def test_a_ban_added_during_the_window_survives_the_revert_on_every_backend(examples_dir, tmp_path):
    backups = tmp_path / "b"
    with Namespace() as ns:
        loaded(ns, examples_dir)
        before = snapshot(ns)
        run = Prompted(ns, backups, 8)
        wait_applied(backups)
        add_bans(ns)  # fail2ban, during the window, at the top of INPUT
        code, err = run.finish()
        assert code == 1, err
        assert "previous rules are back" in err
        remove_bans(ns)
        assert snapshot(ns) == before


@pytest.mark.parametrize("how", ["SIGHUP", "SIGTERM", "closed terminal", "SIGKILL"])
def test_an_interrupted_confirmation_ends_with_the_exact_previous_rules(examples_dir, tmp_path, how):
    backups = tmp_path / "b"
    with Namespace() as ns:
        loaded(ns, examples_dir)
        before = snapshot(ns)
        run = Prompted(ns, backups, 4 if how == "SIGKILL" else 60)
        state = wait_applied(backups)
        assert snapshot(ns) != before  # applied, waiting for the answer
        if how == "closed terminal" and run.master is not None:
            os.close(run.master)  # the SSH session drops: the prompt reads EIO
            run.master = None
        elif how == "SIGKILL":
            run.child.kill()  # nothing of lbfw runs any more: the watchdog must do it
        else:
            run.child.send_signal(getattr(signal, how))
        code, err = run.finish()
        if how == "SIGKILL":
            assert code == -signal.SIGKILL
            assert snapshot(ns) != before  # still applied until the deadline
            while time.time() < state["deadline"] + 5 and state_of(backups)["state"] == "pending":
                time.sleep(0.2)
            assert state_of(backups)["state"] == "reverted"
            assert "watchdog" in state_of(backups)["why"]
        else:
            assert code == (1 if how == "closed terminal" else 128 + getattr(signal, how)), err
            assert "previous rules are back" in err and "Traceback" not in err
            assert state_of(backups)["state"] == "reverted"
        assert snapshot(ns) == before


def test_detach_and_confirm_from_another_connection(examples_dir, tmp_path):
    """The CLI contract the Ansible modules use."""
    backups = tmp_path / "b"
    with Namespace() as ns:
        loaded(ns, examples_dir)
        before = snapshot(ns)
        proc = lbfw_in(
            ns,
            "fix",
            "--apply",
            "--confirm-timeout",
            "60",
            "--detach",
            "--format",
            "json",
            "--backup-dir",
            str(backups),
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert set(doc) >= {"transaction", "deadline"} and doc["deadline"] > time.time()
        assert snapshot(ns) != before
        confirm = lbfw_in(ns, "confirm", doc["transaction"], "--backup-dir", str(backups))
        assert confirm.returncode == 0, confirm.stderr
        applied = snapshot(ns)
        assert applied != before and state_of(backups)["state"] == "confirmed"

        # too late: after the deadline the watchdog has put the old rules back, and confirm says so
        for path in backups.iterdir():
            os.rename(path, tmp_path / path.name)
        proc = lbfw_in(ns, "rollback", doc["transaction"], "--backup-dir", str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert snapshot(ns) == before
        proc = lbfw_in(
            ns, "fix", "--apply", "--confirm-timeout", "2", "--detach", "--format", "json", "--backup-dir", str(backups)
        )
        doc = json.loads(proc.stdout)
        while time.time() < doc["deadline"] + 5 and state_of(backups)["state"] == "pending":
            time.sleep(0.2)
        late = lbfw_in(ns, "confirm", doc["transaction"], "--backup-dir", str(backups))
        assert late.returncode == 1, late.stderr
        assert "too late" in late.stderr
        assert snapshot(ns) == before


def test_rules_added_after_a_confirmed_apply_survive_rollback(examples_dir, tmp_path):
    backups = tmp_path / "b"
    with Namespace() as ns:
        loaded(ns, examples_dir)
        before = snapshot(ns)
        assert lbfw_in(ns, "fix", "--apply", "--yes", "--backup-dir", str(backups)).returncode == 0
        add_bans(ns)
        listed = lbfw_in(ns, "rollback", "--list", "--backup-dir", str(backups))
        assert listed.returncode == 0 and "confirmed" in listed.stdout and "3 change(s)" in listed.stdout
        dry = lbfw_in(ns, "rollback", "--dry-run", "--backup-dir", str(backups))
        assert dry.returncode == 0
        assert "-A INPUT -i lo -j ACCEPT\n+-A INPUT -s 127.0.0.1/32 -j ACCEPT" in dry.stdout.replace("\n-", "\n-")
        assert f"-s {BAN}" not in dry.stdout.replace(f" -A INPUT -s {BAN}/32 -j DROP", "")  # the ban is context only
        proc = lbfw_in(ns, "rollback", "--backup-dir", str(backups))
        assert proc.returncode == 0, proc.stderr
        assert f"-A INPUT -s {BAN}/32 -j DROP" in ns.run(["iptables-legacy-save", "-t", "filter"]).stdout
        remove_bans(ns)
        assert snapshot(ns) == before


def test_the_named_set_host_is_fixed_live(examples_dir, tmp_path):
    name = "nft-named-set.nft"
    flows = flows_for([examples_dir / name])
    with Namespace() as ns:
        ns.load_nft((examples_dir / name).read_text())
        dry = lbfw_in(ns, "fix", "--dry-run")
        assert dry.returncode == 1
        assert '+\t\tiif "lo" accept\n \t\tip saddr @trusted accept' in dry.stdout  # the diff says which fix
        assert "copied before the rule" in dry.stderr
        proc = lbfw_in(ns, "fix", "--apply", "--yes", "--backup-dir", str(tmp_path / "b"))
        assert proc.returncode == 0, proc.stderr
        assert "re-audit: 0 LB002/LB003 finding(s) left" in proc.stderr
        seen = observe(ns, flows, timeout=0.5)
        assert [f.label() for f, v in zip(flows, seen) if v != "delivered"] == []
        # the set is as it was: other rules that use it see the same elements
        listing = ns.run(["nft", "-j", "list", "set", "inet", "filter", "trusted"]).stdout
        [entry] = [o["set"] for o in json.loads(listing)["nftables"] if "set" in o]
        assert entry["elem"] == ["127.0.0.1", "192.0.2.10", "198.51.100.7"] and "flags" not in entry

"""fix.yml with a fix that cuts the controller's SSH: nobody can confirm, the host rolls itself back.

Unlike test_fleet_ansible.py (ssh's ProxyCommand runs `sshd -i` inside the host's namespace, so
no packet ever crosses the host's firewall), here the traffic does: the controller is a namespace
of its own running ansible-playbook, joined to the host namespace by a veth pair (192.0.2.0/24,
TEST-NET-1); the host's sshd listens on 192.0.2.2 inside its namespace only.

The case is the one LB003's fix safety warns about. The controller connects from 127.1.0.2 (a
loopback source, allowed on both veth ends by route_localnet=1, the host's replies routed back
over the veth by a rule ahead of the local table). The host's anti-spoofing rule drops 127.0.0.1
from other interfaces only, so 127.1.0.2 gets through; lbfw's fix widens it to 127.0.0.0/8, which
passes lbfw's proof (every loopback flow on `lo` is still delivered) and drops every new
connection from the controller. The ESTABLISHED rule comes first, so the SSH connection that
applied the fix lives on: only a confirmation over a new connection tells the two apart.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_fleet_ansible import BIN, SSHD, Fleet, _need, _run, ruleset_digest

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

HOST_ADDR, CTRL_ADDR, CTRL_SOURCE = "192.0.2.2", "192.0.2.1", "127.1.0.2"
CONFIRM_TIMEOUT = 15  # seconds: two failed reconnects at ANSIBLE_TIMEOUT=4, then the deadline
RULES = """\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -s 127.0.0.1/32 ! -i lo -j DROP
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""


def legacy_rules(ns: str) -> str:
    """The host's legacy filter table as iptables-legacy-save prints it, comments and counters aside."""
    out = _run(["ip", "netns", "exec", ns, "iptables-legacy-save", "-t", "filter"]).stdout
    return "".join(
        re.sub(r"\[\d+:\d+\]", "[0:0]", line) + "\n" for line in out.splitlines() if not line.startswith("#")
    )


class CutFleet:
    """A controller namespace and one host namespace joined by a veth pair, sshd listening in the host."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.keys = Fleet(tmp, {}, missing=(), broken=())  # keys, sshd_config, Ansible's environment, collection
        tag = self.keys.tag
        self.ctrl, self.host = f"{tag}-ctrl", f"{tag}-x"
        self.veth_ctrl, self.veth_host = f"{tag[-9:]}c", f"{tag[-9:]}h"  # interface names: 15 bytes at most
        self.namespaces: list = []
        self.sshd: subprocess.Popen | None = None

    def ip(self, ns: str, *argv: str) -> None:
        _run(["ip", "-n", ns, *argv]).check_returncode()

    def sysctl(self, ns: str, *settings: str) -> None:
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings]).check_returncode()

    def setup(self) -> None:
        self.keys.keys()
        for ns in (self.ctrl, self.host):
            _run(["ip", "netns", "add", ns]).check_returncode()
            self.namespaces.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
        _run(
            [
                "ip",
                "link",
                "add",
                self.veth_ctrl,
                "netns",
                self.ctrl,
                "type",
                "veth",
                "peer",
                "name",
                self.veth_host,
                "netns",
                self.host,
            ]
        ).check_returncode()
        self.ip(self.ctrl, "addr", "add", f"{CTRL_ADDR}/24", "dev", self.veth_ctrl)
        self.ip(self.ctrl, "link", "set", self.veth_ctrl, "up")
        self.ip(self.host, "addr", "add", f"{HOST_ADDR}/24", "dev", self.veth_host)
        self.ip(self.host, "link", "set", self.veth_host, "up")
        # 127.1.0.2 may leave the controller and arrive at the host (route_localnet; accept_local: the
        # host's local table says 127/8 is its own) ...
        self.sysctl(self.ctrl, f"net.ipv4.conf.{self.veth_ctrl}.route_localnet=1")
        self.sysctl(
            self.host,
            f"net.ipv4.conf.{self.veth_host}.route_localnet=1",
            f"net.ipv4.conf.{self.veth_host}.accept_local=1",
        )
        # ... and the host's replies to it go back over the veth, not to its own lo.
        self.ip(self.host, "rule", "add", "pref", "100", "to", CTRL_SOURCE, "lookup", "100")
        self.ip(self.host, "route", "add", f"{CTRL_SOURCE}/32", "via", CTRL_ADDR, "dev", self.veth_host, "table", "100")
        self.ip(self.host, "rule", "add", "pref", "200", "lookup", "local")
        self.ip(self.host, "rule", "del", "pref", "0")
        _run(["ip", "netns", "exec", self.host, "iptables-legacy-restore"], input=RULES).check_returncode()
        self.sshd = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.host,
                SSHD,
                "-D",
                "-f",
                str(self.tmp / "sshd_config"),
                "-o",
                f"ListenAddress={HOST_ADDR}",
                "-o",
                "LogLevel=INFO",
                "-E",
                str(self.tmp / "sshd.log"),
            ]
        )
        self.write_inventory()
        self.keys.install_collection()
        deadline = time.monotonic() + 20
        while self.ssh("true").returncode != 0:
            assert time.monotonic() < deadline, "the host's sshd never answered over the veth"
            time.sleep(0.5)

    def ssh_args(self) -> list:
        return [
            "-F",
            "/dev/null",
            "-o",
            f"BindAddress={CTRL_SOURCE}",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
            "-i",
            str(self.tmp / "client_key"),
        ]

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        """A new SSH connection from the controller to the host."""
        return _run(
            [
                "ip",
                "netns",
                "exec",
                self.ctrl,
                "ssh",
                *self.ssh_args(),
                "-o",
                "BatchMode=yes",
                f"root@{HOST_ADDR}",
                command,
            ],
            timeout=30,
        )

    def write_inventory(self) -> None:
        common = " ".join(self.ssh_args()[:-2]) + (
            f" -o ControlMaster=auto -o ControlPersist=30s -o ControlPath={self.tmp}/cp/%C"
        )
        (self.tmp / "inventory").write_text(
            f"x ansible_host={HOST_ADDR} ansible_user=root ansible_ssh_private_key_file={self.tmp}/client_key "
            f"ansible_ssh_common_args='{common}' ansible_python_interpreter=/usr/bin/python3 "
            f"lbfw_backup_dir={self.backups}\n"
        )

    @property
    def backups(self) -> Path:
        return self.tmp / "backups"

    def fix_playbook(self) -> subprocess.CompletedProcess:
        env = dict(self.keys.env(), ANSIBLE_TIMEOUT="4")
        argv = [
            "ip",
            "netns",
            "exec",
            self.ctrl,
            str(BIN / "ansible-playbook"),
            "-i",
            str(self.tmp / "inventory"),
            "lbfw.loopback.fix",
            "-e",
            f"lbfw_bin={BIN / 'lbfw'}",
            "-e",
            "lbfw_become=false",
            "-e",
            f"lbfw_confirm_timeout={CONFIRM_TIMEOUT}",
        ]
        return _run(argv, env=env, cwd=self.tmp, timeout=120)

    def teardown(self) -> None:
        # Stop the SSH connection Ansible may have kept open (it would end on its own 30 s later).
        _run(
            ["ssh", "-F", "/dev/null", "-o", f"ControlPath={self.tmp}/cp/%C", "-O", "exit", "-l", "root", HOST_ADDR],
            timeout=10,
        )
        if self.sshd is not None:
            self.sshd.terminate()
            self.sshd.wait(timeout=10)
        for ns in self.namespaces:
            _run(["ip", "netns", "del", ns])


@pytest.fixture()
def cut():
    _need("ssh", "ssh-keygen", SSHD, str(BIN / "ansible-playbook"), "ip", "sysctl", "iptables-legacy-restore")
    tmp = Path(tempfile.mkdtemp(prefix="lbfw-fleet-cut-"))
    own_before = ruleset_digest(None)
    c = CutFleet(tmp)
    try:
        c.setup()
        yield c
    finally:
        c.teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    assert ruleset_digest(None) == own_before, "this machine's own firewall changed"


def test_a_fix_that_cuts_ssh_is_not_confirmed_and_the_host_rolls_itself_back(cut):
    before = legacy_rules(cut.host)
    assert "-A INPUT -s 127.0.0.1/32 ! -i lo -j DROP\n" in before
    assert cut.ssh("echo $SSH_CONNECTION").stdout.split()[0] == CTRL_SOURCE
    start = time.time()
    proc = cut.fix_playbook()
    assert proc.returncode == 2, proc.stdout[-4000:]
    said = " ".join(proc.stdout.split())
    assert "could not reach the host again to confirm it" in said, proc.stdout[-4000:]
    assert re.search(r"^x\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=1 ", proc.stdout, re.M)
    [backup] = cut.backups.iterdir()
    state = json.loads((backup / "state.json").read_text())
    # the fix was applied: lbfw's own proof passed, and the rule that cut SSH is the widened one
    assert state["applied"] == {
        "live:legacy/ip/filter": [
            {
                "chain": "INPUT",
                "old": "-s 127.0.0.1/32 ! -i lo -j DROP",
                "new": "-s 127.0.0.0/8 ! -i lo -j DROP",
                "handle": None,
                "anchor": None,
            }
        ]
    }
    deadline = state["deadline"]
    while json.loads((backup / "state.json").read_text())["state"] == "pending":
        assert time.time() < deadline + 10, "the watchdog did not revert within 10 s of the deadline"
        time.sleep(0.5)
    settled = time.time()
    assert json.loads((backup / "state.json").read_text())["state"] == "reverted"
    assert (
        "the confirmation deadline passed (watchdog): the previous rules are back"
        in (backup / "watchdog.log").read_text()
    )
    assert settled - start < CONFIRM_TIMEOUT + 30
    assert legacy_rules(cut.host) == before
    # and the controller gets in again
    assert cut.ssh("echo back").stdout == "back\n"

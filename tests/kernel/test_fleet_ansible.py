"""The Ansible collection against real SSH hosts on this machine.

Each "host" is a named network namespace with its own firewall, reached by the real `ssh` through
a ProxyCommand that starts `sshd -i` inside it (`ip netns exec NS sshd -i`): no listening socket,
no packet outside the namespaces. Keys, host key, sshd_config, known hosts, Ansible's home and
temporary files all live in a private temporary directory; the user's ~/.ssh is never read.
sshd -i runs with this machine's filesystem, so every host runs the same lbfw (this checkout's);
each host's firewall is its own namespace's.

Hosts: a (legacy, correct `-i lo`), b (iptables-nft, `-s 127.0.0.1` under policy DROP),
c (nftables, `ip saddr 127.0.0.1 accept`), d (no such namespace: unreachable), e (reachable, no Python).
Each host's lbfw backups go to a temporary directory of its own (`lbfw_backup_dir`), never /var/lib.
The install role has its own module (test_fleet_install.py), the fix that cuts SSH too
(test_fleet_cut_ssh.py): this one stays within a minute or so on a loaded machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel]

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "rules" / "examples"
BIN = Path(sys.executable).parent
SSHD = "/usr/sbin/sshd"
HOSTS = {
    "a": ("legacy", "lo-accept.rules"),
    "b": ("iptables-nft", "input-narrow-accept.rules"),
    "c": ("nftables", "nft-saddr-narrow.nft"),
}
SSHD_CONFIG = """\
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
PrintMotd no
LogLevel ERROR
Subsystem sftp internal-sftp
"""


def _run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None and not os.path.exists(t)]
    if os.geteuid() != 0:
        missing.append("root (named network namespaces)")
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(
                f"CI=true and missing: {', '.join(missing)} (scripts/system-deps.sh, the test extra)", pytrace=False
            )
        pytest.skip(f"missing: {', '.join(missing)}")


def ruleset_digest(ns: str | None) -> str:
    """sha256 of every table of a namespace (None: this machine's own), read only, counters zeroed."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    parts = []
    for argv in (
        ["iptables-legacy-save"],
        ["ip6tables-legacy-save"],
        ["iptables-nft-save"],
        ["ip6tables-nft-save"],
        ["nft", "list", "ruleset"],
    ):
        proc = _run(prefix + argv)
        text = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("#"))
        parts.append(re.sub(r"\[\d+:\d+\]", "[0:0]", text))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class Fleet:
    """Named namespaces as SSH hosts, an inventory for them, and the installed collection."""

    def __init__(self, tmp: Path, hosts: dict, missing: tuple = ("d",), broken: tuple = ("e",)):
        self.tmp, self.hosts, self.missing, self.broken = tmp, hosts, missing, broken
        self.tag = f"lbfwt{os.getpid()}"
        self.namespaces: list = []

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def keys(self) -> None:
        """Client and host keys, authorized_keys and sshd_config in the temporary directory."""
        t = self.tmp
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / "client_key")]).check_returncode()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / "host_key")]).check_returncode()
        shutil.copy(t / "client_key.pub", t / "authorized_keys")
        (t / "sshd_config").write_text(SSHD_CONFIG.format(dir=t))
        (t / "cp").mkdir(mode=0o700)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory

    def setup(self) -> None:
        self.keys()
        for host, (backend, example) in self.hosts.items():
            self.add_namespace(host, backend, (EX / example).read_text())
        for host in self.broken:  # reachable, but its Python does not exist: the ping fails
            self.add_namespace(host, None, None)
        self.write_inventory()
        self.install_collection()

    def add_namespace(self, host: str, backend: str | None, text: str | None) -> None:
        ns = self.ns(host)
        _run(["ip", "netns", "add", ns]).check_returncode()
        self.namespaces.append(ns)
        _run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]).check_returncode()
        if backend is None:
            return
        tool = {
            "legacy": ["iptables-legacy-restore"],
            "iptables-nft": ["iptables-nft-restore"],
            "nftables": ["nft", "-f", "-"],
        }[backend]
        _run(["ip", "netns", "exec", ns, *tool], input=text).check_returncode()

    def write_inventory(self) -> None:
        lines = ["[fleet]"]
        for host in list(self.hosts) + list(self.missing) + list(self.broken):
            python = "/nonexistent/python3" if host in self.broken else "/usr/bin/python3"
            # sshd logs each login ("Accepted publickey") to the host's own file: the tests count connections.
            proxy = (
                f"ip netns exec {self.ns(host)} {SSHD} -i -f {self.tmp}/sshd_config -o LogLevel=INFO "
                f"-E {self.tmp}/sshd-{host}.log"
            )
            common = (
                f'-F /dev/null -o ProxyCommand="{proxy}" -o StrictHostKeyChecking=no '
                f"-o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes "
                f"-o ControlMaster=auto -o ControlPersist=20s -o ControlPath={self.tmp}/cp/%C"
            )
            lines.append(
                f"{host} ansible_host={host}.fleet.invalid ansible_user=root "
                f"ansible_ssh_private_key_file={self.tmp}/client_key ansible_ssh_common_args='{common}' "
                f"ansible_python_interpreter={python} lbfw_backup_dir={self.backups(host)}"
            )
        (self.tmp / "inventory").write_text("\n".join(lines) + "\n")

    def backups(self, host: str) -> Path:
        """The host's lbfw backup directory (lbfw creates it, mode 0700)."""
        return self.tmp / "backups" / host

    def logins(self, host: str) -> int:
        """How many SSH connections the host has accepted so far."""
        log = self.tmp / f"sshd-{host}.log"
        return log.read_text().count("Accepted publickey") if log.exists() else 0

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        home = self.tmp / "ansible-home"
        env.update(
            ANSIBLE_HOME=str(home),
            ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
            ANSIBLE_REMOTE_TEMP=str(self.tmp / "remote-tmp"),
            ANSIBLE_COLLECTIONS_PATH=str(self.tmp / "coll"),
            ANSIBLE_HOST_KEY_CHECKING="False",
            ANSIBLE_PIPELINING="True",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_SSH_ARGS="",
            ANSIBLE_RETRY_FILES_ENABLED="False",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_CONFIG=str(self.tmp / "no-ansible.cfg"),
            PATH=f"{BIN}:{env.get('PATH', '')}",
        )
        return env

    def install_collection(self) -> None:
        build = _run(
            [
                str(BIN / "ansible-galaxy"),
                "collection",
                "build",
                str(ROOT / "ansible"),
                "--output-path",
                str(self.tmp / "dist"),
                "--force",
            ],
            env=self.env(),
            cwd=self.tmp,
        )
        assert build.returncode == 0, build.stdout + build.stderr
        tarball = next((self.tmp / "dist").glob("lbfw-loopback-*.tar.gz"))
        inst = _run(
            [
                str(BIN / "ansible-galaxy"),
                "collection",
                "install",
                "--offline",
                str(tarball),
                "-p",
                str(self.tmp / "coll"),
                "--force",
            ],
            env=self.env(),
            cwd=self.tmp,
        )
        assert inst.returncode == 0, inst.stdout + inst.stderr

    def playbook(self, name: str, *extra: str, forks: int = 5) -> subprocess.CompletedProcess:
        argv = [
            str(BIN / "ansible-playbook"),
            "-i",
            str(self.tmp / "inventory"),
            "-f",
            str(forks),
            f"lbfw.loopback.{name}",
            "-e",
            f"lbfw_bin={BIN / 'lbfw'}",
            "-e",
            f"lbfw_controller_bin={BIN / 'lbfw'}",
            "-e",
            f"lbfw_report_dir={self.tmp / 'reports'}",
            "-e",
            "lbfw_become=false",
            *extra,
        ]
        return _run(argv, env=self.env(), cwd=self.tmp, timeout=300)

    def disconnect(self) -> None:
        """Stop the SSH connections Ansible kept open (they would end on their own 20 s later)."""
        for host in list(self.hosts) + list(self.broken):
            _run(
                [
                    "ssh",
                    "-F",
                    "/dev/null",
                    "-o",
                    f"ControlPath={self.tmp}/cp/%C",
                    "-O",
                    "exit",
                    "-l",
                    "root",
                    f"{host}.fleet.invalid",
                ],
                timeout=10,
            )

    def teardown(self) -> None:
        self.disconnect()
        for ns in self.namespaces:
            _run(["ip", "netns", "del", ns])


@pytest.fixture(scope="module")
def fleet():
    _need(
        "ssh",
        "ssh-keygen",
        SSHD,
        str(BIN / "ansible-playbook"),
        "ip",
        "nft",
        "iptables-legacy-restore",
        "iptables-nft-restore",
    )
    tmp = Path(tempfile.mkdtemp(prefix="lbfw-fleet-"))
    own_before = ruleset_digest(None)
    f = Fleet(tmp, HOSTS)
    try:
        f.setup()
        yield f
    finally:
        f.teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    assert ruleset_digest(None) == own_before, "this machine's own firewall changed"


def test_audit_playbook_writes_every_host_and_the_fleet_report(fleet):
    proc = fleet.playbook("audit")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    reports = fleet.tmp / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [
        "a.json",
        "b.json",
        "c.json",
        "d.json",
        "e.json",
        "fleet.json",
        "fleet.txt",
    ]
    doc = json.loads((reports / "fleet.json").read_text())
    status = {h["host"]: h for h in doc["hosts"]}
    assert {h: s["status"] for h, s in status.items()} == {
        "a": "clean",
        "b": "findings",
        "c": "findings",
        "d": "not audited",
        "e": "not audited",
    }
    assert status["a"]["backends"] == ["legacy"] and status["b"]["backends"] == ["iptables-nft"]
    assert status["c"]["backends"] == ["nftables"]
    assert "LB002" in status["b"]["checks"] and "LB002" in status["c"]["checks"]
    assert status["d"]["reason"].startswith("unreachable: ")
    lb002 = {(g["backend"], g["rule"]): g["hosts"] for g in doc["rules"] if g["check"] == "LB002"}
    assert lb002 == {
        ("iptables-nft", "-A INPUT -s 127.0.0.1/32 -j ACCEPT"): ["b"],
        ("nftables", "ip saddr 127.0.0.1 accept"): ["c"],
    }
    text = (reports / "fleet.txt").read_text()
    assert text.startswith("lbfw fleet report: 5 hosts: 1 clean, 2 with findings, 2 not audited\n")
    assert "\n" not in status["d"]["reason"] and "d.fleet.invalid" in status["d"]["reason"]
    assert status["e"]["reason"].startswith("failed: ") and "/nonexistent/python3" in status["e"]["reason"]
    # the play finished: the recap lists every host, d's unreachable ping and e's failure ignored
    assert re.search(r"^d\s+: ok=\d+ .* unreachable=0 .* ignored=1", proc.stdout, re.M)
    assert re.search(r"^e\s+: ok=\d+ .* failed=0 .* ignored=1", proc.stdout, re.M)


def test_fix_check_diff_shows_the_fixes_and_changes_nothing(fleet):
    before = {h: ruleset_digest(fleet.ns(h)) for h in HOSTS}
    proc = fleet.playbook("fix", "--check", "--diff", "--limit", "a,b,c")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "-A INPUT -s 127.0.0.1/32 -j ACCEPT" in proc.stdout and "+-A INPUT -i lo -j ACCEPT" in proc.stdout
    assert "-\t\tip saddr 127.0.0.1 accept" in proc.stdout or "-ip saddr 127.0.0.1 accept" in proc.stdout.replace(
        "\t", ""
    ).replace(" \n", "\n")
    assert re.search(r"^a\s+: ok=\d+\s+changed=0 ", proc.stdout, re.M)
    assert re.search(r"^b\s+: ok=\d+\s+changed=1 ", proc.stdout, re.M)
    assert re.search(r"^c\s+: ok=\d+\s+changed=1 ", proc.stdout, re.M)
    assert {h: ruleset_digest(fleet.ns(h)) for h in HOSTS} == before


def adhoc(fleet, pattern: str, module: str, args: dict) -> tuple:
    """(returncode, {host: result}) of `ansible PATTERN -m MODULE -a ARGS` (the tree callback: a JSON file a host)."""
    tree = Path(tempfile.mkdtemp(dir=fleet.tmp, prefix="tree-"))
    env = dict(
        fleet.env(),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
        ANSIBLE_CALLBACK_TREE_DIR=str(tree),
    )
    proc = _run(
        [str(BIN / "ansible"), "-i", str(fleet.tmp / "inventory"), pattern, "-m", module, "-a", json.dumps(args)],
        env=env,
        cwd=fleet.tmp,
    )
    return proc.returncode, {p.name: json.loads(p.read_text()) for p in tree.iterdir()}


def test_check_module_reports_flows_per_host(fleet):
    rc, results = adhoc(
        fleet,
        "a,b",
        "lbfw.loopback.check",
        {"lbfw_bin": str(BIN / "lbfw"), "to": ["127.0.0.53:8001/tcp"], "from": "127.0.0.2"},
    )
    assert rc == 0 and not results["a"].get("failed") and not results["b"].get("failed"), results
    assert results["a"]["all_delivered"] is True and results["b"]["all_delivered"] is False
    assert results["b"]["flows"][0]["decided_by"]["verdict"] == "policy-drop"
    rc, results = adhoc(
        fleet,
        "b",
        "lbfw.loopback.check",
        {"lbfw_bin": str(BIN / "lbfw"), "fail_on_blocked": True, "to": ["127.0.0.53:8001/tcp"], "from": "127.0.0.2"},
    )
    assert rc == 2 and results["b"]["msg"] == "not delivered: tcp 127.0.0.2 -> 127.0.0.53:8001 blocked"


def test_check_module_runs_doctor_and_the_report_merges_it(fleet):
    rc, results = adhoc(fleet, "a,b", "lbfw.loopback.check", {"lbfw_bin": str(BIN / "lbfw"), "doctor": True})
    assert rc == 0, results
    reports = Path(tempfile.mkdtemp(dir=fleet.tmp, prefix="doctor-"))
    expected = {}
    for host in ("a", "b"):
        doc = results[host]["doctor"]
        assert sorted(doc) == sorted(["version", "platform", "root", "plan", "flows", "user", "summary", "items"])
        assert doc["root"] is True and doc["platform"] == "linux" and doc["items"]
        (reports / f"{host}.doctor.json").write_text(json.dumps(doc))
        audit = _run(
            [
                "ip",
                "netns",
                "exec",
                fleet.ns(host),
                str(BIN / "lbfw"),
                "audit",
                "--format",
                "json",
                "--fail-on",
                "never",
            ]
        )
        (reports / f"{host}.json").write_text(audit.stdout)
        expected[host] = doc["items"]
    proc = _run([str(BIN / "lbfw"), "report", str(reports), "--format", "json", "--fail-on", "never"])
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(proc.stdout)
    status = {h["host"]: h for h in merged["hosts"]}
    assert {h: status[h]["doctor"] for h in expected} == expected
    problems: dict = {}  # (id, severity) -> hosts, for the items doctor counts as problems
    for host, items in expected.items():
        for i in items:
            if i["severity"] in ("error", "warning", "note"):
                problems.setdefault((i["id"], i["severity"]), []).append(host)
    assert {(g["id"], g["severity"]): g["hosts"] for g in merged["doctor"]} == problems
    # lo is up with 127.0.0.0/8 in every namespace host: doctor says so, with its own ids
    assert all({"DR001", "DR002"} <= {i["id"] for i in expected[h] if i["severity"] == "ok"} for h in expected)
    text = _run([str(BIN / "lbfw"), "report", str(reports), "--fail-on", "never"]).stdout
    for g in merged["doctor"]:
        assert f"  {g['id']} {g['name']} {g['severity']} on " in text


def test_audit_module_is_read_only_and_returns_lbfw_json(fleet):
    before = ruleset_digest(fleet.ns("c"))
    rc, results = adhoc(fleet, "c", "lbfw.loopback.audit", {"lbfw_bin": str(BIN / "lbfw")})
    assert rc == 0 and results["c"]["changed"] is False
    assert results["c"]["summary"] == {"error": 1, "warning": 1, "note": 0}
    assert {f["check"] for f in results["c"]["findings"]} == {"LB001", "LB002"}
    assert results["c"]["document"]["tool"]["name"] == "lbfw" and results["c"]["lbfw_version"]
    assert ruleset_digest(fleet.ns("c")) == before


def test_fix_apply_confirms_from_a_new_connection_is_idempotent_and_rolls_back(fleet):
    before = {h: ruleset_digest(fleet.ns(h)) for h in HOSTS}
    fleet.disconnect()
    logins = {h: fleet.logins(h) for h in ("b", "c")}
    start = time.monotonic()
    proc = fleet.playbook("fix", "--limit", "a,b,c", "-e", "lbfw_confirm_timeout=30")
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert re.search(r"^a\s+: ok=\d+\s+changed=0 ", proc.stdout, re.M)
    for host in ("b", "c"):
        assert re.search(rf"^{host}\s+: ok=\d+\s+changed=1 ", proc.stdout, re.M), proc.stdout[-3000:]
        assert ruleset_digest(fleet.ns(host)) != before[host]
        # one connection planned and applied, the ControlMaster was stopped, a second one confirmed
        assert fleet.logins(host) - logins[host] == 2
        [backup] = fleet.backups(host).iterdir()
        state = json.loads((backup / "state.json").read_text())
        assert state["state"] == "confirmed", state
    assert ruleset_digest(fleet.ns("a")) == before["a"]
    assert took < 30, f"apply and confirm took {took:.0f} s: the confirmation came after the deadline"
    audit = {
        h: json.loads(
            _run(
                [
                    "ip",
                    "netns",
                    "exec",
                    fleet.ns(h),
                    str(BIN / "lbfw"),
                    "audit",
                    "--format",
                    "json",
                    "--fail-on",
                    "never",
                ]
            ).stdout
        )
        for h in ("b", "c")
    }
    assert {h: sorted({f["check"] for f in d["findings"]} & {"LB002", "LB003"}) for h, d in audit.items()} == {
        "b": [],
        "c": [],
    }
    fixed = {h: ruleset_digest(fleet.ns(h)) for h in HOSTS}
    again = fleet.playbook("fix", "--limit", "a,b,c")
    assert again.returncode == 0, again.stdout[-3000:]
    for host in ("a", "b", "c"):
        assert re.search(rf"^{host}\s+: ok=\d+\s+changed=0 ", again.stdout, re.M), again.stdout[-3000:]
    assert {h: ruleset_digest(fleet.ns(h)) for h in HOSTS} == fixed
    assert [len(list(fleet.backups(h).iterdir())) for h in ("b", "c")] == [1, 1]  # nothing applied again
    for host in ("b", "c"):
        back = _run(
            [
                "ip",
                "netns",
                "exec",
                fleet.ns(host),
                str(BIN / "lbfw"),
                "rollback",
                "--backup-dir",
                str(fleet.backups(host)),
            ]
        )
        assert back.returncode == 0, back.stdout + back.stderr
        assert ruleset_digest(fleet.ns(host)) == before[host]


def measure(n: int, forks: int) -> dict:
    """Wall time of audit.yml over ``n`` namespace hosts (half narrow iptables-nft, half correct
    legacy): for docs/fleet.md, run by hand (`python tests/kernel/test_fleet_ansible.py 20`)."""
    tmp = Path(tempfile.mkdtemp(prefix="lbfw-fleet-"))
    hosts = {f"h{i:02d}": HOSTS["b"] if i % 2 else HOSTS["a"] for i in range(n)}
    f = Fleet(tmp, hosts, missing=(), broken=())
    try:
        f.setup()
        start = time.monotonic()
        proc = f.playbook("audit", forks=forks)
        took = time.monotonic() - start
        sizes = [p.stat().st_size for p in (tmp / "reports").glob("h*.json")]
        return {
            "hosts": n,
            "forks": forks,
            "seconds": round(took, 1),
            "rc": proc.returncode,
            "json_bytes_per_host": sum(sizes) // max(len(sizes), 1),
        }
    finally:
        f.teardown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(
        json.dumps(
            measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
        )
    )

"""The Ansible collection against real SSH hosts on this machine.

Each "host" is a named network namespace with its own firewall, reached by the real `ssh` through
a ProxyCommand that starts `sshd -i` inside it (`ip netns exec NS sshd -i`): no listening socket,
no packet outside the namespaces. Keys, host key, sshd_config, known hosts, Ansible's home and
temporary files all live in a private temporary directory; the user's ~/.ssh is never read.
sshd -i runs with this machine's filesystem, so every host runs the same lbfw (this checkout's);
each host's firewall is its own namespace's.

Hosts: a (legacy, correct `-i lo`), b (iptables-nft, `-s 127.0.0.1` under policy DROP),
c (nftables, `ip saddr 127.0.0.1 accept`), d (no such namespace: unreachable).
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

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "rules" / "examples"
BIN = Path(sys.executable).parent
SSHD = "/usr/sbin/sshd"
HOSTS = {"a": ("legacy", "lo-accept.rules"), "b": ("iptables-nft", "input-narrow-accept.rules"),
         "c": ("nftables", "nft-saddr-narrow.nft")}
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
            pytest.fail(f"CI=true and missing: {', '.join(missing)} (scripts/system-deps.sh, the test extra)",
                        pytrace=False)
        pytest.skip(f"missing: {', '.join(missing)}")


def ruleset_digest(ns: str | None) -> str:
    """sha256 of every table of a namespace (None: this machine's own), read only, counters zeroed."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    parts = []
    for argv in (["iptables-legacy-save"], ["ip6tables-legacy-save"], ["iptables-nft-save"],
                 ["ip6tables-nft-save"], ["nft", "list", "ruleset"]):
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

    def setup(self) -> None:
        t = self.tmp
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / "client_key")]).check_returncode()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / "host_key")]).check_returncode()
        shutil.copy(t / "client_key.pub", t / "authorized_keys")
        (t / "sshd_config").write_text(SSHD_CONFIG.format(dir=t))
        (t / "cp").mkdir(mode=0o700)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
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
        tool = {"legacy": ["iptables-legacy-restore"], "iptables-nft": ["iptables-nft-restore"],
                "nftables": ["nft", "-f", "-"]}[backend]
        _run(["ip", "netns", "exec", ns, *tool], input=text).check_returncode()

    def write_inventory(self) -> None:
        lines = ["[fleet]"]
        for host in list(self.hosts) + list(self.missing) + list(self.broken):
            python = "/nonexistent/python3" if host in self.broken else "/usr/bin/python3"
            proxy = f"ip netns exec {self.ns(host)} {SSHD} -i -f {self.tmp}/sshd_config"
            common = (f"-F /dev/null -o ProxyCommand=\"{proxy}\" -o StrictHostKeyChecking=no "
                      f"-o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes "
                      f"-o ControlMaster=auto -o ControlPersist=20s -o ControlPath={self.tmp}/cp/%C")
            lines.append(f"{host} ansible_host={host}.fleet.invalid ansible_user=root "
                         f"ansible_ssh_private_key_file={self.tmp}/client_key ansible_ssh_common_args='{common}' "
                         f"ansible_python_interpreter={python}")
        (self.tmp / "inventory").write_text("\n".join(lines) + "\n")

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        home = self.tmp / "ansible-home"
        env.update(ANSIBLE_HOME=str(home), ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
                   ANSIBLE_REMOTE_TEMP=str(self.tmp / "remote-tmp"), ANSIBLE_COLLECTIONS_PATH=str(self.tmp / "coll"),
                   ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_PIPELINING="True", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_SSH_ARGS="", ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_CONFIG=str(self.tmp / "no-ansible.cfg"), PATH=f"{BIN}:{env.get('PATH', '')}")
        return env

    def install_collection(self) -> None:
        build = _run([str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT / "ansible"), "--output-path",
                      str(self.tmp / "dist"), "--force"], env=self.env(), cwd=self.tmp)
        assert build.returncode == 0, build.stdout + build.stderr
        tarball = next((self.tmp / "dist").glob("lbfw-loopback-*.tar.gz"))
        inst = _run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", str(tarball), "-p",
                     str(self.tmp / "coll"), "--force"], env=self.env(), cwd=self.tmp)
        assert inst.returncode == 0, inst.stdout + inst.stderr

    def playbook(self, name: str, *extra: str, forks: int = 5) -> subprocess.CompletedProcess:
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.tmp / "inventory"), "-f", str(forks),
                f"lbfw.loopback.{name}", "-e", f"lbfw_bin={BIN / 'lbfw'}", "-e", f"lbfw_controller_bin={BIN / 'lbfw'}",
                "-e", f"lbfw_report_dir={self.tmp / 'reports'}", "-e", "lbfw_become=false", *extra]
        return _run(argv, env=self.env(), cwd=self.tmp, timeout=300)

    def teardown(self) -> None:
        # Stop the SSH connections Ansible kept open (they would end on their own 20 s later).
        for host in list(self.hosts) + list(self.broken):
            _run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={self.tmp}/cp/%C", "-O", "exit", "-l", "root",
                  f"{host}.fleet.invalid"], timeout=10)
        for ns in self.namespaces:
            _run(["ip", "netns", "del", ns])


@pytest.fixture(scope="module")
def fleet():
    _need("ssh", "ssh-keygen", SSHD, str(BIN / "ansible-playbook"), "ip", "nft", "iptables-legacy-restore",
          "iptables-nft-restore")
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
    assert sorted(p.name for p in reports.iterdir()) == ["a.json", "b.json", "c.json", "d.json", "e.json",
                                                          "fleet.json", "fleet.txt"]
    doc = json.loads((reports / "fleet.json").read_text())
    status = {h["host"]: h for h in doc["hosts"]}
    assert {h: s["status"] for h, s in status.items()} == {"a": "clean", "b": "findings", "c": "findings",
                                                          "d": "not audited", "e": "not audited"}
    assert status["a"]["backends"] == ["legacy"] and status["b"]["backends"] == ["iptables-nft"]
    assert status["c"]["backends"] == ["nftables"]
    assert "LB002" in status["b"]["checks"] and "LB002" in status["c"]["checks"]
    assert status["d"]["reason"].startswith("unreachable: ")
    lb002 = {(g["backend"], g["rule"]): g["hosts"] for g in doc["rules"] if g["check"] == "LB002"}
    assert lb002 == {("iptables-nft", "-A INPUT -s 127.0.0.1/32 -j ACCEPT"): ["b"],
                     ("nftables", "ip saddr 127.0.0.1 accept"): ["c"]}
    text = (reports / "fleet.txt").read_text()
    assert text.startswith("lbfw fleet report: 5 hosts: 1 clean, 2 with findings, 2 not audited\n")
    assert "\n" not in status["d"]["reason"] and 'd.fleet.invalid' in status["d"]["reason"]
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
        "\t", "").replace(" \n", "\n")
    assert re.search(r"^a\s+: ok=\d+\s+changed=0 ", proc.stdout, re.M)
    assert re.search(r"^b\s+: ok=\d+\s+changed=1 ", proc.stdout, re.M)
    assert re.search(r"^c\s+: ok=\d+\s+changed=1 ", proc.stdout, re.M)
    assert {h: ruleset_digest(fleet.ns(h)) for h in HOSTS} == before


def adhoc(fleet, pattern: str, module: str, args: dict) -> tuple:
    """(returncode, {host: result}) of `ansible PATTERN -m MODULE -a ARGS` (the tree callback: a JSON file a host)."""
    tree = Path(tempfile.mkdtemp(dir=fleet.tmp, prefix="tree-"))
    env = dict(fleet.env(), ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
               ANSIBLE_CALLBACK_TREE_DIR=str(tree))
    proc = _run([str(BIN / "ansible"), "-i", str(fleet.tmp / "inventory"), pattern, "-m", module,
                 "-a", json.dumps(args)], env=env, cwd=fleet.tmp)
    return proc.returncode, {p.name: json.loads(p.read_text()) for p in tree.iterdir()}


# Before the apply test: that one fixes host b, which this one needs still broken.
def test_check_module_reports_flows_per_host(fleet):
    rc, results = adhoc(fleet, "a,b", "lbfw.loopback.check",
                        {"lbfw_bin": str(BIN / "lbfw"), "to": ["127.0.0.53:8001/tcp"], "from": "127.0.0.2"})
    assert rc == 0 and not results["a"].get("failed") and not results["b"].get("failed"), results
    assert results["a"]["all_delivered"] is True and results["b"]["all_delivered"] is False
    assert results["b"]["flows"][0]["decided_by"]["verdict"] == "policy-drop"
    rc, results = adhoc(fleet, "b", "lbfw.loopback.check", {"lbfw_bin": str(BIN / "lbfw"), "fail_on_blocked": True,
                                                            "to": ["127.0.0.53:8001/tcp"], "from": "127.0.0.2"})
    assert rc == 2 and results["b"]["msg"] == "not delivered: tcp 127.0.0.2 -> 127.0.0.53:8001 blocked"
    rc, results = adhoc(fleet, "a", "lbfw.loopback.check", {"lbfw_bin": str(BIN / "lbfw"), "doctor": True})
    if _run([str(BIN / "lbfw"), "doctor", "--help"]).returncode == 0:
        assert rc == 0 and isinstance(results["a"]["doctor"], dict), results
    else:
        assert rc == 2 and "has no `doctor` command" in results["a"]["msg"], results


def test_fix_apply_is_confirmed_from_a_new_connection_or_refused_cleanly(fleet):
    detach = "--detach" in _run([str(BIN / "lbfw"), "fix", "--help"]).stdout
    before = {h: ruleset_digest(fleet.ns(h)) for h in HOSTS}
    proc = fleet.playbook("fix", "--limit", "b", "-e", "lbfw_confirm_timeout=20")
    if not detach:
        # This lbfw cannot apply with a confirmation window: the module says so and nothing changes.
        assert proc.returncode == 2
        assert "cannot apply with a confirmation from a second connection" in " ".join(proc.stdout.split())
        assert {h: ruleset_digest(fleet.ns(h)) for h in HOSTS} == before
        return
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert re.search(r"^b\s+: ok=\d+\s+changed=1 ", proc.stdout, re.M)
    assert ruleset_digest(fleet.ns("b")) != before["b"]
    assert {h: ruleset_digest(fleet.ns(h)) for h in ("a", "c")} == {h: before[h] for h in ("a", "c")}
    again = fleet.playbook("fix", "--limit", "b")
    assert again.returncode == 0 and re.search(r"^b\s+: ok=\d+\s+changed=0 ", again.stdout, re.M)


def test_audit_module_is_read_only_and_returns_lbfw_json(fleet):
    before = ruleset_digest(fleet.ns("c"))
    rc, results = adhoc(fleet, "c", "lbfw.loopback.audit", {"lbfw_bin": str(BIN / "lbfw")})
    assert rc == 0 and results["c"]["changed"] is False
    assert results["c"]["summary"] == {"error": 1, "warning": 1, "note": 0}
    assert {f["check"] for f in results["c"]["findings"]} == {"LB001", "LB002"}
    assert results["c"]["document"]["tool"]["name"] == "lbfw" and results["c"]["lbfw_version"]
    assert ruleset_digest(fleet.ns("c")) == before


INSTALL_PLAY = """\
- hosts: a
  gather_facts: false
  roles:
    - role: lbfw.loopback.install
  tasks:
    - name: The installed lbfw runs
      ansible.builtin.command:
        argv: ["{{ lbfw_bin }}", rules, --format, json]
      changed_when: false
"""


def test_install_role_is_idempotent_and_names_a_too_old_python(fleet):
    wheelhouse = fleet.tmp / "wheelhouse"
    build = _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheelhouse), str(ROOT)],
                 timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    play = fleet.tmp / "install.yml"
    play.write_text(INSTALL_PLAY)
    venv = fleet.tmp / "opt-lbfw"
    argv = [str(BIN / "ansible-playbook"), "-i", str(fleet.tmp / "inventory"), str(play), "-e",
            f"lbfw_venv={venv}", "-e", f"lbfw_wheelhouse={wheelhouse}"]
    first = _run(argv, env=fleet.env(), cwd=fleet.tmp, timeout=300)
    assert first.returncode == 0, first.stdout[-4000:]
    assert re.search(r"^a\s+: ok=\d+\s+changed=[1-9]", first.stdout, re.M)
    assert (venv / "bin" / "lbfw").exists()
    again = _run(argv, env=fleet.env(), cwd=fleet.tmp, timeout=300)
    assert again.returncode == 0 and re.search(r"^a\s+: ok=\d+\s+changed=0 ", again.stdout, re.M), again.stdout
    version = "%d.%d.%d" % sys.version_info[:3] if sys.executable.startswith("/usr/bin/") else None
    old = _run(argv + ["-e", "lbfw_min_python=99.0"], env=fleet.env(), cwd=fleet.tmp, timeout=300)
    assert old.returncode == 2
    message = re.search(r"a: lbfw needs Python 99.0 or newer, but /usr/bin/python3 is Python (\d+\.\d+\.\d+)",
                        " ".join(old.stdout.split()))
    assert message, old.stdout[-3000:]
    assert version is None or message.group(1) == version
    missing = _run(argv + ["-e", f"lbfw_wheelhouse={fleet.tmp / 'empty'}"], env=fleet.env(), cwd=fleet.tmp)
    assert missing.returncode == 2 and "no lbfw wheel in" in " ".join(missing.stdout.split())


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
        return {"hosts": n, "forks": forks, "seconds": round(took, 1), "rc": proc.returncode,
                "json_bytes_per_host": sum(sizes) // max(len(sizes), 1)}
    finally:
        f.teardown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20,
                             int(sys.argv[2]) if len(sys.argv) > 2 else 20)))

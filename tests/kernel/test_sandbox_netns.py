"""The sandbox namespace: made, used and always gone afterwards (real kernel, private namespaces)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lbfw.errors import InputError
from lbfw.sandbox.netns import Namespace, SandboxError

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]


def _net_namespaces() -> set:
    """Inodes of every network namespace some process holds, as lsns sees them."""
    for _ in range(5):  # lsns can trip over a process that exits while it scans /proc
        proc = subprocess.run(["lsns", "-t", "net", "-n", "-o", "NS"], capture_output=True, text=True)
        if proc.returncode == 0:
            return {line.strip() for line in proc.stdout.splitlines() if line.strip()}
        time.sleep(0.05)
    raise AssertionError(f"lsns failed: {proc.stderr}")


def _inode(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net").split("[")[1].rstrip("]")


def _dead(pid: int) -> bool:
    """No such process, or a zombie (it has released its namespaces; its new parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _gone(pid: int, inode: str, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _dead(pid) and inode not in _net_namespaces():
            return True
        time.sleep(0.05)
    return False


def test_namespace_has_loopback_with_the_local_127_8_route():
    with Namespace() as ns:
        assert _inode(ns.pid) != os.readlink("/proc/self/ns/net").split("[")[1].rstrip("]")
        addrs = ns.run(["ip", "-o", "addr", "show", "dev", "lo"]).stdout
        assert " 127.0.0.1/8 " in addrs and " ::1/128 " in addrs
        assert "local 127.0.0.0/8 dev lo" in ns.run(["ip", "route", "show", "table", "local"]).stdout
        # The namespace starts with no rules at all.
        assert ns.run(["nft", "list", "ruleset"]).stdout.strip() == ""


def test_namespace_and_holder_are_gone_after_exit():
    with Namespace() as ns:
        pid, inode = ns.pid, _inode(ns.pid)
        assert inode in _net_namespaces()
    assert _gone(pid, inode)


def test_namespace_is_gone_after_an_exception_inside():
    with pytest.raises(RuntimeError), Namespace() as ns:
        pid, inode = ns.pid, _inode(ns.pid)
        raise RuntimeError("boom")
    assert _gone(pid, inode)


def test_namespace_dies_with_a_killed_owner():
    # SIGKILL leaves no chance for __exit__: the holder must still die with its owner.
    code = (
        "import sys, time; from lbfw.sandbox.netns import Namespace\n"
        "ns = Namespace().__enter__()\n"
        "print(ns.pid, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(owner.stdout.readline())
        inode = _inode(pid)
        owner.kill()
        owner.wait(10)
        assert _gone(pid, inode), (_dead(pid), inode in _net_namespaces())
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.stdout.close()


def test_namespace_is_gone_after_sigint_to_its_owner():
    code = (
        "import sys, time; from lbfw.sandbox.netns import Namespace\n"
        "with Namespace() as ns:\n"
        "    print(ns.pid, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        pid = int(owner.stdout.readline())
        inode = _inode(pid)
        owner.send_signal(signal.SIGINT)
        owner.wait(10)
        assert _gone(pid, inode), (owner.returncode, _dead(pid), inode in _net_namespaces())
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.stdout.close()


def test_run_after_close_is_refused():
    ns = Namespace()
    with ns:
        pass
    with pytest.raises(SandboxError):
        ns.run(["true"])


def test_run_reports_a_failing_command_with_its_stderr():
    with Namespace() as ns:
        with pytest.raises(SandboxError, match="Cannot find device"):
            ns.run(["ip", "link", "set", "nosuchif", "up"])
        assert ns.run(["ip", "link", "set", "nosuchif", "up"], check=False).returncode != 0


def test_iptables_loads_in_each_backend_and_dump_reads_it_back():
    text = (
        "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A INPUT -s 127.0.0.1/32 -j ACCEPT\nCOMMIT\n"
    )
    text6 = text.replace("127.0.0.1/32", "::1/128")
    with Namespace() as ns:
        ns.load_iptables(text, backend="legacy")
        ns.load_iptables(text, backend="nft")
        ns.load_iptables(text6, family="ip6", backend="legacy")
        dump = ns.dump()
    assert "-A INPUT -s 127.0.0.1/32 -j ACCEPT" in dump["iptables-legacy-save"]
    assert "-A INPUT -s 127.0.0.1/32 -j ACCEPT" in dump["iptables-nft-save"]
    assert "-A INPUT -s ::1/128 -j ACCEPT" in dump["ip6tables-legacy-save"]
    assert ":INPUT DROP [0:0]" in dump["iptables-legacy-save"]
    assert "table ip filter" in dump["nft"]
    assert not any(line.startswith("#") for v in dump.values() for line in v.splitlines() if v is not dump["nft"])


def test_a_dump_the_kernel_rejects_names_the_source_and_line():
    # `--test` accepts a jump to a missing chain; a real restore does not (DOMAIN.md).
    text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -j NOSUCHCHAIN\nCOMMIT\n"
    with Namespace() as ns:
        with pytest.raises(InputError) as err:
            ns.load_iptables(text, backend="legacy", source="rules.v4")
        assert err.value.path == "rules.v4"
        assert "kernel rejected" in str(err.value)
        with pytest.raises(InputError):
            ns.load_iptables(text, backend="nft", source="rules.v4")
        # Nothing of the rejected dump is left in the kernel.
        assert "NOSUCHCHAIN" not in ns.dump()["iptables-legacy-save"]


def test_nft_rejection_gives_the_line():
    text = (
        "table inet f {\n  chain input {\n    type filter hook input priority 0;\n"
        "    ip saddr 127.0.0.1 bogus\n  }\n}\n"
    )
    with Namespace() as ns, pytest.raises(InputError) as err:
        ns.load_nft(text, source="fw.nft")
    assert err.value.path == "fw.nft" and err.value.line == 4


def test_interfaces_named_by_a_ruleset_can_be_made_so_it_loads():
    text = (
        "table inet f {\n  chain input {\n    type filter hook input priority 0;\n"
        '    iif "eth0" ip saddr 127.0.0.0/8 drop\n  }\n}\n'
    )
    with Namespace() as ns:
        with pytest.raises(InputError, match="Interface does not exist"):
            ns.load_nft(text)
        ns.add_interface("eth0")
        ns.add_interfaces(["eth0", "wan", "lbfwp0", "eth+", "bad/name", "lo", "type", "dev"])
        ns.load_nft(text)
        links = ns.run(["ip", "-o", "link"]).stdout
        assert "eth0" in links and " wan@" in links and " lbfwp0@" in links
        assert " type@" in links and " dev@" in links  # names that are also ip(8) keywords
        assert 'iif "eth0"' in ns.dump()["nft"]


def test_nft_loads_from_a_path(tmp_path):
    path = tmp_path / "fw.nft"
    path.write_text('include "inc.nft"\ninclude "./inc2.nft"\n')
    (tmp_path / "inc.nft").write_text("table ip t {\n chain c {\n  type filter hook output priority 0;\n }\n}\n")
    (tmp_path / "inc2.nft").write_text("table ip u {\n}\n")
    with Namespace() as ns:
        ns.load_nft(path)
        listed = ns.dump()["nft"]
        assert "table ip t" in listed and "table ip u" in listed


NOBODY = """
import sys
sys.path.insert(0, sys.argv[1])
from lbfw.results import Flow
from lbfw.sandbox.netns import Namespace
from lbfw.sandbox.traffic import observe
with Namespace() as ns:
    assert ns.user_ns
    ns.load_iptables("*filter\\n:INPUT DROP [0:0]\\n-A INPUT -s 127.0.0.1/32 -j ACCEPT\\nCOMMIT\\n", backend="nft")
    ns.load_iptables("*filter\\n:INPUT DROP [0:0]\\n-A INPUT -s 127.0.0.1/32 -j ACCEPT\\nCOMMIT\\n")
    print(ns.legacy_available(), *observe(ns, [Flow("tcp", "127.0.0.1", 80), Flow("tcp", "127.0.0.53", 80)],
                                          timeout=0.4))
# Without legacy tables (here: a user namespace; kernels 6.17+ may lack them) dumps go to iptables-nft.
from lbfw.sandbox.verify import RulesetText, observe_files
RULES = "*filter\\n:INPUT DROP [0:0]\\n-A INPUT -i lo -s 127.0.0.1 -j ACCEPT\\nCOMMIT\\n"
print(*observe_files([RulesetText("r.v4", RULES)],
                     [Flow("tcp", "127.0.0.1", 80), Flow("udp", "127.0.0.53", 53)], timeout=0.4))
"""


def test_without_root_a_user_namespace_does_the_same():
    # Unprivileged users get `unshare -rn`; the legacy tools need a private lock file there.
    python = "/usr/bin/python3"  # the venv's interpreter may sit in a directory nobody cannot enter
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not os.access(python, os.X_OK):
        pytest.skip("needs root to become nobody, setpriv and the system python3")
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", NOBODY, str(ROOT / "src")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    if "cannot create a private network namespace" in proc.stderr:
        pytest.skip(f"user namespaces are not allowed here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "delivered", "blocked", "delivered", "blocked"]


def test_holder_dies_with_its_owner_even_when_a_forked_child_keeps_the_pipe():
    # A fork (multiprocessing's default) inherits the pipe the holder reads: end of file never
    # comes while the child lives, so only the parent-death signal can end the holder.
    code = (
        "import os, sys, time; from lbfw.sandbox.netns import Namespace\n"
        "ns = Namespace().__enter__()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(30); os._exit(0)\n"
        "print(ns.pid, child, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        pid, child = map(int, owner.stdout.readline().split())
        inode = _inode(pid)
        owner.kill()
        owner.wait(10)
        assert _gone(pid, inode), (_dead(pid), inode in _net_namespaces())
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.stdout.close()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_root_without_cap_sys_admin_falls_back_to_a_user_namespace():
    # Many containers run root without CAP_SYS_ADMIN: `unshare -n` is refused there, `-rn` is not.
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop CAP_SYS_ADMIN")
    refused = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "unshare", "-n", "true"],
        capture_output=True,
    )
    assert refused.returncode != 0  # the situation this test is about
    proc = subprocess.run(
        [
            "setpriv",
            "--bounding-set",
            "-sys_admin",
            "--inh-caps",
            "-sys_admin",
            sys.executable,
            "-c",
            NOBODY,
            str(ROOT / "src"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "cannot create a private network namespace" in proc.stderr:
        pytest.skip(f"user namespaces are not allowed here either: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "delivered", "blocked", "delivered", "blocked"]

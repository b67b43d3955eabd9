"""`lbfw doctor` inside private network namespaces, each with a private /etc (a mount namespace with
a temporary directory bound over /etc): the host's own /etc and firewall are never read or touched.
Every bad state is also tried on the kernel itself, so doctor's verdict is checked against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lbfw.sandbox.netns import Namespace

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "rules" / "examples"
NOBODY = 65534
# the few files commands and pwd need inside the private /etc
ETC_KEEP = ("passwd", "group", "nsswitch.conf", "protocols", "services", "ethertypes", "iproute2")

PLAN = """\
[[flow]]
proto = "tcp"
server = "127.10.0.1"
port = 8001

[[flow]]
proto = "tcp"
server = "127.20.0.1"
port = 8002

[[flow]]
proto = "tcp"
server = "127.10.0.1"
port = 8001
client = "127.0.0.2"
"""

# run in the namespace's own mount namespace: bind the private /etc, then exec what follows
_WITH_ETC = (
    "import os, subprocess, sys\n"
    "subprocess.run(['mount', '--make-rprivate', '/'], check=True)\n"
    "subprocess.run(['mount', '--bind', sys.argv[1], '/etc'], check=True)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)

# a socket held open in the namespace until its stdin closes: family type addr port v6only
_HOLD = (
    "import socket, sys\n"
    "fam = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET\n"
    "kind = socket.SOCK_STREAM if sys.argv[2] == 'tcp' else socket.SOCK_DGRAM\n"
    "s = socket.socket(fam, kind)\n"
    "if fam == socket.AF_INET6:\n"
    "    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(sys.argv[5]))\n"
    "s.bind((sys.argv[3], int(sys.argv[4])))\n"
    "if kind == socket.SOCK_STREAM:\n"
    "    s.listen()\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)

# try bind (and connect) in the namespace and print the errno name, or "ok"
_TRY = (
    "import errno, socket, sys\n"
    "kind = socket.SOCK_STREAM if sys.argv[1] == 'tcp' else socket.SOCK_DGRAM\n"
    "s = socket.socket(socket.AF_INET, kind)\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.settimeout(2)\n"
    "try:\n"
    "    s.bind((sys.argv[2], int(sys.argv[3])))\n"
    "    if len(sys.argv) > 4:\n"
    "        s.connect((sys.argv[4], int(sys.argv[5])))\n"
    "    print('ok')\n"
    "except TimeoutError:\n"
    "    print('timeout')\n"
    "except OSError as err:\n"
    "    print(errno.errorcode.get(err.errno, err.errno))\n"
)


@pytest.fixture
def etc():
    """A private /etc with only ETC_KEEP copied (plus what a test writes into it)."""
    folder = Path(tempfile.mkdtemp(prefix="lbfw-etc-"))
    os.chmod(folder, 0o755)
    for name in ETC_KEEP:
        src = Path("/etc") / name
        if src.is_dir():
            shutil.copytree(src, folder / name, symlinks=True)
        elif src.exists():
            shutil.copy2(src, folder / name)
    (folder / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def plan():
    """PLAN in a directory other users can read (setpriv runs doctor as nobody)."""
    folder = Path(tempfile.mkdtemp(prefix="lbfw-plan-"))
    os.chmod(folder, 0o755)
    path = folder / "plan.toml"
    path.write_text(PLAN)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def doctor(ns, etc, *args, as_user=None):
    """`lbfw doctor --format json ARGS` in ``ns`` with ``etc`` as /etc: (exit code, JSON, stderr)."""
    argv = [sys.executable, "-m", "lbfw", "doctor", "--format", "json", *map(str, args)]
    if as_user is not None:
        argv = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", "--", *argv]
    proc = ns.run(["unshare", "-m", "--", sys.executable, "-c", _WITH_ETC, str(etc), *argv], check=False, cwd=str(ROOT))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def items(doc, check_id):
    return [i for i in doc["items"] if i["id"] == check_id]


def one(doc, check_id, subject):
    found = [i for i in items(doc, check_id) if i["subject"] == subject]
    assert len(found) == 1, (check_id, subject, doc["items"])
    return found[0]


def kernel_says(ns, proto, addr, port, *connect, as_user=None):
    argv = [sys.executable, "-c", _TRY, proto, addr, str(port), *map(str, connect)]
    if as_user is not None:
        argv = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", "--", *argv]
    return ns.run(argv).stdout.strip()


class Held:
    """A socket bound in the namespace for the length of a with-block."""

    def __init__(self, ns, family, proto, addr, port, v6only=0):
        argv = ns.enter_argv([sys.executable, "-c", _HOLD, family, proto, addr, str(port), str(v6only)])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __enter__(self):
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.mark.kernel
def test_healthy_host_is_ready(etc, plan):
    with Namespace() as ns:
        code, doc, _ = doctor(ns, etc, "--plan", plan)
    assert code == 0, [i for i in doc["items"] if i["severity"] in ("error", "warning")]
    assert doc["summary"]["error"] == 0 and doc["summary"]["warning"] == 0
    assert {i["severity"] for i in items(doc, "DR015")} == {"ok"}  # no rules: every flow delivered
    assert {i["id"] for i in doc["items"]} >= {"DR001", "DR002", "DR004", "DR010", "DR011", "DR012", "DR020"}
    assert all(set(i) >= {"id", "severity", "subject", "message", "why", "fix"} for i in doc["items"])


@pytest.mark.kernel
def test_lo_with_127_0_0_1_32_is_an_error_and_the_kernel_agrees(etc, plan):
    with Namespace() as ns:
        ns.run(["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"])
        ns.run(["ip", "addr", "add", "127.0.0.1/32", "dev", "lo"])
        assert kernel_says(ns, "tcp", "127.10.0.1", 8001) == "EADDRNOTAVAIL"
        code, doc, _ = doctor(ns, etc, "--plan", plan)
        _, bare, _ = doctor(ns, etc)
    assert code == 1
    lo = one(doc, "DR002", "lo")
    assert lo["severity"] == "error" and "127.0.0.1/32" in lo["message"]
    assert lo["fix"][0] == "ip addr replace 127.0.0.1/8 dev lo"
    assert any("systemd-networkd" in line for line in lo["fix"])
    assert one(doc, "DR010", "127.10.0.1 (server)")["severity"] == "error"
    assert one(doc, "DR011", "127.0.0.2 (client)")["severity"] == "error"
    assert one(bare, "DR002", "lo")["severity"] == "error"  # without a plan as well


@pytest.mark.kernel
def test_lo_down_is_an_error_and_connect_fails(etc, plan):
    with Namespace() as ns:
        ns.run(["ip", "link", "set", "lo", "down"])
        assert kernel_says(ns, "tcp", "127.10.0.1", 0) == "ok"  # bind still succeeds
        # connect fails: ENETUNREACH, or (this kernel, a fresh namespace) the SYN is dropped on a down lo
        assert kernel_says(ns, "tcp", "127.10.0.1", 0, "127.20.0.1", 8002) in ("ENETUNREACH", "timeout")
        code, doc, _ = doctor(ns, etc, "--plan", plan)
    assert code == 1
    down = one(doc, "DR001", "lo")
    assert down["severity"] == "error" and down["fix"] == ["ip link set lo up"]


@pytest.mark.kernel
@pytest.mark.parametrize("family, addr, v6only", [("4", "0.0.0.0", 0), ("6", "::", 0)])
def test_wildcard_listener_holds_the_plan_port(etc, plan, family, addr, v6only):
    with Namespace() as ns, Held(ns, family, "tcp", addr, 8001, v6only):
        assert kernel_says(ns, "tcp", "127.10.0.1", 8001) == "EADDRINUSE"  # even with SO_REUSEADDR
        code, doc, _ = doctor(ns, etc, "--plan", plan)
    assert code == 1
    held = one(doc, "DR012", "127.10.0.1:8001/tcp")
    assert held["severity"] == "error" and "wildcard" in held["message"]
    assert held["data"]["holders"] == [("0.0.0.0" if family == "4" else "*") + ":8001/tcp"]
    assert one(doc, "DR012", "127.20.0.1:8002/tcp")["severity"] == "ok"


@pytest.mark.kernel
def test_ipv6_only_listener_and_other_addresses_leave_the_port_free(etc, plan):
    with Namespace() as ns, Held(ns, "6", "tcp", "::", 8001, 1), Held(ns, "4", "tcp", "127.0.0.1", 8001):
        assert kernel_says(ns, "tcp", "127.10.0.1", 8001) == "ok"
        code, doc, _ = doctor(ns, etc, "--plan", plan)
    assert one(doc, "DR012", "127.10.0.1:8001/tcp")["severity"] == "ok"
    assert code == 0


@pytest.mark.kernel
def test_udp_wildcard_blocks_a_dns_server_address(etc):
    with Namespace() as ns, Held(ns, "4", "udp", "0.0.0.0", 53):
        assert kernel_says(ns, "udp", "127.53.53.53", 53) == "EADDRINUSE"
        code, doc, _ = doctor(ns, etc, "--to", "127.53.53.53:53/udp")
    assert code == 1 and one(doc, "DR012", "127.53.53.53:53/udp")["severity"] == "error"


@pytest.mark.kernel
def test_narrow_firewall_blocks_the_plan_flows(etc, plan):
    with Namespace() as ns:
        ns.load_iptables((EX / "input-narrow-accept.rules").read_text(), family="ip", backend="legacy")
        code, doc, _ = doctor(ns, etc, "--plan", plan)
    assert code == 1
    flows = {i["subject"]: i for i in items(doc, "DR015")}
    assert set(flows) == {
        "tcp default -> 127.10.0.1:8001",
        "tcp default -> 127.20.0.1:8002",
        "tcp 127.0.0.2 -> 127.10.0.1:8001",
    }
    assert {i["severity"] for i in flows.values()} == {"error"}
    bound = flows["tcp 127.0.0.2 -> 127.10.0.1:8001"]
    assert "policy drop" in bound["message"] and bound["data"]["verdict"] == "blocked"


@pytest.mark.kernel
def test_without_root_the_firewall_is_skipped(etc, plan):
    with Namespace() as ns:
        code, doc, _ = doctor(ns, etc, "--plan", plan, as_user=NOBODY)
    assert doc["root"] is False
    fw = one(doc, "DR015", "firewall")
    assert fw["severity"] == "skipped" and "root" in fw["message"]
    assert code == 0


@pytest.mark.kernel
def test_privileged_port_for_an_unprivileged_user(etc):
    with Namespace() as ns:
        assert kernel_says(ns, "udp", "127.53.53.53", 53, as_user=NOBODY) == "EACCES"
        code, by_name, _ = doctor(ns, etc, "--to", "127.53.53.53:53/udp", "--user", "nobody")
        _, as_nobody, _ = doctor(ns, etc, "--to", "127.53.53.53:53/udp", as_user=NOBODY)
        _, as_root, _ = doctor(ns, etc, "--to", "127.53.53.53:53/udp")
        ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_unprivileged_port_start=53"])
        assert kernel_says(ns, "udp", "127.53.53.53", 53, as_user=NOBODY) == "ok"
        _, lowered, _ = doctor(ns, etc, "--to", "127.53.53.53:53/udp", "--user", str(NOBODY))
    assert code == 1
    for doc in (by_name, as_nobody):
        item = one(doc, "DR014", "port 53/udp (nobody)")
        assert item["severity"] == "error" and "65534" in item["message"]
        assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in item["fix"][0]
    assert one(as_root, "DR014", "port 53/udp (root)")["severity"] == "ok"
    assert items(lowered, "DR014") == []


@pytest.mark.kernel
def test_resolver_and_fail2ban_in_a_private_etc(etc):
    (etc / "resolv.conf").write_text("# test\nnameserver 127.53.53.53\nnameserver 192.0.2.53\n")
    (etc / "systemd" / "network").mkdir(parents=True)
    (etc / "systemd" / "network" / "10-eth.network").write_text("[Match]\nName=eth0\n[Network]\nDNS=127.53.53.53\n")
    (etc / "fail2ban" / "jail.d").mkdir(parents=True)
    (etc / "fail2ban" / "jail.conf").write_text("[DEFAULT]\nignoreip =\n[sshd]\nenabled = true\n")
    (etc / "fail2ban" / "jail.local").write_text("[DEFAULT]\nignoreip = 127.0.0.1 ::1\n")
    with Namespace() as ns:
        code, before, _ = doctor(ns, etc)
        (etc / "fail2ban" / "jail.d" / "zz-lbfw.local").write_text("[DEFAULT]\nignoreip = 127.0.0.1/8 ::1\n")
        with Held(ns, "4", "udp", "127.53.53.53", 53):
            _, after, _ = doctor(ns, etc)
    assert code == 1
    assert one(before, "DR030", "nameserver 127.53.53.53")["severity"] == "warning"  # nothing listens
    assert one(after, "DR030", "nameserver 127.53.53.53")["severity"] == "ok"
    link = one(before, "DR031", "/etc/systemd/network/10-eth.network")
    assert link["severity"] == "warning" and "DNS=127.53.53.53" in link["fix"][0]
    ban = one(before, "DR040", "fail2ban [DEFAULT]")
    assert ban["severity"] == "warning" and "127.0.0.1/8" in ban["fix"][0]
    assert one(after, "DR040", "fail2ban [DEFAULT]")["severity"] == "ok"


@pytest.mark.kernel
def test_route_localnet_without_antispoofing(etc):
    with Namespace() as ns:
        ns.add_interface("eth0")
        ns.run(["sysctl", "-q", "-w", "net.ipv4.conf.eth0.route_localnet=1"])
        code, open_doc, _ = doctor(ns, etc)
        ns.load_iptables(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP\n"
            "-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP\nCOMMIT\n",
            family="ip",
            backend="legacy",
        )
        _, guarded, _ = doctor(ns, etc)
    assert code == 1 and items(open_doc, "DR016")[0]["severity"] == "error"
    assert items(guarded, "DR016")[0]["severity"] == "ok"


# --------------------------------------------------------------------------- capacity, measured

_MEASURE = (
    "import errno, socket, sys, time\n"
    "mode, limit = sys.argv[1], int(sys.argv[2])\n"
    "servers = [('127.0.0.1', 5001), ('127.0.0.1', 5002)]\n"
    "lsn = []\n"
    "for addr in servers:\n"
    "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind(addr); s.listen(4096); lsn.append(s)\n"
    "held, counts, deadline = [], [], time.monotonic() + 20\n"
    "for server in servers:\n"
    "    n = 0\n"
    "    while n < limit and time.monotonic() < deadline:\n"
    "        c = socket.socket()\n"
    "        try:\n"
    "            if mode == 'noport':\n"
    "                c.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT\n"
    "            if mode in ('bind', 'noport'):\n"
    "                c.bind(('127.0.0.2', 0))\n"
    "            c.connect(server)\n"
    "        except OSError as err:\n"
    "            c.close(); last = errno.errorcode.get(err.errno); break\n"
    "        held.append(c); n += 1\n"
    "    counts.append(n)\n"
    "print(counts[0], counts[1], last)\n"
)


@pytest.mark.kernel
@pytest.mark.parametrize("mode", ["unbound", "bind", "noport"])
def test_capacity_matches_real_connections(etc, mode, tmp_path):
    """A 200-port range with 10 reserved: doctor's figure is what the kernel gives, per client address
    and server ip:port, in every mode; with bind() before connect() the second server gets nothing,
    with IP_BIND_ADDRESS_NO_PORT the whole range again."""
    plan = tmp_path / "plan.toml"
    client = 'client = "127.0.0.2"\n' if mode != "unbound" else ""
    plan.write_text(
        f'[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = 5001\n{client}'
        f'[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = 5002\n{client}'
    )
    with Namespace() as ns:
        ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40199"])
        ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports=40000-40009"])
        _, doc, _ = doctor(ns, etc, "--plan", plan)
        start = time.monotonic()
        first, second, last = ns.run([sys.executable, "-c", _MEASURE, mode, "1000"], timeout=60).stdout.split()
        assert time.monotonic() - start < 30
    figure = one(doc, "DR020", "ephemeral ports")["data"]
    assert figure["per_client_address_and_server"] == 190 == int(first)
    # unbound, connect() runs out of ports; bound, bind(addr, 0) does
    assert last == ("EADDRINUSE" if mode == "bind" else "EADDRNOTAVAIL")
    if mode == "bind":
        assert int(second) == 0  # the range is held by the first server's sockets
        warn = one(doc, "DR021", "127.0.0.2 (client)")
        assert warn["severity"] == "warning" and "IP_BIND_ADDRESS_NO_PORT" in warn["fix"][0]
    else:
        assert int(second) == 190  # the whole range again for another server
    if mode == "unbound":
        assert items(doc, "DR021") == []


@pytest.mark.kernel
def test_connections_beyond_the_limits_are_reported(etc, plan):
    with Namespace() as ns:
        ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40199"])
        code, doc, _ = doctor(ns, etc, "--plan", plan, "--connections", "500")
    assert code == 1
    assert one(doc, "DR021", "127.0.0.2 (client)")["severity"] == "error"  # 500 > 200 ports
    nofile = one(doc, "DR022", "RLIMIT_NOFILE")
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1500:
        assert nofile["severity"] == "warning"
    assert nofile["data"]["plan_connections"] == 1500


@pytest.mark.kernel
def test_ipv6_loopback_missing(etc):
    with Namespace() as ns:
        ns.run(["ip", "-6", "addr", "del", "::1/128", "dev", "lo"])
        bind = ns.run(
            [
                sys.executable,
                "-c",
                "import socket\ntry:\n    socket.socket(socket.AF_INET6).bind(('::1', 0))"
                "\nexcept OSError as err:\n    print(err.errno)",
            ]
        ).stdout.strip()
        code, before, _ = doctor(ns, etc, "--to", "[::1]:8080")
        ns.run(["ip", "-6", "addr", "add", "::1/128", "dev", "lo"])
        after_code, after, _ = doctor(ns, etc, "--to", "[::1]:8080")
    assert bind == "99"  # EADDRNOTAVAIL
    missing = one(before, "DR010", "::1 (server)")
    assert code == 1 and missing["severity"] == "error" and missing["fix"][-1] == "ip -6 addr add ::1/128 dev lo"
    assert one(before, "DR004", "lo")["severity"] == "warning"
    assert after_code == 0 and one(after, "DR010", "::1 (server)")["severity"] == "ok"

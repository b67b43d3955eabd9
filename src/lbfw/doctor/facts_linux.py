"""Gather a Linux host's facts for doctor: /proc and /sys of the current network namespace,
`ip -j`, `ss`, resource limits and the configuration files the checks read.

The parsers (`parse_ss`, `parse_port_list`, `local_nets_from`, `lo_state_from`) are pure; `gather`
is the edge. Nothing is changed and nothing needs root; what cannot be read is recorded in
``Host.unread`` and the checks that need it say "skipped".
"""

from __future__ import annotations

import glob
import json
import os
import resource
import shutil
import subprocess
from typing import Optional

from .host import Host, Listener

_SYS = "/proc/sys"
CAP_NET_BIND_SERVICE = 10
TIME_WAIT_SECONDS = 60  # TCP_TIMEWAIT_LEN: fixed in the Linux kernel

# the files the checks read, when they exist (globs expanded in sorted order)
CONFIG_GLOBS = (
    "/etc/resolv.conf",
    "/etc/systemd/resolved.conf",
    "/etc/systemd/resolved.conf.d/*.conf",
    "/etc/systemd/network/*.network",
    "/etc/fail2ban/jail.conf",
    "/etc/fail2ban/jail.d/*.conf",
    "/etc/fail2ban/jail.local",
    "/etc/fail2ban/jail.d/*.local",
)
# only whether they exist matters: which network manager to give persistence advice for
MARKER_FILES = (
    "/etc/network/interfaces",
    "/etc/netplan",
    "/etc/systemd/network",
    "/run/systemd/resolve",
    "/etc/fail2ban",
)


def parse_ss(text: str) -> tuple:
    """Listeners from `ss -H -l -n -t -u [-p]`: ``*`` is a dual-stack IPv6 socket, ``[::]`` an IPv6-only one."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] not in ("tcp", "udp"):
            continue
        local = fields[4]
        addr, _, port = local.rpartition(":")
        if not port.isdigit():
            continue
        addr = addr.split("%", 1)[0]  # 127.0.0.53%lo: bound to a device as well
        if addr.startswith("[") and addr.endswith("]"):
            addr = addr[1:-1]
        if addr.startswith("::ffff:") and "." in addr:
            addr = addr[7:]
        process = None
        if len(fields) > 6 and fields[6].startswith('users:(("'):
            process = fields[6][len('users:(("') :].split('"', 1)[0]
        out.append(Listener(fields[0], addr, int(port), process))
    return tuple(out)


def parse_port_list(text: str) -> frozenset:
    """`ip_local_reserved_ports` ("8000-8010,9000") -> the set of ports."""
    ports: set[int] = set()
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            ports.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(ports)


def local_nets_from(route_json: list) -> tuple:
    """The destinations of `local` routes on lo, from `ip -j [-6] route show table local`."""
    nets = []
    for route in route_json or []:
        if route.get("type") == "local" and route.get("dev") == "lo" and route.get("dst"):
            dst = route["dst"]
            nets.append(dst if "/" in dst else f"{dst}/{128 if ':' in dst else 32}")
    return tuple(nets)


def lo_state_from(addr_json: list) -> tuple:
    """(lo is up, lo's addresses as "ADDR/PREFIX") from `ip -j addr show dev lo`."""
    for link in addr_json or []:
        if link.get("ifname") == "lo":
            addrs = tuple(
                f"{a['local']}/{a['prefixlen']}"
                for a in link.get("addr_info") or []
                if "local" in a and "prefixlen" in a
            )
            return "UP" in (link.get("flags") or []), addrs
    return None, ()


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _sysctl_int(name: str) -> Optional[int]:
    text = _read(os.path.join(_SYS, *name.split(".")))
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


def _run(argv: list) -> Optional[str]:
    tool = shutil.which(argv[0]) or next(
        (p for p in (f"/sbin/{argv[0]}", f"/usr/sbin/{argv[0]}") if os.path.exists(p)), None
    )
    if tool is None:
        return None
    try:
        proc = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _ip_json(args: list):
    text = _run(["ip", "-j", *args])
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def effective_caps() -> Optional[int]:
    """This process's effective capability bits (/proc/self/status CapEff)."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return None


def gather() -> Host:
    """The facts of this Linux host (its current network namespace), read-only."""
    from ..read.hostfacts import read_route_localnet

    host = Host(platform="linux", is_root=os.geteuid() == 0)
    addr_json = _ip_json(["addr", "show", "dev", "lo"])
    if addr_json is None:
        host.unread["lo"] = "`ip -j addr show dev lo` failed (is iproute2 installed?)"
    else:
        host.lo_up, host.lo_addrs = lo_state_from(addr_json)
    routes4 = _ip_json(["-4", "route", "show", "table", "local"])
    routes6 = _ip_json(["-6", "route", "show", "table", "local"])
    if routes4 is None:
        host.unread["routes"] = "`ip -j route show table local` failed"
    else:
        host.local_nets = local_nets_from(routes4) + local_nets_from(routes6 or [])
    bind = _sysctl_int("net.ipv4.ip_nonlocal_bind")
    host.nonlocal_bind = None if bind is None else bind == 1
    host.route_localnet = read_route_localnet()
    rng = _read(f"{_SYS}/net/ipv4/ip_local_port_range")
    if rng and len(rng.split()) == 2:
        first, last = rng.split()
        host.port_range = (int(first), int(last))
    host.reserved_ports = parse_port_list(_read(f"{_SYS}/net/ipv4/ip_local_reserved_ports") or "")
    host.unprivileged_port_start = _sysctl_int("net.ipv4.ip_unprivileged_port_start")
    host.tcp_tw_reuse = _sysctl_int("net.ipv4.tcp_tw_reuse")
    host.time_wait_seconds = TIME_WAIT_SECONDS
    host.conntrack_max = _sysctl_int("net.netfilter.nf_conntrack_max")
    if host.conntrack_max is None:
        host.unread["conntrack"] = "nf_conntrack is not loaded (no connection tracking limit applies)"
    ss = _run(["ss", "-H", "-l", "-n", "-t", "-u", "-p"])
    if ss is None:
        host.unread["listeners"] = "`ss -H -l -n -t -u` failed (is iproute2 installed?)"
    else:
        host.listeners = parse_ss(ss)
    host.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    for pattern in CONFIG_GLOBS:
        for path in sorted(glob.glob(pattern)) if "*" in pattern else [pattern]:
            text = _read(path)
            if text is not None:
                host.files[path] = text
    for path in MARKER_FILES:
        if os.path.exists(path):
            host.files.setdefault(path, "")
    return host

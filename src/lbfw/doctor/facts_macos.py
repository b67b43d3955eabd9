"""Gather a macOS host's facts for doctor from `ifconfig lo0`, `netstat`, `sysctl`, `pfctl` (root)
and `scutil --dns`.

`host_from(outputs, files)` is pure: it takes each command's output (keyed by `COMMANDS`' names, None
when the command failed or was not run) and builds the Host, so the parsing is tested on Linux from
transcripts. `gather()` is the edge that runs the commands, with argument lists.

macOS facts that shape the checks: lo0 carries 127.0.0.1 only and every other 127/8 address needs
`ifconfig lo0 alias`, lost at reboot; there are 16,384 ephemeral ports (49152-65535) and TIME_WAIT is
2 x net.inet.tcp.msl (30 s); the system resolver ignores /etc/resolv.conf; pf, when enabled without
`set skip on lo0`, keeps state for loopback connections.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import plistlib
import re
import resource
import subprocess
from typing import Optional

from .host import Host, Listener

# name -> (argument list, needs root)
COMMANDS = {
    "ifconfig": (["/sbin/ifconfig", "lo0"], False),
    "routes": (["/usr/sbin/netstat", "-rn", "-f", "inet"], False),
    "sysctl": (
        ["/usr/sbin/sysctl", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last", "net.inet.tcp.msl"],
        False,
    ),
    "tcp": (["/usr/sbin/netstat", "-an", "-p", "tcp"], False),
    "udp": (["/usr/sbin/netstat", "-an", "-p", "udp"], False),
    "scutil": (["/usr/sbin/scutil", "--dns"], False),
    "pf_info": (["/sbin/pfctl", "-s", "info"], True),
    "pf_rules": (["/sbin/pfctl", "-s", "rules"], True),
    "pf_memory": (["/sbin/pfctl", "-s", "memory"], True),
}
FILES = ("/etc/resolv.conf", "/etc/pf.conf")
LAUNCH_DAEMONS = "/Library/LaunchDaemons/*.plist"

_INET = re.compile(r"^\s*inet\s+(\S+)\s+netmask\s+(0x[0-9a-fA-F]+|\S+)", re.M)
_INET6 = re.compile(r"^\s*inet6\s+(\S+)\s+prefixlen\s+(\d+)", re.M)
_FLAGS = re.compile(r"^lo0:\s+flags=\w+<([^>]*)>", re.M)
_SYSCTL = re.compile(r"^([\w.]+):\s*(-?\d+)\s*$", re.M)
_NAMESERVER = re.compile(r"^\s*nameserver\[\d+\]\s*:\s*(\S+)", re.M)
_STATES = re.compile(r"^\s*states\s+hard limit\s+(\d+)", re.M)
_ALIAS = re.compile(r"lo0\s+(?:inet6?\s+)?(?:alias\s+)?([0-9a-fA-F:.]+)\s+(?:netmask|prefixlen|alias|up)")


def parse_ifconfig(text: str) -> tuple:
    """(lo0 is up, ("127.0.0.1/8", "127.0.0.2/32", "::1/128")) from `ifconfig lo0` (link-local skipped)."""
    flags = _FLAGS.search(text)
    up = None if flags is None else "UP" in flags.group(1).split(",")
    addrs = []
    for addr, mask in _INET.findall(text):
        bits = int(mask, 16) if mask.startswith("0x") else int(ipaddress.ip_address(mask))
        addrs.append(f"{addr}/{bin(bits).count('1')}")
    for addr, prefix in _INET6.findall(text):
        if "%" not in addr and not addr.lower().startswith("fe80"):
            addrs.append(f"{addr}/{prefix}")
    return up, tuple(addrs)


def has_loopback_route(text: str) -> bool:
    """Whether `netstat -rn -f inet` routes 127 (the /8) to lo0."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] in ("127", "127/8", "127.0.0.0/8") and fields[-1] == "lo0":
            return True
    return False


def parse_sysctl(text: str) -> dict:
    return {name: int(value) for name, value in _SYSCTL.findall(text)}


def parse_netstat_listeners(text: str, proto: str) -> tuple:
    """Listeners from `netstat -an -p tcp|udp`: tcp4/udp4 `*.53` is 0.0.0.0, tcp6 `*.53` is ::,
    tcp46 `*.53` both ("*"); the port follows the last dot."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0].startswith(proto):
            continue
        if proto == "tcp" and (len(fields) < 6 or fields[5] != "LISTEN"):
            continue
        local = fields[3]
        addr, _, port = local.rpartition(".")
        if not port.isdigit():
            continue
        kind = fields[0][len(proto) :]
        if addr == "*":
            addr = {"4": "0.0.0.0", "6": "::", "46": "*"}.get(kind, "*")
        out.append(Listener(proto, addr.split("%", 1)[0], int(port)))
    return tuple(out)


def parse_pf_enabled(text: str) -> Optional[bool]:
    for line in text.splitlines():
        if line.startswith("Status:"):
            return line.split()[1] == "Enabled"
    return None


def pf_skips_lo0(pf_conf: Optional[str], rules: Optional[str]) -> Optional[bool]:
    """Whether pf leaves lo0 alone: `set skip on lo0` (or `{ lo0 ... }`) in pf.conf. None when unknown."""
    if pf_conf is None and rules is None:
        return None
    for line in (pf_conf or "").splitlines():
        line = line.split("#", 1)[0]
        if re.match(r"^\s*set\s+skip\s+on\s+", line) and re.search(r"\blo0?\b", line):
            return True
    return False


def parse_dns_servers(text: str) -> tuple:
    return tuple(dict.fromkeys(_NAMESERVER.findall(text)))


def launchd_aliases(plists: dict) -> tuple:
    """Addresses LaunchDaemons add to lo0 at boot: ``plists`` maps a path to its bytes (XML or
    binary); a daemon counts when its ProgramArguments say `lo0 alias ADDR`."""
    found = []
    for data in plists.values():
        try:
            doc = plistlib.loads(data)
            args = doc.get("ProgramArguments") or [doc.get("Program", "")]
            text = " ".join(str(a) for a in args)
        except (plistlib.InvalidFileException, ValueError, AttributeError, TypeError):
            continue
        if "lo0" in text and "alias" in text:
            found += [a for a in _ALIAS.findall(text) if _is_ip(a)]
    return tuple(dict.fromkeys(found))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_from(
    outputs: dict, files: dict, is_root: bool = False, plists: Optional[dict] = None, nofile: Optional[tuple] = None
) -> Host:
    """A macOS Host from command outputs (None: failed or not run) and files (path -> text)."""
    host = Host(
        platform="macos",
        is_root=is_root,
        lo_name="lo0",
        files=dict(files),
        nofile=nofile,
        conntrack_name="pf states limit",
    )
    ifconfig = outputs.get("ifconfig")
    if ifconfig is None:
        host.unread["lo"] = host.unread["routes"] = "`ifconfig lo0` failed"
    else:
        host.lo_up, host.lo_addrs = parse_ifconfig(ifconfig)
        # macOS binds only the addresses lo0 carries, whatever their netmask
        host.local_nets = tuple(f"{a.split('/')[0]}/{128 if ':' in a else 32}" for a in host.lo_addrs)
        routes = outputs.get("routes")
        if routes is not None and not has_loopback_route(routes):
            host.unread["route127"] = "netstat shows no 127 route on lo0"
    sysctl = parse_sysctl(outputs.get("sysctl") or "")
    if "net.inet.ip.portrange.first" in sysctl and "net.inet.ip.portrange.last" in sysctl:
        host.port_range = (sysctl["net.inet.ip.portrange.first"], sysctl["net.inet.ip.portrange.last"])
    else:
        host.unread["ports"] = "`sysctl net.inet.ip.portrange.*` failed"
    host.time_wait_seconds = 2 * sysctl["net.inet.tcp.msl"] // 1000 if "net.inet.tcp.msl" in sysctl else 30
    if outputs.get("tcp") is not None and outputs.get("udp") is not None:
        host.listeners = parse_netstat_listeners(outputs["tcp"], "tcp") + parse_netstat_listeners(outputs["udp"], "udp")
    else:
        host.unread["listeners"] = "`netstat -an` failed"
    if outputs.get("scutil") is not None:
        host.dns_servers = parse_dns_servers(outputs["scutil"])
    if outputs.get("pf_info") is None:
        why = "pfctl needs root" if not is_root else "`pfctl -s info` failed"
        host.unread["pf"] = why
        host.unread["conntrack"] = f"pf's states limit: {why}"
    else:
        host.pf_enabled = parse_pf_enabled(outputs["pf_info"])
        host.pf_skip_lo0 = pf_skips_lo0(files.get("/etc/pf.conf"), outputs.get("pf_rules"))
        states = _STATES.search(outputs.get("pf_memory") or "")
        if host.pf_enabled and states:
            host.conntrack_max = int(states.group(1))
        elif not host.pf_enabled:
            host.unread["conntrack"] = "pf is disabled: no state table applies"
    if plists is not None:
        host.launchd_aliases = launchd_aliases(plists)
    return host


def _run(argv: list) -> Optional[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def gather() -> Host:
    """The facts of this Mac, read-only (pfctl only as root)."""
    is_root = os.geteuid() == 0
    outputs = {name: (_run(argv) if is_root or not root else None) for name, (argv, root) in COMMANDS.items()}
    files = {}
    for path in FILES:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                files[path] = handle.read()
        except OSError:
            continue
    plists = {}
    for path in sorted(glob.glob(LAUNCH_DAEMONS)):
        try:
            with open(path, "rb") as handle:
                plists[path] = handle.read()
        except OSError:
            continue
    return host_from(outputs, files, is_root=is_root, plists=plists, nofile=resource.getrlimit(resource.RLIMIT_NOFILE))

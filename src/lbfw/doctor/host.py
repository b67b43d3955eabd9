"""The host facts doctor reasons about: plain data the platform fact gatherers fill in
(`facts_linux`, `facts_macos`) and every check reads. None means "could not be read here"."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Listener:
    """A socket holding a local port: ``addr`` "0.0.0.0", "::" (IPv6 only), "*" (IPv6 and IPv4,
    a dual-stack `[::]` socket) or an address."""

    proto: str  # tcp | udp
    addr: str
    port: int
    process: Optional[str] = None

    def label(self) -> str:
        addr = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"{addr}:{self.port}/{self.proto}"


@dataclass(frozen=True)
class User:
    """Who will run the services: ``caps_bind`` is whether it may bind privileged ports by
    capability (None: unknown, e.g. another user whose service unit may grant it)."""

    name: str
    uid: int
    caps_bind: Optional[bool] = None


@dataclass
class Host:
    """Everything doctor knows about the host. ``platform`` is "linux", "macos" or what
    `platform.system()` said."""

    platform: str
    is_root: bool = False
    lo_name: str = "lo"
    lo_up: Optional[bool] = None
    lo_addrs: tuple = ()  # ("127.0.0.1/8", "::1/128")
    # addresses the kernel treats as local on loopback (Linux: `local` routes on lo in the
    # local table; macOS: lo0's own addresses, each alone). None: not read.
    local_nets: Optional[tuple] = None
    nonlocal_bind: Optional[bool] = None
    route_localnet: dict = field(default_factory=dict)
    port_range: Optional[tuple] = None  # (first, last) ephemeral ports
    reserved_ports: frozenset = frozenset()
    unprivileged_port_start: Optional[int] = None
    tcp_tw_reuse: Optional[int] = None
    time_wait_seconds: Optional[int] = None
    conntrack_max: Optional[int] = None  # nf_conntrack_max, or pf's states limit
    conntrack_name: str = "net.netfilter.nf_conntrack_max"
    listeners: Optional[tuple] = None  # Listener...
    nofile: Optional[tuple] = None  # RLIMIT_NOFILE (soft, hard) of this process
    files: dict = field(default_factory=dict)  # path -> text, or None when absent/unreadable
    pf_enabled: Optional[bool] = None  # macOS
    pf_skip_lo0: Optional[bool] = None
    launchd_aliases: Optional[tuple] = None  # macOS: addresses a LaunchDaemon adds to lo0 at boot
    dns_servers: Optional[tuple] = None  # macOS: the system resolver's (scutil --dns)
    unread: dict = field(default_factory=dict)  # fact -> why it could not be read

    def is_local(self, addr: str) -> Optional[bool]:
        """Whether ``addr`` can be bound here as far as the addresses and routes go."""
        if self.local_nets is None:
            return None
        ip = ipaddress.ip_address(addr)
        nets = (ipaddress.ip_network(net, strict=False) for net in self.local_nets)
        return any(net.version == ip.version and ip in net for net in nets)

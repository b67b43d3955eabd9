"""What the engine takes and gives besides flows: single packets for `Engine.walk_packet`, its
answer, the work counters, and the address helpers the walk shares. lbfw.analyze.engine
re-exports the public ones."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Optional

from ..results import Step
from .matchers import TCP, UDP
from .state import Range

EPHEMERAL = (32768, 60999)  # Linux' default ip_local_port_range: where a client's port lies
MAX_RUNS = 64  # branches explored per flow before giving up as unknown
MAX_DEPTH = 256  # jump depth (iptables' own limit is lower); beyond it: unknown
# Targets a reader may not know by name that never end a packet (they set a value or count it).
NEVER_ENDING = frozenset(("MARK", "CT", "NOTRACK", "SNPT", "DNPT", "SYNPROXY_LOG", "NFLOG", "ULOG", "LOG"))

LO4 = 0x7F000001
LO6 = 1

# --------------------------------------------------------------------------- public packet API


@dataclass
class Packet:
    """One packet for `Engine.walk_packet`. Addresses may be strings or integers; ports an int
    or an inclusive (lo, hi) range (a range the rules split gives *unknown*).

    ``ct_state`` is what conntrack says once it has seen the packet ("new", "established",
    "related", "invalid", "untracked"); chains that run before conntrack still see INVALID."""

    family: str = "ip"
    saddr: Any = "127.0.0.1"
    daddr: Any = "127.0.0.1"
    proto: Any = "tcp"
    sport: Any = EPHEMERAL
    dport: Any = 80
    iif: Optional[str] = None
    oif: Optional[str] = None
    ct_state: str = "new"
    ct_direction: Optional[str] = "original"
    ct_status: frozenset[str] = frozenset()
    tcp_flags: Optional[int] = None
    mark: int = 0
    name: str = "packet"


@dataclass
class PacketResult:
    """`walk_packet`'s answer: verdict "accept" | "drop" | "unknown", the path, the deciding step."""

    verdict: str
    steps: list[Step] = field(default_factory=list)
    deciding: Optional[Step] = None
    unknown: tuple[str, ...] = ()


@dataclass
class Stats:
    """Work counters (the scaling tests read them)."""

    rule_evals: int = 0
    runs: int = 0


# --------------------------------------------------------------------------- the engine


def _addr(family: str, value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(ipaddress.ip_address(str(value)))


def _rng(value: Any) -> Range:
    if isinstance(value, tuple):
        return (int(value[0]), int(value[1]))
    return (int(value), int(value))


def _proto_num(proto: Any) -> int:
    if isinstance(proto, int):
        return proto
    return {"tcp": TCP, "udp": UDP, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}[proto]


def is_loopback(family: str, addr: int) -> bool:
    return (addr >> 24) == 127 if family == "ip" else addr == LO6


def _fmt_addr(family: str, addr: int) -> str:
    return str(ipaddress.IPv4Address(addr) if family == "ip" else ipaddress.IPv6Address(addr))

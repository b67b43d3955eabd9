"""The state of one walk: a packet on its way through the hooks, the conntrack entry its flow
creates, and the run (one choice per undecidable point) it belongs to. Plain holders: the
engine (engine.py) decides what happens to them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from ..results import Step

Range = tuple[int, int]  # an inclusive (lo, hi) range of values
Endpoint = tuple[Range, Range]  # (address, port)
FixedCt = tuple[str, Optional[str], frozenset[str]]  # walk_packet's (state, direction, status)


class Pkt:
    """The engine's mutable view of a packet on its way through the hooks."""

    __slots__ = (
        "family",
        "saddr",
        "daddr",
        "l4proto",
        "sport",
        "dport",
        "iif",
        "oif",
        "ct_state",
        "ct_direction",
        "ct_status",
        "tcp_flags",
        "mark",
        "name",
        "client_side",
        "untracked",
        "attached",
        "creator",
        "fixed_ct",
        "hook",
        "ttl",
        "length",
        "length_range",
        "tcp_options",
        "mss",
        "sock",
        "uid",
        "gid",
        "conn",
        "counters",
        "caveats",
    )

    def __init__(
        self,
        family: str,
        saddr: Range,
        daddr: Range,
        l4proto: Range,
        sport: Range,
        dport: Range,
        tcp_flags: Optional[int],
        name: str,
        client_side: bool,
    ) -> None:
        self.family = family
        self.saddr = saddr
        self.daddr = daddr
        self.l4proto = l4proto
        self.sport = sport
        self.dport = dport
        self.iif: Optional[str] = None
        self.oif: Optional[str] = None
        self.ct_state = "invalid"  # no conntrack entry until the conntrack hook has run
        self.ct_direction: Optional[str] = None
        self.ct_status: frozenset[str] = frozenset()
        self.tcp_flags = tcp_flags
        self.mark: Range = (0, 0)
        self.name = name
        self.client_side = client_side
        self.untracked = False
        self.attached = False
        self.creator = False
        self.fixed_ct: Optional[FixedCt] = None  # walk_packet: the caller's conntrack view
        self.hook: Optional[str] = None
        # header fields and socket (packet.dress sets them for the packets of a flow)
        self.ttl = 64
        self.length: Optional[int] = None  # layer-3 total length; None: depends on the payload
        self.length_range: Optional[Range] = None  # then (lo, hi): the lengths of the payloads a first exchange carries
        self.tcp_options: frozenset[int] = frozenset()
        self.mss: Optional[int] = None
        self.sock: Optional[str] = None  # whose socket sent it: "client" | "server" | None (unknown)
        self.uid: Optional[int] = None  # the sending socket's owner; None: not known
        self.gid: Optional[int] = None
        self.conn: Optional[Conn] = None  # the Conn it is attached to (ct mark, helper)
        # the run's state: per-rule packet counters (statistic nth), recent lists
        self.counters: Optional[dict[object, int]] = None
        self.caveats: Optional[list[str]] = None  # the run's caveats list: runtime assumptions a match made


class Conn:
    """The one conntrack entry a flow creates (with its NAT bindings)."""

    __slots__ = (
        "creator_client_side",
        "seen_reply",
        "confirmed",
        "assured",
        "dnat",
        "snat",
        "manips_done",
        "tcp_state",
        "mark",
    )

    def __init__(self, creator_client_side: bool) -> None:
        self.creator_client_side = creator_client_side
        self.seen_reply = False
        self.confirmed = False
        self.assured = False
        self.dnat: Optional[tuple[Endpoint, Endpoint]] = None  # ((orig_addr, orig_port), (new_addr, new_port))
        self.snat: Optional[tuple[Endpoint, Endpoint]] = None
        self.manips_done: set[str] = set()
        self.tcp_state: Optional[str] = None  # "SS" SYN_SENT, "SR" SYN_RECV, "ES" ESTABLISHED
        self.mark: Range = (0, 0)  # the ct mark as a (lo, hi) range: (0, 0xffffffff) once unknown

    def status(self) -> frozenset[str]:
        out: set[str] = set()
        if self.confirmed:
            out.add("confirmed")
        if self.seen_reply:
            out.add("seen-reply")
        if self.assured:
            out.add("assured")
        if self.dnat:
            out.add("dnat")
        if self.snat:
            out.add("snat")
        return frozenset(out)


class GiveUp(Exception):
    """Too deep or a missing chain: the flow is unknown."""


class Run:
    """One deterministic execution along a vector of choices for the undecidable points."""

    __slots__ = (
        "prefix",
        "taken",
        "arities",
        "steps",
        "unknown",
        "conn",
        "deciding",
        "note",
        "counters",
        "caveats",
        "redirect",
    )

    def __init__(self, prefix: list[int]) -> None:
        self.prefix = prefix
        self.taken: list[int] = []
        self.arities: list[int] = []
        self.steps: list[Step] = []
        self.unknown: list[str] = []
        self.conn: Optional[Conn] = None
        self.deciding: Optional[Step] = None
        self.note = ""
        self.counters: dict[object, int] = {}  # statistic nth / numgen inc counters; sources a recent --set listed
        self.caveats: list[str] = []  # runtime assumptions the verdict rests on (a rate not exceeded ...)
        self.redirect: Optional[tuple[int, int]] = None  # (addr, port) the flow's destination NAT sent it to

    def decide(self, arity: int, texts: Iterable[str]) -> int:
        """Choose among ``arity`` branches at the next undecidable point (0 = the first run's)."""
        d = len(self.taken)
        choice = self.prefix[d] if d < len(self.prefix) else 0
        self.taken.append(choice)
        self.arities.append(arity)
        for t in texts:
            if t not in self.unknown:
                self.unknown.append(t)
        return choice

"""The state of one walk: a packet on its way through the hooks, the conntrack entry its flow
creates, and the run (one choice per undecidable point) it belongs to. Plain holders: the
engine (engine.py) decides what happens to them."""

from __future__ import annotations


class Pkt:
    """The engine's mutable view of a packet on its way through the hooks."""

    __slots__ = ("family", "saddr", "daddr", "l4proto", "sport", "dport", "iif", "oif", "ct_state",
                 "ct_direction", "ct_status", "tcp_flags", "mark", "name", "client_side", "untracked",
                 "attached", "creator", "fixed_ct", "hook", "ttl", "length", "length_range", "tcp_options", "mss",
                 "sock", "uid", "gid", "server", "conn", "counters", "caveats")

    def __init__(self, family, saddr, daddr, l4proto, sport, dport, tcp_flags, name, client_side):
        self.family = family
        self.saddr = saddr
        self.daddr = daddr
        self.l4proto = l4proto
        self.sport = sport
        self.dport = dport
        self.iif = None
        self.oif = None
        self.ct_state = "invalid"     # no conntrack entry until the conntrack hook has run
        self.ct_direction = None
        self.ct_status = frozenset()
        self.tcp_flags = tcp_flags
        self.mark = (0, 0)
        self.name = name
        self.client_side = client_side
        self.untracked = False
        self.attached = False
        self.creator = False
        self.fixed_ct = None          # walk_packet: the caller's conntrack view
        self.hook = None
        # header fields and socket (packet.dress sets them for the packets of a flow)
        self.ttl = 64
        self.length = None            # layer-3 total length; None: depends on the payload
        self.length_range = None      # then (lo, hi): the lengths of the payloads a first exchange carries
        self.tcp_options = frozenset()
        self.mss = None
        self.sock = None              # whose socket sent it: "client" | "server" | None (unknown)
        self.uid = None               # the sending socket's owner; None: not known
        self.gid = None
        self.server = None            # the server's packets: () -> its packet.User or None, asked when needed
        self.conn = None              # the Conn it is attached to (ct mark, helper)
        self.counters = None          # the run's state: per-rule packet counters (statistic nth), recent lists
        self.caveats = None           # the run's caveats list: runtime assumptions a match made


class Conn:
    """The one conntrack entry a flow creates (with its NAT bindings)."""

    __slots__ = ("creator_client_side", "seen_reply", "confirmed", "assured", "dnat", "snat",
                 "manips_done", "tcp_state", "mark")

    def __init__(self, creator_client_side):
        self.creator_client_side = creator_client_side
        self.seen_reply = False
        self.confirmed = False
        self.assured = False
        self.dnat = None   # ((orig_addr, orig_port), (new_addr, new_port))
        self.snat = None
        self.manips_done = set()
        self.tcp_state = None  # "SS" SYN_SENT, "SR" SYN_RECV, "ES" ESTABLISHED
        self.mark = (0, 0)     # the ct mark as a (lo, hi) range: (0, 0xffffffff) once unknown

    def status(self) -> frozenset:
        out = set()
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

    __slots__ = ("prefix", "taken", "arities", "steps", "unknown", "conn", "deciding", "note", "counters",
                 "caveats", "redirect")

    def __init__(self, prefix):
        self.prefix = prefix
        self.taken = []
        self.arities = []
        self.steps = []
        self.unknown = []
        self.conn = None
        self.deciding = None
        self.note = ""
        self.counters = {}       # statistic nth / numgen inc counters; sources a recent --set listed
        self.caveats = []        # runtime assumptions the verdict rests on (a rate not exceeded ...)
        self.redirect = None     # (addr, port) the flow's destination NAT sent it to

    def decide(self, arity: int, texts) -> int:
        """Choose among ``arity`` branches at the next undecidable point (0 = the first run's)."""
        d = len(self.taken)
        choice = self.prefix[d] if d < len(self.prefix) else 0
        self.taken.append(choice)
        self.arities.append(arity)
        for t in texts:
            if t not in self.unknown:
                self.unknown.append(t)
        return choice

"""The analysis engine: follow loopback packets through every netfilter hook, as the kernel does.

Pure: a `Ruleset` and a `Flow` in, a `FlowResult` out. Nothing here touches the system.

How the kernel runs a loopback connection (measured in private namespaces; DOMAIN.md):

* Every packet of a loopback flow goes OUTPUT (oif lo) -> POSTROUTING (oif lo) -> PREROUTING
  (iif lo) -> INPUT (iif lo). On each hook every base chain of every table (both backends,
  family ip/ip6 plus inet) runs in priority order. accept ends only that base chain; drop or
  reject ends the packet; the policy decides at the end of a base chain.
* Conntrack attaches at priority -200 on OUTPUT. Chains before it (raw, -300) see *no*
  conntrack entry: ``ct state`` is INVALID there for every packet (measured: raw OUTPUT
  `--ctstate INVALID` counted every packet). The entry stays attached across lo, so raw
  PREROUTING already sees NEW / ESTABLISHED, and `-j CT --notrack` / nft `notrack` in raw
  PREROUTING has no effect on locally generated traffic (measured: the rule counted every
  packet, INPUT still saw NEW/ESTABLISHED). Only a notrack before -200 on OUTPUT makes a packet
  UNTRACKED.
* nat chains run for the first packet of a connection only, and on lo only on OUTPUT (DNAT)
  and POSTROUTING (SNAT): the NAT bindings exist by the time the packet reaches PREROUTING and
  INPUT, so the nat chains there are not traversed (measured: their counters stayed at 0).
  Later packets are translated at the nat hook points: original-direction destinations at
  -100 on OUTPUT; reply sources are restored at +100 on POSTROUTING (measured: mangle OUTPUT
  and POSTROUTING saw the DNATed server address as the reply's source, PREROUTING and INPUT
  the original one).

Matches the model cannot decide are explored both ways (bounded); a flow is unknown only when
the branches disagree, and then the matches are named.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Optional

from ..model import IPTABLES_PRIORITY, NON_ENDING_TARGETS, Action, LazyRules, Ruleset, Table
from ..results import BLOCKED, DELIVERED, UNKNOWN, Flow, FlowResult, Step
from .matchers import NA, PORT_PROTOS, TCP, UDP, compile_match, element_matches, single_value

# TCP flag bits
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

EPHEMERAL = (32768, 60999)  # Linux' default ip_local_port_range: where a client's port lies
LOOPBACK_PATH = ("output", "postrouting", "prerouting", "input")
CONNTRACK_PRIO = -200
NAT_PRIO = {"prerouting": -100, "output": -100, "postrouting": 100, "input": 100}
DST_MANIP_HOOKS = ("prerouting", "output")
MAX_RUNS = 64          # branches explored per flow before giving up as unknown
MAX_DEPTH = 256        # jump depth (iptables' own limit is lower); beyond it: unknown

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
    ct_status: frozenset = frozenset()
    tcp_flags: Optional[int] = None
    mark: int = 0
    name: str = "packet"


@dataclass
class PacketResult:
    """`walk_packet`'s answer: verdict "accept" | "drop" | "unknown", the path, the deciding step."""

    verdict: str
    steps: list = field(default_factory=list)
    deciding: Optional[Step] = None
    unknown: tuple = ()


@dataclass
class Stats:
    """Work counters (the scaling tests read them)."""

    rule_evals: int = 0
    runs: int = 0


# --------------------------------------------------------------------------- internal packet state

class _Pkt:
    """The engine's mutable view of a packet on its way through the hooks."""

    __slots__ = ("family", "saddr", "daddr", "l4proto", "sport", "dport", "iif", "oif", "ct_state",
                 "ct_direction", "ct_status", "tcp_flags", "mark", "name", "client_side", "untracked",
                 "attached", "creator", "fixed_ct", "hook")

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


class _Conn:
    """The one conntrack entry a flow creates (with its NAT bindings)."""

    __slots__ = ("creator_client_side", "seen_reply", "confirmed", "assured", "dnat", "snat",
                 "manips_done", "tcp_state")

    def __init__(self, creator_client_side):
        self.creator_client_side = creator_client_side
        self.seen_reply = False
        self.confirmed = False
        self.assured = False
        self.dnat = None   # ((orig_addr, orig_port), (new_addr, new_port))
        self.snat = None
        self.manips_done = set()
        self.tcp_state = None  # "SS" SYN_SENT, "SR" SYN_RECV, "ES" ESTABLISHED

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


class _GiveUp(Exception):
    """Too deep or a missing chain: the flow is unknown."""


class _Run:
    """One deterministic execution along a vector of choices for the undecidable points."""

    __slots__ = ("prefix", "taken", "arities", "steps", "unknown", "conn", "deciding", "note")

    def __init__(self, prefix):
        self.prefix = prefix
        self.taken = []
        self.arities = []
        self.steps = []
        self.unknown = []
        self.conn = None
        self.deciding = None
        self.note = ""

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


# --------------------------------------------------------------------------- compiled rules

class _CRule:
    __slots__ = ("preds", "action", "rule", "index")

    def __init__(self, preds, action, rule, index):
        self.preds = preds
        self.action = action
        self.rule = rule
        self.index = index


class _Block:
    """Consecutive rules that each name one exact value of the same field (kube-proxy's
    `-d 10.96.0.10/32 -p tcp --dport 53 -j KUBE-SVC-...` runs): a dict finds the few rules
    whose value equals the packet's, the others are certainly false and are skipped."""

    __slots__ = ("attr", "family", "ports", "start", "end", "where")

    def __init__(self, attr, family, ports, start, end, where):
        self.attr = attr
        self.family = family
        self.ports = ports
        self.start = start
        self.end = end
        self.where = where

    def next_index(self, pkt, i: int) -> int:
        """The next rule position >= i worth evaluating (self.end: none in this block)."""
        if self.family is not None and pkt.family != self.family:
            return self.end
        if self.ports and pkt.l4proto[0] not in PORT_PROTOS:
            return self.end
        lo, hi = getattr(pkt, self.attr)
        if lo != hi:
            return i
        positions = self.where.get(lo)
        if not positions:
            return self.end
        k = bisect_left(positions, i)
        return positions[k] if k < len(positions) else self.end


_INDEXABLE = {
    "ip.daddr": ("daddr", "ip", False), "ip6.daddr": ("daddr", "ip6", False),
    "ip.saddr": ("saddr", "ip", False), "ip6.saddr": ("saddr", "ip6", False),
    "th.dport": ("dport", None, True),
}
MIN_BLOCK = 8


class _CChain:
    __slots__ = ("name", "chain", "rules", "blocks")

    def __init__(self, name, chain, rules, blocks):
        self.name = name
        self.chain = chain
        self.rules = rules
        self.blocks = blocks


def _exact_keys(rule) -> dict:
    keys = {}
    for m in rule.matches:
        if m.opaque or m.negate or not isinstance(m.field, str) or m.field not in _INDEXABLE:
            continue
        if len(m.values) != 1:
            continue
        v = m.values[0]
        lo, hi = v if isinstance(v, tuple) else (v, v)
        if lo == hi:
            keys[m.field] = int(lo)
    return keys


def _build_blocks(chain_rules) -> Optional[list]:
    if len(chain_rules) < MIN_BLOCK:
        return None
    return _blocks_of([_exact_keys(r) for r in chain_rules])


def _blocks_of(keys: list) -> Optional[list]:
    n = len(keys)
    if n < MIN_BLOCK:
        return None
    blocks = [None] * n
    found = False
    i = 0
    while i < n:
        best_field, best_end = None, i
        for f in keys[i]:
            j = i + 1
            while j < n and f in keys[j]:
                j += 1
            if j > best_end:
                best_field, best_end = f, j
        if best_field is not None and best_end - i >= MIN_BLOCK:
            where: dict = {}
            for k in range(i, best_end):
                where.setdefault(keys[k][best_field], []).append(k)
            attr, fam, ports = _INDEXABLE[best_field]
            block = _Block(attr, fam, ports, i, best_end, where)
            for k in range(i, best_end):
                blocks[k] = block
            found = True
            i = best_end
        else:
            i += 1
    return blocks if found else None


# --------------------------------------------------------------------------- the engine

def _addr(family: str, value) -> int:
    if isinstance(value, int):
        return value
    return int(ipaddress.ip_address(str(value)))


def _rng(value) -> tuple:
    if isinstance(value, tuple):
        return (int(value[0]), int(value[1]))
    return (int(value), int(value))


def _proto_num(proto) -> int:
    if isinstance(proto, int):
        return proto
    return {"tcp": TCP, "udp": UDP, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}[proto]


def is_loopback(family: str, addr: int) -> bool:
    return (addr >> 24) == 127 if family == "ip" else addr == LO6


def _fmt_addr(family: str, addr: int) -> str:
    return str(ipaddress.IPv4Address(addr) if family == "ip" else ipaddress.IPv6Address(addr))


class Engine:
    """Follows flows and packets through a ruleset. Build once, evaluate many flows."""

    def __init__(self, ruleset: Ruleset, max_runs: int = MAX_RUNS, udp_followup: bool = True):
        """``udp_followup``: a UDP flow also needs the client's next datagram (ESTABLISHED, original
        direction) to pass, as a resolver reusing its socket does. False: one datagram each way
        (what the sandbox probe sends)."""
        self.ruleset = ruleset
        self.udp_followup = udp_followup
        self.stats = Stats()
        self.max_runs = max_runs
        self._compiled: dict = {}
        self._match_cache: dict = {}   # equal matches (`-p tcp` a thousand times) compile once
        self._recent_set: Optional[set] = None
        self._hook_items: dict = {}

    # ----------------------------------------------------------------- compilation (lazy)

    def _chain(self, table: Table, chain) -> _CChain:
        key = id(chain)
        cc = self._compiled.get(key)
        if cc is None:
            # Rules are compiled when first evaluated: the chain index skips most of a big chain.
            entries = chain.rules
            if isinstance(entries, LazyRules) and entries.unbuilt_count():
                # Lines the reader left unbuilt (kube-proxy's 10,000-rule KUBE-SERVICES) are
                # indexed by the keys the LazyRules gives and built only when a packet reaches
                # them: such a _CRule holds the chain in ``rule`` and no action until _compile_rule.
                built = [entries.built_at(idx) for idx in range(len(entries))]
                rules = [_CRule(None, r.action, r, idx) if r is not None else _CRule(None, None, chain, idx)
                         for idx, r in enumerate(built)]
                cc = _CChain(chain.name, chain, rules,
                             _blocks_of([_exact_keys(r) if r is not None else entries.index_keys(idx)
                                         for idx, r in enumerate(built)]))
            else:
                rules = [_CRule(None, rule.action, rule, idx) for idx, rule in enumerate(entries)]
                cc = _CChain(chain.name, chain, rules, _build_blocks(entries))
            self._compiled[key] = cc
        return cc

    def _compile_rule(self, table: Table, cr: _CRule) -> tuple:
        if cr.action is None:                      # unbuilt: cr.rule is its chain (see _chain)
            rule = cr.rule.rules[cr.index]
            cr.rule = rule
            cr.action = rule.action
        cache = self._match_cache
        sets = table.sets
        preds = []
        for m in cr.rule.matches:
            key = (m, id(sets)) if m.set_name else m
            try:
                compiled = cache.get(key)
            except TypeError:  # an unhashable value shape: compile without the cache
                compiled = None
                key = None
            if compiled is None:
                compiled = compile_match(m, sets)
                if key is not None:
                    cache[key] = compiled
            preds.append(compiled)
        preds = tuple(preds)
        if any(m.opaque and isinstance(m.field, str) and m.field.startswith(("fib ", "tcp flags"))
               for m in cr.rule.matches):
            preds = tuple(_nft_opaque(m, p) if m.opaque else p for m, p in zip(cr.rule.matches, preds)) \
                + preds[len(cr.rule.matches):]
        if any(m.field == "m.recent" for m in cr.rule.matches):
            preds = self._recent(cr.rule, preds)
        if "-m rpfilter" in (cr.rule.text or ""):
            preds = _rpfilter(cr.rule, preds)
        cr.preds = preds
        return preds

    def _recent(self, rule, preds) -> tuple:
        """`-m recent`: lists start empty and only `--set` rules fill them (or an admin writing to
        /proc/net/xt_recent). A --rcheck/--update/--remove of a list no rule of the ruleset sets
        is false; of a list some rule sets, it depends on past traffic: unknown."""
        if self._recent_set is None:
            names = set()
            for table in self.ruleset.tables:
                for chain in table.chains.values():
                    for r in chain.rules:
                        for m in r.matches:
                            if m.field == "m.recent" and "--set" in m.text.split():
                                names.add(_recent_name(m.text))
            self._recent_set = names
        out = []
        for (pred, text), m in zip(preds, rule.matches):
            if m.field == "m.recent":
                words = m.text.split()
                negate = m.negate or "!" in words
                if "--set" in words:
                    value = not negate
                    out.append(((lambda pkt, v=value: v), text))
                    continue
                if _recent_name(m.text) not in self._recent_set:
                    value = negate
                    out.append(((lambda pkt, v=value: v), text))
                    continue
            out.append((pred, text))
        out += list(preds[len(rule.matches):])
        return tuple(out)

    def _items(self, hook: str, family: str) -> list:
        """What runs on ``hook`` for ``family``, in order: base chains, the conntrack point and
        the nat point (all nat base chains of the hook, run together as the kernel's nat core
        does, at its fixed priority)."""
        key = (hook, family)
        items = self._hook_items.get(key)
        if items is not None:
            return items
        entries = []
        nat_chains = []
        order = 0
        for table in self.ruleset.tables:
            if table.family not in (family, "inet"):
                continue
            for chain in table.chains.values():
                if chain.hook != hook:
                    continue
                order += 1
                prio = _priority(table, chain, hook)
                if _is_nat(table, chain):
                    nat_chains.append((prio, order, table, chain))
                else:
                    entries.append((prio, 1, order, "chain", (table, chain)))
        if hook in DST_MANIP_HOOKS:
            entries.append((CONNTRACK_PRIO, 0, 0, "ct", None))
        if hook in NAT_PRIO:
            nat_chains.sort(key=lambda e: (e[0], e[1]))
            entries.append((NAT_PRIO[hook], 0, 1, "nat", [(t, c) for _, _, t, c in nat_chains]))
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        items = [(kind, prio, payload) for prio, _, _, kind, payload in entries]
        self._hook_items[key] = items
        return items

    # ----------------------------------------------------------------- exploration

    def _explore(self, once):
        """Run ``once(run)`` over the choice vectors of undecidable points, depth first, stopping
        when two outcomes disagree or after max_runs. Returns (outcome, runs, complete)."""
        pending = [[]]
        runs = []
        outcomes = set()
        while pending:
            if len(runs) >= self.max_runs:
                return UNKNOWN, runs, False
            prefix = pending.pop()
            run = _Run(prefix)
            try:
                outcome = once(run)
            except _GiveUp as err:
                run.note = str(err)
                if str(err) not in run.unknown:
                    run.unknown.append(str(err))
                outcome = UNKNOWN
            self.stats.runs += 1
            runs.append(run)
            outcomes.add(outcome)
            if len(outcomes) > 1 or outcome == UNKNOWN:
                return UNKNOWN, runs, False
            for d in range(len(run.taken) - 1, len(prefix) - 1, -1):
                for alt in range(run.arities[d] - 1, 0, -1):
                    pending.append(run.taken[:d] + [alt])
        return outcomes.pop(), runs, True

    def _unknown_texts(self, runs) -> tuple:
        texts = []
        for run in runs:
            for t in run.unknown:
                if t not in texts:
                    texts.append(t)
        if len(runs) >= self.max_runs:
            texts.append(f"more than {self.max_runs} undecidable branches: gave up")
        return tuple(texts)

    # ----------------------------------------------------------------- flows

    def evaluate(self, flow: Flow) -> FlowResult:
        """Is this loopback flow delivered, blocked, or unknown (naming the undecidable matches)?"""
        family = "ip6" if ":" in flow.server else "ip"
        server = _addr(family, flow.server)
        if flow.client is not None:
            client = _addr(family, flow.client)
        elif is_loopback(family, server):
            client = LO4 if family == "ip" else LO6
        else:
            client = server  # the host's own address: the kernel picks it as the source
        proto = _proto_num(flow.proto)

        def once(run):
            return self._flow_once(run, family, client, server, proto, flow.port)

        outcome, runs, _ = self._explore(once)
        first = runs[0]
        unknown = ()
        if outcome == UNKNOWN:
            unknown = self._unknown_texts(runs)
        deciding = first.deciding if outcome == BLOCKED else None
        return FlowResult(flow=flow, verdict=outcome, steps=list(first.steps), deciding=deciding,
                          unknown=unknown, client_addr=_fmt_addr(family, client))

    def _flow_once(self, run: _Run, family, client, server, proto, port) -> str:
        tcp = proto == TCP
        req = _Pkt(family, (client, client), (server, server), (proto, proto), EPHEMERAL, (port, port),
                   SYN if tcp else None, "request", True)
        first = (req.saddr, req.sport, req.daddr, req.dport)
        verdict = self._through(run, req, LOOPBACK_PATH)
        if verdict != "accept":
            return BLOCKED if verdict == "drop" else UNKNOWN
        # The server answers from where the request arrived (after any DNAT).
        rep = _Pkt(family, req.daddr, req.saddr, req.l4proto, req.dport, req.sport,
                   (SYN | ACK) if tcp else None, "reply", False)
        rep_first = (rep.saddr, rep.sport, rep.daddr, rep.dport)
        verdict = self._through(run, rep, LOOPBACK_PATH)
        if verdict != "accept":
            return BLOCKED if verdict == "drop" else UNKNOWN
        if not tcp and not self.udp_followup:
            return DELIVERED
        ack = _Pkt(family, first[0], first[2], req.l4proto, first[1], first[3],
                   ACK if tcp else None, "ack", True)
        verdict = self._through(run, ack, LOOPBACK_PATH)
        if verdict != "accept":
            return BLOCKED if verdict == "drop" else UNKNOWN
        if tcp:
            # The server's answer after the handshake. Usually the reply's twin, but not when the
            # request was UNTRACKED: the SYN-ACK is then INVALID (conntrack will not pick a
            # connection up from a SYN-ACK) while this packet is picked up as NEW (measured).
            answer = _Pkt(family, rep_first[0], rep_first[2], req.l4proto, rep_first[1], rep_first[3],
                          ACK | PSH, "answer", False)
            verdict = self._through(run, answer, LOOPBACK_PATH)
            if verdict != "accept":
                return BLOCKED if verdict == "drop" else UNKNOWN
        return DELIVERED

    # ----------------------------------------------------------------- single packets

    def walk_packet(self, packet: Packet, path=("prerouting", "input")) -> PacketResult:
        """Follow one packet through ``path`` (hook names). The packet's iif is used on
        prerouting/input/forward, its oif on output/forward/postrouting."""
        family = packet.family
        base = _Pkt(family, _rng(_addr(family, packet.saddr)) if not isinstance(packet.saddr, tuple)
                    else packet.saddr,
                    _rng(_addr(family, packet.daddr)) if not isinstance(packet.daddr, tuple) else packet.daddr,
                    _rng(_proto_num(packet.proto)), _rng(packet.sport), _rng(packet.dport),
                    packet.tcp_flags if packet.tcp_flags is not None
                    else (None if _proto_num(packet.proto) != TCP else SYN if packet.ct_state == "new" else ACK),
                    packet.name, True)
        base.mark = (packet.mark, packet.mark)
        base.fixed_ct = (packet.ct_state, packet.ct_direction, frozenset(packet.ct_status))
        iif, oif = packet.iif, packet.oif

        def once(run):
            pkt = _Pkt(base.family, base.saddr, base.daddr, base.l4proto, base.sport, base.dport,
                       base.tcp_flags, base.name, True)
            pkt.mark = base.mark
            pkt.fixed_ct = base.fixed_ct
            if packet.ct_state == "untracked":
                pkt.untracked = True
            if not any(h in DST_MANIP_HOOKS for h in path):
                self._conntrack(run, pkt)  # the path starts after conntrack (e.g. INPUT alone)
            v = self._through(run, pkt, tuple(path), ifaces=(iif, oif))
            return {"accept": "accept", "drop": "drop"}.get(v, UNKNOWN)

        outcome, runs, _ = self._explore(once)
        first = runs[0]
        unknown = ()
        if outcome == UNKNOWN:
            unknown = self._unknown_texts(runs)
        return PacketResult(verdict=outcome, steps=list(first.steps),
                            deciding=first.deciding if outcome == "drop" else None, unknown=unknown)

    # ----------------------------------------------------------------- hooks

    def _through(self, run: _Run, pkt: _Pkt, path, ifaces=None) -> str:
        """Take the packet through the hooks of ``path``: "accept", "drop" or "leaves"."""
        for hook in path:
            pkt.hook = hook
            if ifaces is None:  # loopback
                if hook in ("output", "postrouting"):
                    pkt.iif, pkt.oif = None, "lo"
                else:
                    pkt.iif, pkt.oif = "lo", None
            else:
                iif, oif = ifaces
                pkt.iif = iif if hook in ("prerouting", "input", "forward") else None
                pkt.oif = oif if hook in ("output", "postrouting", "forward") else None
            for kind, prio, payload in self._items(hook, pkt.family):
                if kind == "ct":
                    if not pkt.attached:
                        self._conntrack(run, pkt)
                    continue
                if kind == "nat":
                    if self._nat_point(run, pkt, hook, payload) == "drop":
                        return "drop"
                    continue
                table, chain = payload
                if self._base_chain(run, pkt, hook, table, chain) == "drop":
                    return "drop"
            if hook == "postrouting" and run.conn is not None and pkt.attached and not pkt.untracked:
                run.conn.confirmed = True  # nf_confirm runs last on POSTROUTING
                self._refresh(run, pkt)
            if hook == "output" and ifaces is None and not is_loopback(pkt.family, pkt.daddr[0]):
                if not is_loopback(pkt.family, pkt.saddr[0]) and pkt.daddr[0] == pkt.saddr[0]:
                    continue  # the host's own address: still over lo
                raise _GiveUp(f"nat sends the {pkt.name} to {_fmt_addr(pkt.family, pkt.daddr[0])}, "
                              "off loopback")
        return "accept"

    def _conntrack(self, run: _Run, pkt: _Pkt) -> None:
        pkt.attached = True
        if pkt.untracked:
            pkt.ct_state, pkt.ct_direction, pkt.ct_status = "untracked", None, frozenset()
            return
        if pkt.fixed_ct is not None:
            pkt.ct_state, pkt.ct_direction, pkt.ct_status = pkt.fixed_ct
            if pkt.ct_state == "new":
                run.conn = _Conn(pkt.client_side)
                pkt.creator = True
            return
        conn = run.conn
        tcp = pkt.l4proto[0] == TCP and pkt.tcp_flags is not None
        kind = _tcp_kind(pkt.tcp_flags) if tcp else None
        if conn is None:
            if kind == "synack":
                # conntrack will not pick a connection up from a SYN-ACK: INVALID, no entry
                self._invalid(pkt)
                return
            conn = run.conn = _Conn(pkt.client_side)
            # a SYN opens SYN_SENT; a lone ACK is picked up mid-stream (nf_conntrack_tcp_loose)
            conn.tcp_state = "SS" if kind == "syn" else "ES"
            pkt.creator = True
            pkt.ct_state, pkt.ct_direction = "new", "original"
            pkt.ct_status = frozenset()
            return
        original = pkt.client_side == conn.creator_client_side
        if tcp:
            # nf_conntrack_proto_tcp's state table, for the packets a flow sends
            state = conn.tcp_state
            if original:
                if kind == "ack":
                    if state == "SS":
                        self._invalid(pkt)  # an ACK before conntrack saw the SYN-ACK
                        return
                    conn.tcp_state = "ES"
            else:
                if kind == "synack" and state == "SS":
                    conn.tcp_state = "SR"
                elif kind == "syn":
                    self._invalid(pkt)
                    return
        if original:
            pkt.ct_direction = "original"
            pkt.ct_state = "established" if conn.seen_reply else "new"
            if conn.seen_reply and tcp:
                conn.assured = True
        else:
            conn.seen_reply = True
            pkt.ct_direction = "reply"
            pkt.ct_state = "established"
        pkt.ct_status = conn.status()

    @staticmethod
    def _invalid(pkt: _Pkt) -> None:
        pkt.ct_state, pkt.ct_direction, pkt.ct_status = "invalid", None, frozenset()

    def _refresh(self, run: _Run, pkt: _Pkt) -> None:
        if run.conn is not None and pkt.fixed_ct is None and pkt.attached and not pkt.untracked \
                and pkt.ct_state != "invalid":
            pkt.ct_status = run.conn.status()

    def _nat_point(self, run: _Run, pkt: _Pkt, hook: str, chains) -> str:
        if pkt.untracked or not pkt.attached or run.conn is None or pkt.ct_state == "invalid":
            return "accept"
        conn = run.conn
        manip = "dst" if hook in DST_MANIP_HOOKS else "src"
        if pkt.creator and pkt.ct_state == "new" and manip not in conn.manips_done:
            for table, chain in chains:
                verdict = self._base_chain(run, pkt, hook, table, chain, nat=True)
                if verdict == "drop":
                    return "drop"
                if manip in conn.manips_done:
                    break  # a binding was made: the nat core stops here
            conn.manips_done.add(manip)
            return "accept"
        original = pkt.client_side == conn.creator_client_side
        if manip == "dst":
            if original and conn.dnat:
                pkt.daddr, pkt.dport = conn.dnat[1]
            elif not original and conn.snat:
                pkt.daddr, pkt.dport = conn.snat[0]
        else:
            if original and conn.snat:
                pkt.saddr, pkt.sport = conn.snat[1]
            elif not original and conn.dnat:
                pkt.saddr, pkt.sport = conn.dnat[0]
        return "accept"

    def _bind(self, run: _Run, pkt: _Pkt, hook: str, action) -> str:
        """A NAT target in a nat chain: make the binding, translate the packet. Returns a note."""
        conn = run.conn
        if conn is None:
            return "no conntrack entry: nat ignored"
        kind = action.kind
        manip = "dst" if hook in DST_MANIP_HOOKS else "src"
        if kind in ("dnat", "redirect") and manip == "dst":
            if kind == "redirect":
                addr = LO4 if pkt.family == "ip" else LO6
                if hook == "prerouting" and pkt.iif not in (None, "lo"):
                    raise _GiveUp(f"REDIRECT on {pkt.iif}: the interface's address is not known")
            else:
                addr = action.to_addr if action.to_addr is not None else pkt.daddr[0]
            new = ((addr, addr), (action.to_port, action.to_port) if action.to_port is not None else pkt.dport)
            conn.dnat = ((pkt.daddr, pkt.dport), new)
            pkt.daddr, pkt.dport = new
            conn.manips_done.add("dst")
        elif kind in ("snat", "masquerade") and manip == "src":
            if kind == "masquerade":
                if pkt.oif != "lo":
                    raise _GiveUp(f"MASQUERADE on {pkt.oif}: the interface's address is not known")
                addr = LO4 if pkt.family == "ip" else LO6
            else:
                addr = action.to_addr if action.to_addr is not None else pkt.saddr[0]
            new = ((addr, addr), (action.to_port, action.to_port) if action.to_port is not None else pkt.sport)
            conn.snat = ((pkt.saddr, pkt.sport), new)
            pkt.saddr, pkt.sport = new
            conn.manips_done.add("src")
        else:
            return f"{kind} does nothing on {hook}"
        self._refresh(run, pkt)
        return f"{kind} to {_fmt_addr(pkt.family, (pkt.daddr if manip == 'dst' else pkt.saddr)[0])}"

    # ----------------------------------------------------------------- chains

    def _step(self, run, pkt, hook, table, chain_name, verdict, rule=None, origin=None, note=""):
        step = Step(packet=pkt.name, hook=hook, table=table.name, family=table.family, chain=chain_name,
                    verdict=verdict, rule=rule, origin=origin if origin is not None
                    else (rule.origin if rule is not None else None), note=note)
        run.steps.append(step)
        return step

    def _base_chain(self, run: _Run, pkt: _Pkt, hook: str, table: Table, chain, nat: bool = False) -> str:
        """Run one base chain: "accept" (this chain is done) or "drop" (the packet is)."""
        stats = self.stats
        frames = []
        cc = self._chain(table, chain)
        i = 0
        while True:
            rules = cc.rules
            n = len(rules)
            if i < n and cc.blocks is not None:
                block = cc.blocks[i]
                if block is not None:
                    j = block.next_index(pkt, i)
                    if j >= block.end:
                        i = block.end
                        continue
                    i = j
            if i >= n:
                if frames:
                    cc, i = frames.pop()
                    continue
                return self._policy(run, pkt, hook, table, chain)
            cr = rules[i]
            stats.rule_evals += 1
            matched = True
            unk = None
            preds = cr.preds
            if preds is None:
                preds = self._compile_rule(table, cr)
            for pred, text in preds:
                r = pred(pkt)
                if r is False:
                    matched = False
                    break
                if r is None:
                    if unk is None:
                        unk = [text]
                    else:
                        unk.append(text)
            if not matched:
                i += 1
                continue
            rule = cr.rule
            if unk is not None:
                action = cr.action
                if action.kind == "continue" and action.set_mark is None and not rule.before:
                    i += 1  # LOG, counters...: matching or not, nothing changes
                    continue
                if run.decide(2, unk) == 0:
                    self._step(run, pkt, hook, table, cc.name, "unknown", rule,
                               note="cannot decide " + "; ".join(unk) + ": this branch assumes no match")
                    i += 1
                    continue
                self._step(run, pkt, hook, table, cc.name, "unknown", rule,
                           note="cannot decide " + "; ".join(unk) + ": this branch assumes a match")
            for extra in rule.before:
                self._side_effect(pkt, extra)
            action = cr.action
            kind = action.kind
            if kind == "vmap":
                try:
                    action = self._vmap(run, pkt, table, action, rule)
                except (TypeError, ValueError, IndexError, AttributeError):
                    action = Action("unknown", target="vmap")  # entries of a shape we do not know
                if action is None:
                    i += 1
                    continue
                kind = action.kind
            if kind == "unknown":
                kind = self._unknown_target(run, action, rule)
            elif kind == "queue":
                kind = ("accept", "drop")[run.decide(2, [rule.text or f"queue {action.target}"])]
            if kind == "accept":
                self._step(run, pkt, hook, table, cc.name, "accept", rule)
                return "accept"
            if kind in ("drop", "reject"):
                run.deciding = self._step(run, pkt, hook, table, cc.name, kind, rule)
                return "drop"
            if kind in ("jump", "goto"):
                target = table.chains.get(action.target)
                if target is None:
                    raise _GiveUp(f"{rule.text or kind}: chain {action.target} does not exist")
                self._step(run, pkt, hook, table, cc.name, kind, rule, note=action.target)
                if kind == "jump":
                    frames.append((cc, i + 1))
                    if len(frames) > MAX_DEPTH:
                        raise _GiveUp(f"{rule.text}: jumps nest deeper than {MAX_DEPTH}")
                cc = self._chain(table, target)
                i = 0
                continue
            if kind == "return":
                self._step(run, pkt, hook, table, cc.name, "return", rule)
                if frames:
                    cc, i = frames.pop()
                    continue
                return self._policy(run, pkt, hook, table, chain)
            if kind in ("dnat", "redirect", "snat", "masquerade"):
                if not nat:
                    # nft allows nat statements in nat chains only; elsewhere they are not reached
                    i += 1
                    continue
                note = self._bind(run, pkt, hook, action)
                self._step(run, pkt, hook, table, cc.name, kind, rule, note=note)
                return "accept"
            if kind == "notrack":
                if not pkt.attached:
                    pkt.untracked = True
                    pkt.ct_state = "untracked"
                    self._step(run, pkt, hook, table, cc.name, "notrack", rule)
                else:
                    self._step(run, pkt, hook, table, cc.name, "notrack", rule,
                               note="no effect: the packet already has its conntrack entry")
                i += 1
                continue
            # continue: MARK, LOG, CT ..., counters
            self._side_effect(pkt, action)
            i += 1

    def _side_effect(self, pkt: _Pkt, action) -> None:
        if action.set_mark is not None:
            value, mask = action.set_mark
            mark = pkt.mark[0]
            if mask is None:
                mark = value
            else:
                mark = (mark & ~mask & 0xFFFFFFFF) ^ value
            pkt.mark = (mark, mark)

    def _unknown_target(self, run: _Run, action, rule) -> str:
        name = (action.target or "").upper()
        if name in NON_ENDING_TARGETS:
            return "continue"
        text = rule.text or f"-j {action.target}"
        return ("continue", "accept", "drop")[run.decide(3, [text])]

    def _vmap(self, run: _Run, pkt: _Pkt, table: Table, action, rule):
        """The verdict a map picks for this packet, or None (no entry: the rule continues)."""
        entries = action.vmap
        if not entries and action.set_name:
            named = table.sets.get(action.set_name)
            if named is None or not named.known:
                return Action("unknown", target=f"vmap @{action.set_name}")
            entries = named.elements
        key = action.vmap_field
        fields = key if isinstance(key, tuple) else (key,)
        pvals = []
        for f in fields:
            v = single_value(pkt, f)
            if v is NA:
                return None
            if v is None:
                pvals = None
                break
            pvals.append(v)
        options = []
        certain = None
        if pvals is not None:
            for entry in entries:
                value = entry.value if isinstance(key, tuple) else (entry.value,)
                r = element_matches(fields, value, pvals)
                if r:
                    certain = entry.action
                    break
                if r is None:
                    options.append(entry.action)
        else:
            options = [e.action for e in entries]
        if certain is not None and not options:
            return certain
        if certain is None and not options:
            return None
        choices = options + ([certain] if certain is not None else [None])
        pick = run.decide(len(choices), [rule.text or "verdict map"])
        return choices[pick]

    def _policy(self, run: _Run, pkt: _Pkt, hook: str, table: Table, chain) -> str:
        policy = (chain.policy or "accept").lower()
        if policy == "drop":
            run.deciding = self._step(run, pkt, hook, table, chain.name, "policy-drop", origin=chain.origin)
            return "drop"
        self._step(run, pkt, hook, table, chain.name, "policy-accept", origin=chain.origin)
        return "accept"


_RPFILTER_OPTIONS = ("m.rpfilter", "opt.invert", "opt.loose", "opt.validmark", "opt.accept-local")


def _recent_name(text: str) -> str:
    words = text.split()
    if "--name" in words:
        k = words.index("--name")
        if k + 1 < len(words):
            return words[k + 1]
    return "DEFAULT"


def _rpfilter(rule, preds) -> tuple:
    """`-m rpfilter [--invert]`: the kernel lets every packet that came in on loopback pass the
    reverse-path test (xt_rpfilter: rpfilter_is_loopback -> true ^ invert); elsewhere it
    depends on routes lbfw does not know."""
    invert = "--invert" in rule.text.split()
    kept = tuple((p, t) for (p, t), m in zip(preds, rule.matches)
                 if not (m.opaque and m.field in _RPFILTER_OPTIONS))

    def rpfilter(pkt):
        if pkt.iif == "lo":
            return not invert
        return None
    return kept + ((rpfilter, "-m rpfilter" + (" --invert" if invert else "")),)


_TCP_FLAG_BITS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
                  "ecn": 0x40, "cwr": 0x80}


def _flag_bits(text: str) -> Optional[int]:
    value = 0
    for word in text.strip("() ").replace("|", ",").split(","):
        word = word.strip()
        if not word:
            continue
        bit = _TCP_FLAG_BITS.get(word)
        if bit is None:
            return None
        value |= bit
    return value


def _nft_opaque(match, compiled) -> tuple:
    """Two nft matches the model keeps opaque but the kernel decides on lo:

    * `fib saddr [. mark] . iif oif missing` (firewalld's and the nft wiki's reverse-path
      filter): on PREROUTING the kernel answers lo itself for packets that came in on lo
      (nft_fib4_eval / nft_fib6_eval: nft_fib_is_loopback), so `missing` is false and `exists`
      true there; elsewhere it needs the routes: unknown.
    * `tcp flags & MASK == COMP` (and `!=`): the flags of the packet, false for non-TCP.
    """
    pred, text = compiled
    field = match.field
    words = match.text.split()
    if field.startswith("fib ") and field.endswith((" oif", " oifname")) and words:
        last = words[-1]
        if last in ("false", "0", "true", "exists", "missing"):
            exists_wanted = last in ("true", "exists")
            negate = match.negate or (len(words) >= 2 and words[-2] == "!=")

            def fib(pkt, want=exists_wanted, negate=negate):
                if pkt.hook == "prerouting" and pkt.iif == "lo":
                    return want != negate
                return None
            return (fib, text)
        return compiled
    if field.startswith("tcp flags & "):
        mask = _flag_bits(field[len("tcp flags & "):])
        rest = match.text[len(field):].split()
        if mask is None or len(rest) != 2 or rest[0] not in ("==", "!="):
            return compiled
        comp = _flag_bits(rest[1])
        if comp is None:
            return compiled
        equal = rest[0] == "=="

        def flags(pkt, mask=mask, comp=comp, equal=equal):
            if pkt.l4proto[0] != TCP or pkt.tcp_flags is None:
                return False
            return ((pkt.tcp_flags & mask) == comp) == equal
        return (flags, text)
    return compiled


def _tcp_kind(flags: int) -> str:
    if flags & SYN:
        return "synack" if flags & ACK else "syn"
    return "ack"


def _priority(table: Table, chain, hook: str) -> int:
    if chain.priority is not None:
        return int(chain.priority)
    prio = IPTABLES_PRIORITY.get(table.name, 0)
    if isinstance(prio, dict):
        return prio.get(hook, 0)
    return prio


def _is_nat(table: Table, chain) -> bool:
    if chain.type is not None:
        return chain.type == "nat"
    return table.syntax == "iptables" and table.name == "nat"


__all__ = ["Engine", "Packet", "PacketResult", "Stats", "EPHEMERAL", "LOOPBACK_PATH", "is_loopback"]

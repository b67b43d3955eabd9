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
from dataclasses import dataclass, field
from typing import Any, Optional

from ..model import NON_ENDING_TARGETS, Action, Ruleset, Table
from ..results import BLOCKED, DELIVERED, REDIRECTED, UNKNOWN, Flow, FlowResult, Step
from .compile import Compiler
from .marks import apply_statement, changes_packet
from .hooks import DST_MANIP_HOOKS, LOOPBACK_PATH, HookOrder
from .matchers import NA, TCP, UDP, element_matches, single_value
from .packet import DEFAULT_TTL, User, dress
from .state import Conn, GiveUp, Pkt, Run
from .users import UserSweep

# TCP flag bits
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

EPHEMERAL = (32768, 60999)  # Linux' default ip_local_port_range: where a client's port lies
MAX_RUNS = 64          # branches explored per flow before giving up as unknown
MAX_DEPTH = 256        # jump depth (iptables' own limit is lower); beyond it: unknown
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

    def __init__(self, ruleset: Ruleset, max_runs: int = MAX_RUNS, udp_followup: bool = True,
                 ttl: int = DEFAULT_TTL):
        """``udp_followup``: a UDP flow also needs the client's next datagram (ESTABLISHED, original
        direction) to pass, as a resolver reusing its socket does. False: one datagram each way
        (what the sandbox probe sends). ``ttl``: the host's default TTL / hop limit."""
        self.ruleset = ruleset
        self.udp_followup = udp_followup
        self.ttl = ttl
        self._users = UserSweep(ruleset)
        self._server: Any = False       # the server's User (packet.SERVER_CAVEAT), found when first needed
        self.stats = Stats()
        self.max_runs = max_runs
        self._compiler = Compiler(ruleset)
        self._hooks = HookOrder(ruleset)

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
            run = Run(prefix)
            try:
                outcome = once(run)
            except GiveUp as err:
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
        """Is this loopback flow delivered, blocked, redirected, or unknown (naming the undecidable
        matches)? A flow without a user that owner matches decide is answered per user (by_user)."""
        user = User(flow.uid, flow.gid) if flow.user is not None else None
        result = self._evaluate(flow, user)
        if (result.verdict == UNKNOWN and flow.user is None
                and self._compiler.owner_texts.intersection(result.unknown)):
            return self._users.sweep(flow, result, self._evaluate)
        return result

    def _evaluate(self, flow: Flow, user: Optional[User]) -> FlowResult:
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
            return self._flow_once(run, family, client, server, proto, flow.port, user)

        outcome, runs, _ = self._explore(once)
        first = runs[0]
        unknown = ()
        if outcome == UNKNOWN:
            unknown = self._unknown_texts(runs)
        deciding = first.deciding if outcome == BLOCKED else None
        redirected_to = None
        if outcome == REDIRECTED and first.redirect is not None:
            addr, port = first.redirect
            shown = _fmt_addr(family, addr)
            redirected_to = f"[{shown}]:{port}" if family == "ip6" else f"{shown}:{port}"
        caveats = []
        for run in runs:
            caveats.extend(c for c in run.caveats if c not in caveats)
        return FlowResult(flow=flow, verdict=outcome, steps=list(first.steps), deciding=deciding,
                          unknown=unknown, client_addr=_fmt_addr(family, client),
                          redirected_to=redirected_to, caveats=tuple(caveats))

    def _server_user(self) -> Optional[User]:
        """Who the server is taken to run as: a user no owner match names (packet.SERVER_CAVEAT)."""
        if self._server is False:
            self._server = self._users.others()
        return self._server

    def _packet(self, run: Run, user, family, saddr, daddr, l4proto, sport, dport, flags, name, client_side):
        pkt = Pkt(family, saddr, daddr, l4proto, sport, dport, flags, name, client_side)
        dress(pkt, user, self._server_user, self.ttl)
        pkt.counters = run.counters
        pkt.caveats = run.caveats
        return pkt

    def _flow_once(self, run: Run, family, client, server, proto, port, user) -> str:
        tcp = proto == TCP
        req = self._packet(run, user, family, (client, client), (server, server), (proto, proto), EPHEMERAL,
                           (port, port), SYN if tcp else None, "request", True)
        first = (req.saddr, req.sport, req.daddr, req.dport)
        verdict = self._through(run, req, LOOPBACK_PATH)
        if verdict != "accept":
            return _flow_verdict(verdict)
        # The server answers from where the request arrived (after any DNAT).
        rep = self._packet(run, user, family, req.daddr, req.saddr, req.l4proto, req.dport, req.sport,
                           (SYN | ACK) if tcp else None, "reply", False)
        rep_first = (rep.saddr, rep.sport, rep.daddr, rep.dport)
        verdict = self._through(run, rep, LOOPBACK_PATH)
        if verdict != "accept":
            return _flow_verdict(verdict)
        delivered = REDIRECTED if run.redirect is not None else DELIVERED
        if not tcp and not self.udp_followup:
            return delivered
        ack = self._packet(run, user, family, first[0], first[2], req.l4proto, first[1], first[3],
                           ACK if tcp else None, "ack", True)
        verdict = self._through(run, ack, LOOPBACK_PATH)
        if verdict != "accept":
            return _flow_verdict(verdict)
        if tcp:
            # The server's answer after the handshake. Usually the reply's twin, but not when the
            # request was UNTRACKED: the SYN-ACK is then INVALID (conntrack will not pick a
            # connection up from a SYN-ACK) while this packet is picked up as NEW (measured).
            answer = self._packet(run, user, family, rep_first[0], rep_first[2], req.l4proto, rep_first[1],
                                  rep_first[3], ACK | PSH, "answer", False)
            verdict = self._through(run, answer, LOOPBACK_PATH)
            if verdict != "accept":
                return _flow_verdict(verdict)
        return delivered

    # ----------------------------------------------------------------- single packets

    def walk_packet(self, packet: Packet, path=("prerouting", "input")) -> PacketResult:
        """Follow one packet through ``path`` (hook names). The packet's iif is used on
        prerouting/input/forward, its oif on output/forward/postrouting."""
        family = packet.family
        base = Pkt(family, _rng(_addr(family, packet.saddr)) if not isinstance(packet.saddr, tuple)
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
            pkt = Pkt(base.family, base.saddr, base.daddr, base.l4proto, base.sport, base.dport,
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

    def _through(self, run: Run, pkt: Pkt, path, ifaces=None) -> str:
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
            for kind, prio, payload in self._hooks.items(hook, pkt.family):
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
                if run.redirect is not None and pkt.name == "request":
                    return "leaves"   # DNAT to another host: the flow is redirected off the host
                raise GiveUp(f"nat sends the {pkt.name} to {_fmt_addr(pkt.family, pkt.daddr[0])}, "
                              "off loopback")
        return "accept"

    def _conntrack(self, run: Run, pkt: Pkt) -> None:
        pkt.attached = True
        try:
            self._track(run, pkt)
        finally:
            if not pkt.untracked and pkt.ct_state != "invalid":
                pkt.conn = run.conn

    def _track(self, run: Run, pkt: Pkt) -> None:
        if pkt.untracked:
            pkt.ct_state, pkt.ct_direction, pkt.ct_status = "untracked", None, frozenset()
            return
        if pkt.fixed_ct is not None:
            pkt.ct_state, pkt.ct_direction, pkt.ct_status = pkt.fixed_ct
            if pkt.ct_state == "new":
                run.conn = Conn(pkt.client_side)
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
            conn = run.conn = Conn(pkt.client_side)
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
    def _invalid(pkt: Pkt) -> None:
        pkt.ct_state, pkt.ct_direction, pkt.ct_status = "invalid", None, frozenset()

    def _refresh(self, run: Run, pkt: Pkt) -> None:
        if run.conn is not None and pkt.fixed_ct is None and pkt.attached and not pkt.untracked \
                and pkt.ct_state != "invalid":
            pkt.ct_status = run.conn.status()

    def _nat_point(self, run: Run, pkt: Pkt, hook: str, chains) -> str:
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

    def _bind(self, run: Run, pkt: Pkt, hook: str, action) -> str:
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
                    raise GiveUp(f"REDIRECT on {pkt.iif}: the interface's address is not known")
            else:
                addr = action.to_addr if action.to_addr is not None else pkt.daddr[0]
            new = ((addr, addr), (action.to_port, action.to_port) if action.to_port is not None else pkt.dport)
            if new != (pkt.daddr, pkt.dport) and new[1][0] == new[1][1]:
                run.redirect = (addr, new[1][0])
            conn.dnat = ((pkt.daddr, pkt.dport), new)
            pkt.daddr, pkt.dport = new
            conn.manips_done.add("dst")
        elif kind in ("snat", "masquerade") and manip == "src":
            if kind == "masquerade":
                if pkt.oif != "lo":
                    raise GiveUp(f"MASQUERADE on {pkt.oif}: the interface's address is not known")
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

    def _base_chain(self, run: Run, pkt: Pkt, hook: str, table: Table, chain, nat: bool = False) -> str:
        """Run one base chain: "accept" (this chain is done) or "drop" (the packet is)."""
        stats = self.stats
        compiler = self._compiler
        frames = []
        cc = compiler.chain(table, chain)
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
                preds = compiler.compile_rule(table, cr)
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
                if action.kind == "continue" and not changes_packet(action) and not rule.before:
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
                apply_statement(pkt, extra)
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
                text = rule.text or f"queue {action.target}"
                words = ("depends on the program reading the queue (with none reading it, and no bypass, "
                         "the packet is dropped)")
                kind = ("accept", "drop")[run.decide(2, [f"{text}: {words}"])]
            if kind == "accept":
                self._step(run, pkt, hook, table, cc.name, "accept", rule)
                return "accept"
            if kind in ("drop", "reject"):
                run.deciding = self._step(run, pkt, hook, table, cc.name, kind, rule)
                return "drop"
            if kind in ("jump", "goto"):
                target = table.chains.get(action.target)
                if target is None:
                    raise GiveUp(f"{rule.text or kind}: chain {action.target} does not exist")
                self._step(run, pkt, hook, table, cc.name, kind, rule, note=action.target)
                if kind == "jump":
                    frames.append((cc, i + 1))
                    if len(frames) > MAX_DEPTH:
                        raise GiveUp(f"{rule.text}: jumps nest deeper than {MAX_DEPTH}")
                cc = compiler.chain(table, target)
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
            # continue: MARK, CONNMARK, LOG, CT ..., counters
            apply_statement(pkt, action)
            i += 1

    def _unknown_target(self, run: Run, action, rule) -> str:
        name = (action.target or "").upper()
        if name in NON_ENDING_TARGETS or name in NEVER_ENDING:
            return "continue"
        text = rule.text or f"-j {action.target}"
        return ("continue", "accept", "drop")[run.decide(3, [text])]

    def _vmap(self, run: Run, pkt: Pkt, table: Table, action, rule):
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

    def _policy(self, run: Run, pkt: Pkt, hook: str, table: Table, chain) -> str:
        policy = (chain.policy or "accept").lower()
        if policy == "drop":
            run.deciding = self._step(run, pkt, hook, table, chain.name, "policy-drop", origin=chain.origin)
            return "drop"
        self._step(run, pkt, hook, table, chain.name, "policy-accept", origin=chain.origin)
        return "accept"


def _flow_verdict(verdict: str) -> str:
    """A packet's "drop" or "leaves" (DNAT sent it off the host) as the flow's verdict."""
    if verdict == "drop":
        return BLOCKED
    return REDIRECTED if verdict == "leaves" else UNKNOWN


def _tcp_kind(flags: int) -> str:
    if flags & SYN:
        return "synack" if flags & ACK else "syn"
    return "ack"


__all__ = ["Engine", "Packet", "PacketResult", "Stats", "EPHEMERAL", "LOOPBACK_PATH", "is_loopback"]

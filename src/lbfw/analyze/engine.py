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

from collections.abc import Callable, Sequence
from typing import Any, Optional

from ..model import NON_ENDING_TARGETS, Action, Chain, Origin, Rule, Ruleset, Table
from ..results import BLOCKED, DELIVERED, REDIRECTED, UNKNOWN, Flow, FlowResult, Step
from .api import (
    EPHEMERAL,
    LO4,
    LO6,
    MAX_DEPTH,
    MAX_RUNS,
    NEVER_ENDING,
    Packet,
    PacketResult,
    Stats,
    _addr,
    _fmt_addr,
    _proto_num,
    _rng,
    is_loopback,
)
from .compile import Compiler, _CChain
from .conntrack import ACK, PSH, SYN, attach, refresh
from .hooks import DST_MANIP_HOOKS, LOOPBACK_PATH, HookOrder
from .marks import apply_statement, changes_packet
from .matchers import NA, TCP, single_value
from .packet import DEFAULT_TTL, User, dress
from .state import GiveUp, Pkt, Range, Run
from .users import UserSweep
from .vmaps import VmapIndex


class Engine:
    """Follows flows and packets through a ruleset. Build once, evaluate many flows."""

    def __init__(
        self, ruleset: Ruleset, max_runs: int = MAX_RUNS, udp_followup: bool = True, ttl: int = DEFAULT_TTL
    ) -> None:
        """``udp_followup``: a UDP flow also needs the client's next datagram (ESTABLISHED, original
        direction) to pass, as a resolver reusing its socket does. False: one datagram each way
        (what the sandbox probe sends). ``ttl``: the host's default TTL / hop limit."""
        self.ruleset = ruleset
        self.udp_followup = udp_followup
        self.ttl = ttl
        self._users = UserSweep(ruleset)
        self._server: Any = False  # the server's User (packet.SERVER_CAVEAT), found when first needed
        self.stats = Stats()
        self.max_runs = max_runs
        self._compiler = Compiler(ruleset)
        self._hooks = HookOrder(ruleset)
        self._vmap_index: dict[int, VmapIndex] = {}  # id(entries) -> VmapIndex (kube-proxy maps: 10,000+ elements)

    # ----------------------------------------------------------------- exploration

    def _explore(self, once: Callable[[Run], str]) -> tuple[str, list[Run], bool]:
        """Run ``once(run)`` over the choice vectors of undecidable points, depth first, stopping
        when two outcomes disagree or after max_runs. Returns (outcome, runs, complete)."""
        pending: list[list[int]] = [[]]
        runs: list[Run] = []
        outcomes: set[str] = set()
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

    def _unknown_texts(self, runs: list[Run]) -> tuple[str, ...]:
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
        if result.verdict == UNKNOWN and flow.user is None and self._compiler.owner_texts.intersection(result.unknown):
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

        def once(run: Run) -> str:
            return self._flow_once(run, family, client, server, proto, flow.port, user)

        outcome, runs, _ = self._explore(once)
        first = runs[0]
        unknown: tuple[str, ...] = ()
        if outcome == UNKNOWN:
            unknown = self._unknown_texts(runs)
        deciding = first.deciding if outcome == BLOCKED else None
        redirected_to = None
        if outcome == REDIRECTED and first.redirect is not None:
            addr, port = first.redirect
            shown = _fmt_addr(family, addr)
            redirected_to = f"[{shown}]:{port}" if family == "ip6" else f"{shown}:{port}"
        caveats: list[str] = []
        for run in runs:
            caveats.extend(c for c in run.caveats if c not in caveats)
        return FlowResult(
            flow=flow,
            verdict=outcome,
            steps=list(first.steps),
            deciding=deciding,
            unknown=unknown,
            client_addr=_fmt_addr(family, client),
            redirected_to=redirected_to,
            caveats=tuple(caveats),
        )

    def _packet(
        self,
        run: Run,
        user: Optional[User],
        family: str,
        saddr: Range,
        daddr: Range,
        l4proto: Range,
        sport: Range,
        dport: Range,
        flags: Optional[int],
        name: str,
        client_side: bool,
    ) -> Pkt:
        pkt = Pkt(family, saddr, daddr, l4proto, sport, dport, flags, name, client_side)
        if self._server is False:
            self._server = self._users.others()
        dress(pkt, user, self._server, self.ttl)
        pkt.counters = run.counters
        pkt.caveats = run.caveats
        return pkt

    def _flow_once(
        self, run: Run, family: str, client: int, server: int, proto: int, port: int, user: Optional[User]
    ) -> str:
        tcp = proto == TCP
        req = self._packet(
            run,
            user,
            family,
            (client, client),
            (server, server),
            (proto, proto),
            EPHEMERAL,
            (port, port),
            SYN if tcp else None,
            "request",
            True,
        )
        first = (req.saddr, req.sport, req.daddr, req.dport)
        verdict = self._through(run, req, LOOPBACK_PATH)
        if verdict != "accept":
            return _flow_verdict(verdict)
        # The server answers from where the request arrived (after any DNAT).
        rep = self._packet(
            run,
            user,
            family,
            req.daddr,
            req.saddr,
            req.l4proto,
            req.dport,
            req.sport,
            (SYN | ACK) if tcp else None,
            "reply",
            False,
        )
        rep_first = (rep.saddr, rep.sport, rep.daddr, rep.dport)
        verdict = self._through(run, rep, LOOPBACK_PATH)
        if verdict != "accept":
            return _flow_verdict(verdict)
        delivered = REDIRECTED if run.redirect is not None else DELIVERED
        if not tcp and not self.udp_followup:
            return delivered
        ack = self._packet(
            run, user, family, first[0], first[2], req.l4proto, first[1], first[3], ACK if tcp else None, "ack", True
        )
        verdict = self._through(run, ack, LOOPBACK_PATH)
        if verdict != "accept":
            return _flow_verdict(verdict)
        if tcp:
            # The server's answer after the handshake. Usually the reply's twin, but not when the
            # request was UNTRACKED: the SYN-ACK is then INVALID (conntrack will not pick a
            # connection up from a SYN-ACK) while this packet is picked up as NEW (measured).
            answer = self._packet(
                run,
                user,
                family,
                rep_first[0],
                rep_first[2],
                req.l4proto,
                rep_first[1],
                rep_first[3],
                ACK | PSH,
                "answer",
                False,
            )
            verdict = self._through(run, answer, LOOPBACK_PATH)
            if verdict != "accept":
                return _flow_verdict(verdict)
        return delivered

    # ----------------------------------------------------------------- single packets

    def walk_packet(self, packet: Packet, path: Sequence[str] = ("prerouting", "input")) -> PacketResult:
        """Follow one packet through ``path`` (hook names). The packet's iif is used on
        prerouting/input/forward, its oif on output/forward/postrouting."""
        family = packet.family
        base = Pkt(
            family,
            _rng(_addr(family, packet.saddr)) if not isinstance(packet.saddr, tuple) else packet.saddr,
            _rng(_addr(family, packet.daddr)) if not isinstance(packet.daddr, tuple) else packet.daddr,
            _rng(_proto_num(packet.proto)),
            _rng(packet.sport),
            _rng(packet.dport),
            packet.tcp_flags
            if packet.tcp_flags is not None
            else (None if _proto_num(packet.proto) != TCP else SYN if packet.ct_state == "new" else ACK),
            packet.name,
            True,
        )
        base.mark = (packet.mark, packet.mark)
        base.fixed_ct = (packet.ct_state, packet.ct_direction, frozenset(packet.ct_status))
        iif, oif = packet.iif, packet.oif

        def once(run: Run) -> str:
            pkt = Pkt(
                base.family,
                base.saddr,
                base.daddr,
                base.l4proto,
                base.sport,
                base.dport,
                base.tcp_flags,
                base.name,
                True,
            )
            pkt.mark = base.mark
            pkt.fixed_ct = base.fixed_ct
            if packet.ct_state == "untracked":
                pkt.untracked = True
            if not any(h in DST_MANIP_HOOKS for h in path):
                attach(run, pkt)  # the path starts after conntrack (e.g. INPUT alone)
            v = self._through(run, pkt, tuple(path), ifaces=(iif, oif))
            return {"accept": "accept", "drop": "drop"}.get(v, UNKNOWN)

        outcome, runs, _ = self._explore(once)
        first = runs[0]
        unknown: tuple[str, ...] = ()
        if outcome == UNKNOWN:
            unknown = self._unknown_texts(runs)
        return PacketResult(
            verdict=outcome,
            steps=list(first.steps),
            deciding=first.deciding if outcome == "drop" else None,
            unknown=unknown,
        )

    # ----------------------------------------------------------------- hooks

    def _through(
        self, run: Run, pkt: Pkt, path: Sequence[str], ifaces: Optional[tuple[Optional[str], Optional[str]]] = None
    ) -> str:
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
            for kind, _prio, payload in self._hooks.items(hook, pkt.family):
                if kind == "ct":
                    if not pkt.attached:
                        attach(run, pkt)
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
                refresh(run, pkt)
            if hook == "output" and ifaces is None and not is_loopback(pkt.family, pkt.daddr[0]):
                if not is_loopback(pkt.family, pkt.saddr[0]) and pkt.daddr[0] == pkt.saddr[0]:
                    continue  # the host's own address: still over lo
                if run.redirect is not None and pkt.name == "request":
                    return "leaves"  # DNAT to another host: the flow is redirected off the host
                raise GiveUp(f"nat sends the {pkt.name} to {_fmt_addr(pkt.family, pkt.daddr[0])}, off loopback")
        return "accept"

    def _nat_point(self, run: Run, pkt: Pkt, hook: str, chains: list[tuple[Table, Chain]]) -> str:
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

    def _bind(self, run: Run, pkt: Pkt, hook: str, action: Action) -> str:
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
        refresh(run, pkt)
        return f"{kind} to {_fmt_addr(pkt.family, (pkt.daddr if manip == 'dst' else pkt.saddr)[0])}"

    # ----------------------------------------------------------------- chains

    def _step(
        self,
        run: Run,
        pkt: Pkt,
        hook: str,
        table: Table,
        chain_name: str,
        verdict: str,
        rule: Optional[Rule] = None,
        origin: Optional[Origin] = None,
        note: str = "",
    ) -> Step:
        step = Step(
            packet=pkt.name,
            hook=hook,
            table=table.name,
            family=table.family,
            chain=chain_name,
            verdict=verdict,
            rule=rule,
            origin=origin if origin is not None else (rule.origin if rule is not None else None),
            note=note,
        )
        run.steps.append(step)
        return step

    def _base_chain(self, run: Run, pkt: Pkt, hook: str, table: Table, chain: Chain, nat: bool = False) -> str:
        """Run one base chain: "accept" (this chain is done) or "drop" (the packet is)."""
        stats = self.stats
        compiler = self._compiler
        frames: list[tuple[_CChain, int]] = []
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
                    self._step(
                        run,
                        pkt,
                        hook,
                        table,
                        cc.name,
                        "unknown",
                        rule,
                        note="cannot decide " + "; ".join(unk) + ": this branch assumes no match",
                    )
                    i += 1
                    continue
                self._step(
                    run,
                    pkt,
                    hook,
                    table,
                    cc.name,
                    "unknown",
                    rule,
                    note="cannot decide " + "; ".join(unk) + ": this branch assumes a match",
                )
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
                words = (
                    "depends on the program reading the queue (with none reading it, and no bypass, "
                    "the packet is dropped)"
                )
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
                    self._step(
                        run,
                        pkt,
                        hook,
                        table,
                        cc.name,
                        "notrack",
                        rule,
                        note="no effect: the packet already has its conntrack entry",
                    )
                i += 1
                continue
            # continue: MARK, CONNMARK, LOG, CT ..., counters
            apply_statement(pkt, action)
            i += 1

    def _unknown_target(self, run: Run, action: Action, rule: Rule) -> str:
        name = (action.target or "").upper()
        if name in NON_ENDING_TARGETS or name in NEVER_ENDING:
            return "continue"
        text = rule.text or f"-j {action.target}"
        return ("continue", "accept", "drop")[run.decide(3, [text])]

    def _vmap(self, run: Run, pkt: Pkt, table: Table, action: Action, rule: Rule) -> Optional[Action]:
        """The verdict a map picks for this packet, or None (no entry: the rule continues)."""
        entries = action.vmap
        if not entries and action.set_name:
            named = table.sets.get(action.set_name)
            if named is None or not named.known:
                return Action("unknown", target=f"vmap @{action.set_name}")
            entries = named.elements
        key = action.vmap_field
        # a vmap names its key (str() only types it: a missing one is an unknown field, as before)
        fields = key if isinstance(key, tuple) else (str(key),)
        pvals: list[Any] = []
        known = True
        for f in fields:
            v = single_value(pkt, f)
            if v is NA:
                return None
            if v is None:
                known = False
                break
            pvals.append(v)
        options: list[Optional[Action]]
        certain: Optional[Action]
        if known:
            index = self._vmap_index.get(id(entries))
            if index is None or index.entries is not entries:
                index = self._vmap_index[id(entries)] = VmapIndex(key, entries)
            certain, options = index.lookup(pvals)
        else:
            certain, options = None, [e.action for e in entries]
        if certain is not None and not options:
            return certain
        if certain is None and not options:
            return None
        choices = options + ([certain] if certain is not None else [None])
        pick = run.decide(len(choices), [rule.text or "verdict map"])
        return choices[pick]

    def _policy(self, run: Run, pkt: Pkt, hook: str, table: Table, chain: Chain) -> str:
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


__all__ = ["Engine", "Packet", "PacketResult", "Stats", "EPHEMERAL", "LOOPBACK_PATH", "is_loopback"]

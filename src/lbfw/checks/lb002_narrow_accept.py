"""LB002: narrow loopback accept (127.0.0.1 where 127.0.0.0/8 or the interface was meant)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

from ..model import Rule, Table
from ..results import Finding, FlowResult
from .context import (
    INBOUND_HOOKS,
    LOOPBACK_HOOKS,
    Check,
    CheckContext,
    NarrowAddr,
    RuleRef,
    as_range,
    describe_part,
    flows_summary,
    iface_class,
    make_finding,
    narrow_addr_matches,
    narrow_loopback,
    negated_narrow_addr_matches,
    owner_match,
)
from .fixes import SET_SAFETY, CheckFix

if TYPE_CHECKING:
    from ..analyze.engine import Packet

ID = "LB002"
NAME = "narrow-loopback-accept"
SEVERITY = "warning"
SUMMARY = "A rule accepts loopback traffic by 127.0.0.1 alone"
# What each fix changes beyond the 127/8 traffic it is meant for, printed next to every edit.
FIX = CheckFix(
    "sometimes",
    modes=("interface", "range"),
    safety={
        "interface": (
            'Fix safety: `-i lo` / `iif "lo"` accepts everything that arrives over lo: all of 127.0.0.0/8 '
            "(and ::1 too in an nft inet table), and also the host's own traffic to its non-loopback addresses "
            "(it travels over lo too), on every "
            "port the rule's other matches allow. Packets with a 127.0.0.1 source arriving on another "
            "interface are no longer accepted by this rule (routing drops them as martians anyway unless "
            "route_localnet=1)."
        ),
        "range": (
            "Fix safety: 127.0.0.0/8 accepts every loopback address (127.0.0.53, 127.0.1.1, clients bound to "
            "127.0.0.2 ...) on whatever interface the rule allows. Where route_localnet=1, 127/8-sourced "
            "packets from the network would be accepted too: keep an anti-spoofing drop "
            "(`! -i lo -s 127.0.0.0/8 -j DROP`) before it."
        ),
        "set": SET_SAFETY,
    },
)

DOC = """\
## What it does
Finds rules that accept loopback traffic by the address 127.0.0.1 alone (`-s 127.0.0.1`,
`127.0.0.1/32`, `127.0.0.1/255.255.255.255`, nft `ip saddr 127.0.0.1`) where the loopback
interface or 127.0.0.0/8 was meant: directly, through a jump into a chain that accepts, through a
named or anonymous set, a verdict map (`ip saddr vmap { 127.0.0.1 : accept }`) or an nft `define`.
A drop that spares 127.0.0.1 alone (`-p tcp --dport 6379 ! -s 127.0.0.1 -j DROP`, "only localhost
may connect") is the same mistake and is reported too. It is reported even when conntrack masks
it, and says which loopback connections still break; when
nothing after it drops loopback traffic (a later rule or the policy accepts it), it is a note.

## Why is this bad?
Every address in 127.0.0.0/8 is loopback and services use them: systemd-resolved on 127.0.0.53,
Debian's hostname on 127.0.1.1, Docker's resolver on 127.0.0.11, load-test clients bound to
127.0.0.2 and up. A rule that accepts 127.0.0.1 alone lets all of those fall through to the DROP
policy. An `ESTABLISHED,RELATED` accept hides half of it (replies from 127.0.0.53 come back as
ESTABLISHED), but a client bound to 127.0.0.2 still fails, and so does everything when the state
rule is moved.

Rules restricted by an owner match (Tor ports opened to chosen users, as in Tails) are a policy
rather than a typo: they are reported as notes, with the evidence, to be confirmed and suppressed.

## Example
```
-A INPUT -s 127.0.0.1/32 -j ACCEPT
-A OUTPUT -d 127.0.0.1/32 -j ACCEPT
```
```
ip saddr 127.0.0.1 accept
```

## Use instead
```
-A INPUT -i lo -j ACCEPT
-A OUTPUT -o lo -j ACCEPT
```
```
iif "lo" accept
```
or, to keep an address match, `-s 127.0.0.0/8` / `ip saddr 127.0.0.0/8`.

## Fix safety
`lbfw fix` replaces the 127.0.0.1 match by the loopback interface (`-i lo` on INPUT and
PREROUTING, `-o lo` on OUTPUT and POSTROUTING; nft `iif "lo"` / `oif "lo"`) and keeps every other
match of the rule (ports, states, comments); a rule that already says `-i lo` just loses the
address match. Beyond 127/8 this accepts the host's own traffic to its non-loopback addresses,
which travels over `lo` too (it never leaves the host), on every port the rule's other matches
allow; a packet with source 127.0.0.1 arriving on another interface is no longer accepted by it.
A user chain reached from both directions gets 127.0.0.0/8 instead. With `--style range` the fix
writes 127.0.0.0/8, which admits exactly the loopback block on whatever interface the rule allows:
where route_localnet=1, keep an anti-spoofing drop (`! -i lo -s 127.0.0.0/8 -j DROP`) before it.
In a set or verdict map the 127.0.0.1 element becomes 127.0.0.0/8 (the set gains `flags interval`
when it needs it), so every rule using that set matches all of 127/8; a `define` or set that rules
without a finding also use is not widened under them. Rules owned by Docker, kube-proxy, ufw,
firewalld, fail2ban or fw4 are not rewritten: their manager would put them back, so the finding
says where its configuration must change.

## References
- RFC 1122 section 3.2.1.3 and RFC 5735: 127.0.0.0/8 is loopback
- systemd-resolved(8): 127.0.0.53 and 127.0.0.54
- Debian Reference, "The hostname resolution": 127.0.1.1
- CIS Distribution Independent Linux Benchmark: accept loopback by interface
"""


def _chain_accepts(ctx: CheckContext, table: Table, name: str) -> bool:
    """True when chain ``name`` accepts something, itself or through the chains it leads to."""
    return any(rule.action.kind == "accept" for chain in ctx.chains_below(table, name) for rule in chain.rules)


def _vmap_narrow(ctx: CheckContext, ref: RuleRef) -> list[tuple[str, list[tuple[int, int]]]]:
    """(field, loopback part) of verdict-map entries that accept 127.0.0.1 without the rest of 127/8."""
    action = ref.rule.action
    entries = action.vmap
    if not entries and action.set_name:
        named = ref.table.sets.get(action.set_name.lstrip("@"))
        entries = named.elements if named is not None and named.known else ()
    fld = action.vmap_field
    found: list[tuple[str, list[tuple[int, int]]]] = []
    for entry in entries:
        sub = getattr(entry, "action", None)
        if sub is None:
            continue
        accepts = sub.kind == "accept" or (
            sub.kind in ("jump", "goto") and sub.target and _chain_accepts(ctx, ref.table, sub.target)
        )
        if not accepts:
            continue
        for want in ("ip.saddr", "ip.daddr"):
            if isinstance(fld, tuple) and want in fld:
                value = entry.value[fld.index(want)] if isinstance(entry.value, tuple) else None
            elif fld == want:
                value = entry.value
            else:
                continue
            r = as_range(value)
            if r is None:
                continue
            part = narrow_loopback([r])
            if part is not None:
                found.append((want, part))
    return found


def _accepting(ctx: CheckContext, ref: RuleRef) -> str:
    """ "" when the rule does not accept; else how it accepts ("accept", "jump to X")."""
    action = ref.rule.action
    if action.kind == "accept":
        return "accept"
    if action.kind in ("jump", "goto") and action.target and _chain_accepts(ctx, ref.table, action.target):
        return f"{action.kind} to {action.target}, which accepts"
    return ""


def _first_port(rule: Rule, fld: str) -> Optional[int]:
    for m in rule.matches:
        if m.field == fld and not m.negate and m.values:
            v = m.values[0]
            if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], int):
                return v[0]
            if isinstance(v, int):
                return v
    return None


def _probe_hook(ctx: CheckContext, ref: RuleRef, hooks: frozenset[str]) -> Optional[tuple[str, str]]:
    """Ask the engine whether this rule's hook drops loopback packets the rule does not cover
    (a client bound to 127.0.0.2; the reply from 127.0.0.53; a request to 127.0.0.53), on the
    rule's own port and hooks. Returns (hooks, description) of the first dropped probe, or None. The flows
    alone cannot tell when an earlier hook (OUTPUT) drops the same traffic first."""
    engine = ctx.engine
    if engine is None or not hasattr(engine, "walk_packet"):
        return None
    from ..analyze.engine import Packet

    dport = _first_port(ref.rule, "th.dport") or 47231
    proto = (
        "udp"
        if any(m.field == "meta.l4proto" and not m.negate and (17, 17) in m.values for m in ref.rule.matches)
        else "tcp"
    )
    probes: list[tuple[str, Packet, tuple[str, ...]]] = []
    inbound = tuple(h for h in INBOUND_HOOKS if h in hooks)  # only the rule's own hooks
    outbound = tuple(h for h in ("output", "postrouting") if h in hooks)
    if inbound:
        path = inbound
        probes.append(
            (
                f"{proto} from a client bound to 127.0.0.2 to 127.0.0.1:{dport}",
                Packet(saddr="127.0.0.2", daddr="127.0.0.1", proto=proto, dport=dport, iif="lo"),
                path,
            )
        )
        probes.append(
            (
                f"the reply from 127.0.0.53:{dport} to a client on 127.0.0.1 (as ESTABLISHED)",
                Packet(
                    saddr="127.0.0.53",
                    daddr="127.0.0.1",
                    proto=proto,
                    sport=dport,
                    dport=47232,
                    iif="lo",
                    ct_state="established",
                    ct_direction="reply",
                    tcp_flags=0x12 if proto == "tcp" else None,
                ),
                path,
            )
        )
    if outbound:
        probes.append(
            (
                f"{proto} from 127.0.0.1 to 127.0.0.53:{dport}",
                Packet(saddr="127.0.0.1", daddr="127.0.0.53", proto=proto, dport=dport, oif="lo"),
                outbound,
            )
        )
    for text, packet, path in probes:
        if engine.walk_packet(packet, path).verdict == "drop":
            return "/".join(h.upper() for h in path), text
    return None


def _undecided(ctx: CheckContext, hooks: frozenset[str]) -> list[FlowResult]:
    """IPv4 flows left unknown by a match on one of ``hooks`` (the branches disagreed there)."""
    return [r for r in ctx.unknown("ip") if any(s.verdict == "unknown" and s.hook in hooks for s in r.steps)]


def _dropping(ref: RuleRef) -> bool:
    action = ref.rule.action
    return action.kind in ("drop", "reject")


def _negated_finding(
    me: Check, ctx: CheckContext, ref: RuleRef, hooks: frozenset[str], n: NarrowAddr, not_delivered: list[FlowResult]
) -> Finding:
    addr = describe_part(n.part)
    direction = "source" if n.field == "ip.saddr" else "destination"
    flag = "-s" if n.field == "ip.saddr" else "-d"
    hook_names = "/".join(sorted(h.upper() for h in hooks))
    message = (
        f"Drops everything whose {direction} is not {addr} on {hook_names}, so only 127.0.0.1 is let "
        "through: loopback traffic on other 127/8 addresses (127.0.0.53, 127.0.1.1, clients bound to "
        "127.0.0.2) is dropped with the rest."
    )
    breaking = [r for r in not_delivered if r.deciding is not None and r.deciding.rule is ref.rule]
    if breaking:
        message += f" Broken here: {flows_summary(breaking)}."
    message += f" Spare the whole loopback block instead (`! {flag} 127.0.0.0/8`, or `! -i lo`)."
    return make_finding(
        me, message, ref, flows=[r.flow for r in breaking], extra={"field": n.field, "addresses": addr, "negated": True}
    )


def check(ctx: CheckContext) -> list[Finding]:
    me = sys.modules[__name__]
    findings: list[Finding] = []
    not_delivered = ctx.not_delivered("ip")
    wanted = frozenset(LOOPBACK_HOOKS)
    for ref in ctx.rules(families=("ip", "inet"), hooks=wanted, skip_nat=True):
        hooks = ref.hooks & wanted
        if iface_class(ref.rule) == "other":
            continue  # e.g. `-i eth0 -s 127.0.0.1`: not loopback traffic
        narrow: list[tuple[str, list[tuple[int, int]], str]] = []
        how = ""
        if ref.rule.action.kind == "vmap":
            name = ref.rule.action.set_name
            via = f"verdict map @{name.lstrip('@')}" if name else "a verdict map"
            narrow = [(f, p, via) for f, p in _vmap_narrow(ctx, ref)]
            how = "verdict map entry accept"
        else:
            how = _accepting(ctx, ref)
            if how:
                narrow = [(n.field, n.part, n.via) for n in narrow_addr_matches(ref.rule, ref.table)]
            elif _dropping(ref):
                # `-p tcp --dport 6379 ! -s 127.0.0.1 -j DROP`: "only 127.0.0.1 may connect"
                negated = negated_narrow_addr_matches(ref.rule, ref.table)
                if negated:
                    findings.append(_negated_finding(me, ctx, ref, hooks, negated[0], not_delivered))
                continue
        if not narrow:
            continue
        fld, part, via = narrow[0]
        addr = describe_part(part)
        direction = "source" if fld == "ip.saddr" else "destination"
        what = "address 127.0.0.1 alone" if addr == "127.0.0.1" else f"addresses {addr} only, not all of 127.0.0.0/8,"
        through = f" through {via}" if via else ""
        if how.startswith(("jump", "goto")):
            through += f" ({how})"
        hook_names = "/".join(sorted(h.upper() for h in hooks))
        message = (
            f"Accepts loopback traffic by {direction} {what}{through} on {hook_names}; "
            "other 127/8 addresses (127.0.0.53, 127.0.1.1, clients bound to 127.0.0.2) are not matched."
        )
        side = "-i lo" if hooks & set(INBOUND_HOOKS) else "-o lo"
        nft_side = 'iif "lo"' if side == "-i lo" else 'oif "lo"'
        breaking = [r for r in not_delivered if r.deciding is not None and r.deciding.hook in hooks]
        severity = None
        unknown_flows: list[FlowResult] = []
        if breaking:
            message += f" Still broken: {flows_summary(breaking)}."
        else:
            hidden = _probe_hook(ctx, ref, hooks)
            undecided = _undecided(ctx, hooks)
            if hidden is not None:
                # the same traffic is dropped earlier on its way (e.g. OUTPUT): fixing that exposes this
                message += f" {hidden[0]} still drops {hidden[1]}; today an earlier drop on the way hides that."
            elif undecided:
                # only a match lbfw cannot decide stands between these flows and the drop: never a note
                unknown_flows = undecided
                texts = "; ".join(dict.fromkeys(t for r in undecided for t in r.unknown))
                message += (
                    f" Only a condition lbfw cannot decide keeps {flows_summary(undecided)} from being "
                    f"dropped ({texts}); when it does not hold they fail."
                )
            else:
                # Nothing after it drops loopback traffic (or another rule accepts it): a latent mistake.
                severity = "note"
                message += (
                    " No default loopback flow fails because of it today (a later rule or the policy "
                    "accepts them), but it does not do what it seems to."
                )
        message += f" Match the loopback interface instead ({side}, nft {nft_side}) or 127.0.0.0/8."
        evidence = owner_match(ref.rule)
        if evidence:
            severity = "note"
            message += (
                f" It is restricted by an owner match ({evidence}), so it may be a deliberate policy: "
                "suppress it with `lbfw: ignore LB002` if so."
            )
        extra: dict[str, Any] = {"field": fld, "addresses": addr, "via": via or None}
        if unknown_flows:
            extra["unknown_flows"] = [r.flow for r in unknown_flows]
        findings.append(
            make_finding(
                me,
                message,
                ref,
                severity=severity,
                flows=[r.flow for r in breaking or unknown_flows],
                extra=extra,
                deliberate=evidence,
            )
        )
    return findings

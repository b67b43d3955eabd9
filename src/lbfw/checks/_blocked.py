"""Shared by LB001 (IPv4 loopback blocked) and LB004 (IPv6 loopback blocked).

The engine has already followed every default flow through every hook; here the flows
that did not arrive are grouped by the rule or policy that stopped them, one finding each.
"""

from __future__ import annotations

from typing import Any, Optional

from ..model import Rule, Table
from ..results import UNKNOWN, Finding, FlowResult, Step
from .context import (
    Check,
    CheckContext,
    RuleRef,
    flows_summary,
    iface_class,
    make_finding,
    narrow_addr_matches,
    owner_match,
)

DROPPING = ("drop", "reject", "policy-drop")  # step verdicts that end a packet

_PACKET_WORDS = {
    "request": "the request",
    "reply": "the reply",
    "ack": "the client's next packet",
    "answer": "the server's answer",
}


def _deciding_key(step: Step) -> tuple[Any, ...]:
    rule = step.rule
    if rule is not None:
        return ("rule", id(rule))
    return ("policy", step.family, step.table, step.chain, step.hook)


def _deliberate_evidence(ctx: CheckContext, table: Optional[Table], hook: str) -> Optional[Rule]:
    """An owner-restricted loopback accept in a chain of ``table`` on ``hook`` (Tails-style lockdown),
    which makes blocking the rest of loopback a policy rather than a mistake."""
    if table is None:
        return None
    for chain in table.chains.values():
        if hook not in ctx.hooks_of(table, chain):
            continue
        for rule in chain.rules:
            if rule.action.kind != "accept":
                continue
            if owner_match(rule) and (iface_class(rule) == "lo" or narrow_addr_matches(rule, table)):
                return rule
    return None


def blocked_findings(ctx: CheckContext, check: Check, family: str) -> list[Finding]:
    what = "IPv6 loopback (::1)" if family == "ip6" else "loopback"
    findings: list[Finding] = []
    groups: dict[tuple[Any, ...], tuple[Step, list[FlowResult]]] = {}
    order: list[tuple[Any, ...]] = []
    for res in ctx.blocked(family):
        step = res.deciding
        if step is None:
            continue
        key = _deciding_key(step)
        if key not in groups:
            groups[key] = (step, [])
            order.append(key)
        groups[key][1].append(res)
    for key in order:
        step, results = groups[key]
        table, chain = ctx.find_chain(step.family, step.table, step.chain, step.rule, step.origin)
        packets = [
            w
            for p, w in _PACKET_WORDS.items()
            if any(r.deciding is not None and r.deciding.packet == p for r in results)
        ]
        if step.rule is not None:
            head = f"This rule drops {what} traffic"
        else:
            policy = step.verdict.replace("policy-", "").upper()
            head = f"The policy {policy} of {step.table} {step.chain} drops {what} traffic no rule accepts"
        message = (
            f"{head}: {len(results)} flow(s) fail ({flows_summary(results)}); dropped packet: {' and '.join(packets)}."
        )
        if family == "ip":
            message += (
                ' Accept loopback by interface before it (`-i lo -j ACCEPT`, nft `iif "lo" accept`)'
                " or by 127.0.0.0/8 in this chain."
            )
        else:
            message += (
                " `localhost` fails wherever it resolves to ::1 first; accept `-i lo` "
                '(nft `iif "lo" accept`) or `-s ::1/128`.'
            )
        earlier = next(
            (
                s
                for s in results[0].steps
                if s.hook == step.hook
                and s.packet == step.packet
                and s.verdict == "accept"
                and (s.table, s.family) != (step.table, step.family)
            ),
            None,
        )
        if earlier is not None:
            where = earlier.origin.where() if earlier.origin is not None else f"{earlier.table} {earlier.chain}"
            message += (
                f" The packet was accepted first by {earlier.family} {earlier.table} {earlier.chain} "
                f"({where}), but an accept ends only its own base chain: every table on the "
                f"{step.hook} hook must accept it."
            )
        severity = None
        evidence = _deliberate_evidence(ctx, table, step.hook)
        extra: dict[str, Any] = {"packets": packets}
        deliberate = None
        if evidence is not None:
            severity = "note"
            message += (
                " It looks deliberate: loopback is opened only to chosen users by an owner match "
                f"({evidence.origin.where()}: {evidence.text}). Suppress it if so."
            )
            extra["evidence"] = deliberate = evidence.text
        if step.rule is not None:
            # find_chain finds both or neither
            ref = RuleRef(table, chain, step.rule, 0, frozenset()) if table is not None and chain is not None else None
            findings.append(
                make_finding(
                    check,
                    message,
                    ref,
                    severity=severity,
                    flows=[r.flow for r in results],
                    table=table,
                    chain=chain,
                    origin=step.origin,
                    extra=extra,
                    deliberate=deliberate,
                )
            )
        else:
            origin = step.origin or (chain.origin if chain is not None else None)
            f = make_finding(
                check,
                message,
                None,
                severity=severity,
                flows=[r.flow for r in results],
                table=table,
                chain=chain,
                origin=origin,
                extra=extra,
                deliberate=deliberate,
            )
            if f.table is None:
                f.table, f.chain, f.family = step.table, step.chain, step.family
            findings.append(f)

    # Flows the engine could not decide: one finding per undecidable match, never a guess. When the
    # branch that assumes the match fails ends in a drop, only that match stands between the flow
    # and the drop: a warning (and an error once --verify sees it blocked: checks.escalate_verified).
    unknown_groups: dict[tuple[Any, ...], tuple[Optional[Step], list[FlowResult], list[str]]] = {}
    for res in ctx.unknown(family):
        step = (
            next((s for s in res.steps if s.verdict == UNKNOWN and s.rule is not None), None)
            or next((s for s in reversed(res.steps) if s.verdict == UNKNOWN), None)
            or (res.steps[-1] if res.steps else None)
        )
        key = ("rule", id(step.rule)) if step is not None else tuple(res.unknown) or ("?",)
        entry = unknown_groups.setdefault(key, (step, [], []))
        entry[1].append(res)
        for text in res.unknown:
            if text not in entry[2]:
                entry[2].append(text)
    for step, results, texts in unknown_groups.values():
        table, chain = (
            ctx.find_chain(step.family, step.table, step.chain, step.rule, step.origin)
            if step is not None
            else (None, None)
        )
        dropped = [r for r in results if r.steps and r.steps[-1].verdict in DROPPING]
        severity = "warning" if dropped else "note"
        message = (
            f"lbfw cannot tell whether {what} traffic passes here: {len(results)} flow(s) "
            f"({flows_summary(results)}) depend on `{' '.join(texts) or 'a match lbfw does not model'}`."
        )
        if dropped:
            message += " When that does not hold they are dropped."
        message += " Check them with `lbfw verify`."
        extra = {"unknown": texts, "unknown_flows": [r.flow for r in dropped]}
        if step is not None and table is not None and chain is not None and step.rule is not None:
            findings.append(
                make_finding(
                    check,
                    message,
                    RuleRef(table, chain, step.rule, 0, frozenset()),
                    severity=severity,
                    flows=[r.flow for r in results],
                    extra=extra,
                    advise_owner=False,
                )
            )
        else:
            f = make_finding(
                check,
                message,
                None,
                severity=severity,
                flows=[r.flow for r in results],
                table=table,
                chain=chain,
                origin=step.origin if step is not None else None,
                extra=extra,
                advise_owner=False,
            )
            if f.table is None and step is not None:
                f.table, f.chain, f.family = step.table, step.chain, step.family
            if f.source is None:
                f.source = next((si.source for si in ctx.ruleset.sources), None)
            findings.append(f)
    return findings

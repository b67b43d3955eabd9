"""LB007: destination NAT diverts loopback traffic meant for another 127/8 address."""

from __future__ import annotations

import ipaddress
import sys

from ..results import REDIRECTED, Finding, FlowResult, Step
from .context import CheckContext, RuleRef, flows_summary, make_finding
from .fixes import NO_FIX
from .owners import owner_of

ID = "LB007"
NAME = "loopback-diverted"
SEVERITY = "warning"
SUMMARY = "Destination NAT sends loopback traffic for another 127/8 address elsewhere"
FIX = NO_FIX

DOC = """\
## What it does
Follows the default loopback flows through the nat chains and reports a DNAT or REDIRECT (nft
`dnat`, `redirect`) that rewrites the destination of traffic addressed to 127.0.0.53, 127.66.66.66
or another 127/8 address other than 127.0.0.1 (or ::1), the way the kernel does for locally
generated packets on nat OUTPUT. `lbfw check` reports such a flow as `redirected` with its new
destination, and exits 1.

## Why is this bad?
A rule written for "all DNS traffic" (`-p udp --dport 53 -j DNAT --to-destination
127.0.0.1:5354`) catches the queries a local resolver on 127.0.0.53 (systemd-resolved) or
127.53.53.53 should get: that server never sees a packet, and whatever listens on the new
address answers instead, or nothing does. Measured: after REDIRECT/DNAT of local traffic to
127.0.0.1:PORT the original server sees nothing.

## Example
```
-A OUTPUT -p udp --dport 53 -j DNAT --to-destination 127.0.0.1:5354
```

## Use instead
Restrict the rule to the traffic it is meant for, and leave loopback alone:
```
-A OUTPUT ! -d 127.0.0.0/8 -p udp --dport 53 -j DNAT --to-destination 127.0.0.1:5354
```
(nft: `ip daddr != 127.0.0.0/8 udp dport 53 dnat to 127.0.0.1:5354`).

## Fix safety
No automatic fix: whether the diversion is wanted (Docker's resolver inside a container rewrites
127.0.0.11:53 on purpose) only the admin knows. A DNAT that Docker or kube-proxy wrote (a
published port, a NodePort reachable on every local address) is their design and reported as a note.

## References
- iptables-extensions(8): DNAT, REDIRECT
- systemd-resolved(8): 127.0.0.53 and 127.0.0.54
"""

_NAT_STEPS = ("dnat", "redirect")
_DELIBERATE = ("docker", "kube-proxy")  # managers whose DNATs of local addresses are their design


def _diverted_server(server: str) -> bool:
    addr = ipaddress.ip_address(server)
    return addr.is_loopback and str(addr) not in ("127.0.0.1", "::1")


def check(ctx: CheckContext) -> list[Finding]:
    me = sys.modules[__name__]
    groups: dict[int, tuple[Step, list[FlowResult]]] = {}
    for r in ctx.results:
        if r.verdict != REDIRECTED or not _diverted_server(r.flow.server):
            continue
        step = next((s for s in r.steps if s.verdict in _NAT_STEPS and s.rule is not None), None)
        if step is None:
            continue
        entry = groups.setdefault(id(step.rule), (step, []))
        entry[1].append(r)
    findings: list[Finding] = []
    for step, results in groups.values():
        table, chain = ctx.find_chain(step.family, step.table, step.chain, step.rule, step.origin)
        # find_chain finds both or neither; every grouped step has a rule
        if table is None or chain is None or step.rule is None:
            continue
        where = sorted({r.redirected_to for r in results if r.redirected_to})
        message = (
            f"Rewrites the destination of loopback traffic for other 127/8 addresses: "
            f"{flows_summary(results)} go to {', '.join(where)} instead, so a server on the address "
            "the client asked for (systemd-resolved on 127.0.0.53, a DNS server on 127.53.53.53) never "
            "sees a packet. Exclude loopback from the rule (`! -d 127.0.0.0/8`, nft "
            "`ip daddr != 127.0.0.0/8`) unless the diversion is meant."
        )
        manager = owner_of(table, chain, step.rule)
        severity = None
        if manager in _DELIBERATE:
            severity = "note"
            message += f" The rule is {manager}'s, which diverts these ports on every local address by design."
        findings.append(
            make_finding(
                me,
                message,
                RuleRef(table, chain, step.rule, 0, frozenset()),
                severity=severity,
                flows=[r.flow for r in results],
                extra={"redirected_to": where},
                advise_owner=False,
            )
        )
    return findings

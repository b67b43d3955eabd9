"""LB003: narrow loopback anti-spoofing (drops 127.0.0.1 from other interfaces, not 127/8)."""

from __future__ import annotations

import sys

from ..model import Table
from ..results import Finding
from .context import (
    INBOUND_HOOKS,
    CheckContext,
    RuleRef,
    describe_part,
    has_port_match,
    iface_class,
    make_finding,
    narrow_addr_matches,
)
from .fixes import SET_SAFETY, CheckFix

ID = "LB003"
NAME = "narrow-loopback-antispoofing"
SEVERITY = "warning"
SUMMARY = "An anti-spoofing rule drops 127.0.0.1 from other interfaces but not the rest of 127.0.0.0/8"
# Always widened, whatever `--style` says: an interface cannot stand for "any address of 127/8 not on lo".
FIX = CheckFix(
    "sometimes",
    modes=("range",),
    safety={
        "range": (
            "Fix safety: the drop now covers all of 127.0.0.0/8 on the interfaces it names. Anything that "
            "relied on another 127.x address arriving from outside lo (possible only with route_localnet=1, "
            "e.g. kube-proxy nodeports on localhost) is dropped from now on."
        ),
        "set": SET_SAFETY,
    },
)

DOC = """\
## What it does
Finds drop and reject rules meant for loopback addresses arriving on interfaces other than `lo`
(anti-spoofing: `! -i lo -s 127.0.0.1 -j DROP`, nft `iifname != "lo" ip saddr 127.0.0.1 drop`)
that name 127.0.0.1 alone instead of 127.0.0.0/8. Rules restricted to a port (Docker's "DROP
REMOTE LOOPBACK" for a port published on 127.0.0.1) are not anti-spoofing and are left alone.

## Why is this bad?
The kernel drops packets with a 127/8 source or destination on other interfaces as martians, unless
`net.ipv4.conf.<if>.route_localnet=1`, which kube-proxy used to set (CVE-2020-8558,
kubernetes#90259). Then the anti-spoofing rule is the only defence, and one that names 127.0.0.1
alone lets 127.0.0.2-127.255.255.255 from the network reach services that trust loopback.
When the host reports route_localnet on, the finding is an error.

## Example
```
-A INPUT ! -i lo -s 127.0.0.1/32 -j DROP
```

## Use instead
```
-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP
-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP
```
```
iifname != "lo" ip saddr 127.0.0.0/8 drop
```

## Fix safety
`lbfw fix` widens 127.0.0.1 to 127.0.0.0/8 (dotted spellings stay dotted) and keeps the rest of the
rule. The drop then covers all of 127/8 on the interfaces it names: only packets with a loopback
address that arrived from outside `lo` are affected, and those reach the host only with
route_localnet=1. Anything that relied on another 127.x address arriving that way (kube-proxy
nodeports on localhost in old releases) is dropped from then on. Rules owned by a firewall
manager are not rewritten; the finding says where its configuration must change.

## References
- CVE-2020-8558 and kubernetes/kubernetes#90259: route_localnet exposes 127/8 services
- RFC 1812 section 5.3.7: martian addresses must not be accepted from the network
- CIS Distribution Independent Linux Benchmark: `-A INPUT -s 127.0.0.0/8 -j DROP`
"""


def _route_localnet_on(ctx: CheckContext) -> list[str]:
    host = ctx.ruleset.host
    if host is None:
        return []
    return sorted(name for name, value in (host.route_localnet or {}).items() if str(value) == "1")


def _chain_drops(table: Table, name: str) -> bool:
    """A LOG_DROP-style chain: it ends in an unconditional drop or reject (after LOG and the like)."""
    chain = table.chains.get(name)
    if chain is None:
        return False
    for rule in chain.rules:
        if rule.action.kind in ("drop", "reject") and not rule.matches:
            return True
        if rule.action.kind not in ("continue",):
            return False
    return chain.policy == "drop"


def _drops(ref: RuleRef) -> bool:
    action = ref.rule.action
    if action.kind in ("drop", "reject"):
        return True
    if action.kind in ("jump", "goto") and action.target:
        return _chain_drops(ref.table, action.target)
    return False


def check(ctx: CheckContext) -> list[Finding]:
    me = sys.modules[__name__]
    findings: list[Finding] = []
    localnet = _route_localnet_on(ctx)
    for ref in ctx.rules(families=("ip", "inet"), hooks=frozenset(INBOUND_HOOKS), skip_nat=True):
        narrow = narrow_addr_matches(ref.rule, ref.table)
        if not narrow or not _drops(ref):
            continue
        if iface_class(ref.rule) == "lo" or has_port_match(ref.rule):
            continue
        n = narrow[0]
        addr = describe_part(n.part)
        direction = "source" if n.field == "ip.saddr" else "destination"
        message = (
            f"Anti-spoofing drops {direction} {addr} but not the rest of 127.0.0.0/8: packets from other "
            f"interfaces with {direction} 127.0.0.2-127.255.255.255 are not dropped here. "
            "Drop 127.0.0.0/8 instead."
        )
        severity = None
        if localnet:
            severity = "error"
            message += (
                f" route_localnet is on ({', '.join(localnet)}), so the kernel does not drop them as "
                "martians either (CVE-2020-8558)."
            )
        findings.append(make_finding(me, message, ref, severity=severity, extra={"field": n.field, "addresses": addr}))
    return findings

"""The firewall: does the ruleset deliver each flow of the plan (the engine `lbfw check` uses), and
is route_localnet guarded by anti-spoofing (the audit's LB005)? Pure: a Ruleset in, items out."""

from __future__ import annotations

from typing import Optional

from ..results import BLOCKED, DELIVERED
from .host import Host
from .items import Check, Item, ok, skipped

FLOW = Check(
    "DR015",
    "flow-not-delivered",
    "the firewall does not deliver a flow of the plan",
    """\
## What it checks
Every flow of the plan through the live ruleset (legacy iptables, iptables-nft and nftables together),
with the engine of `lbfw check`: the client's packets out through OUTPUT and POSTROUTING, in through
PREROUTING and INPUT, and the replies back. Needs root to read the ruleset; skipped otherwise.

## Why
A rule that accepts 127.0.0.1 alone (`-s 127.0.0.1 -j ACCEPT`) under a DROP policy lets 127.0.0.1
through and drops 127.10.0.1, 127.53.53.53 and clients bound to 127.0.0.2: the service runs and
nothing reaches it.

## Fix
Accept loopback by interface: `iptables -I INPUT -i lo -j ACCEPT` (and `-I OUTPUT -o lo -j ACCEPT`
under an OUTPUT DROP policy), nft `iif "lo" accept` / `oif "lo" accept`; `lbfw fix` writes that
change for the rule it finds (`lbfw check --plan PLAN --explain` shows the path).
""",
)

ROUTE_LOCALNET = Check(
    "DR016",
    "route-localnet-unprotected",
    "route_localnet is on without anti-spoofing",
    """\
## What it checks
When `net.ipv4.conf.*.route_localnet` is 1 for `all` or an interface other than lo: whether the ruleset
drops 127.0.0.0/8 arriving on other interfaces (the audit's LB005, with the same engine).

## Why
route_localnet lets packets with 127/8 addresses in from the network: hosts on the same network reach
services bound to loopback (CVE-2020-8558) unless a rule drops them.

## Fix
`iptables -A INPUT ! -i lo -d 127.0.0.0/8 -j DROP` and `-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP`
(nft: `iif != "lo" ip daddr 127.0.0.0/8 drop`), or `sysctl -w net.ipv4.conf.all.route_localnet=0`.
""",
)

CHECKS = (FLOW, ROUTE_LOCALNET)


def _where(step) -> str:
    if step is None:
        return ""
    place = f"{step.family} {step.table} {step.chain} ({step.hook})"
    if step.rule is not None:
        origin = step.origin.where() if step.origin is not None else ""
        return f"{place}: {step.rule.text}" + (f" [{origin}]" if origin else "")
    return f"{place}: policy {step.verdict.replace('policy-', '')}"


def flow_items(ruleset, flows, unread: Optional[str] = None) -> list:
    """DR015 for every flow: ``ruleset`` None means it could not be read (``unread`` says why)."""
    if ruleset is None:
        return [skipped(FLOW, "firewall", unread or "the ruleset was not read")]
    from ..analyze.engine import Engine

    engine = Engine(ruleset)
    items = []
    for flow in flows:
        result = engine.evaluate(flow)
        data = result.to_json()
        if result.verdict == DELIVERED:
            items.append(ok(FLOW, flow.label(), "delivered", **data))
        elif result.verdict == BLOCKED:
            items.append(
                Item(
                    FLOW,
                    "error",
                    flow.label(),
                    f"blocked by {_where(result.deciding)}",
                    why="the service starts and listens, and the firewall drops the flow's packets",
                    fix=(
                        'iptables -I INPUT -i lo -j ACCEPT   # nft: iif "lo" accept',
                        "lbfw audit && lbfw fix   # the rule that narrows loopback",
                    ),
                    data=data,
                )
            )
        else:
            items.append(
                Item(
                    FLOW,
                    "warning",
                    flow.label(),
                    f"unknown: the engine cannot decide {', '.join(result.unknown) or 'a match'}",
                    why="a match lbfw does not model decides this flow",
                    fix=("lbfw verify --plan PLAN   # real traffic, harmless probes",),
                    data=data,
                )
            )
    return items


def route_localnet_items(host: Host, ruleset, unread: Optional[str] = None) -> list:
    """DR016: only where route_localnet is on somewhere."""
    on = sorted(n for n, v in host.route_localnet.items() if str(v) == "1" and n != "lo")
    if not on:
        if host.platform == "linux" and host.route_localnet:
            return [ok(ROUTE_LOCALNET, "route_localnet", "off on every interface")]
        return []
    subject = f"route_localnet ({', '.join(on)})"
    if ruleset is None:
        return [skipped(ROUTE_LOCALNET, subject, f"route_localnet is on; {unread or 'the ruleset was not read'}")]
    from ..analyze.engine import Engine
    from ..checks import run_checks

    findings = run_checks(ruleset, Engine(ruleset), [], select={"LB005"})
    if not findings:
        return [ok(ROUTE_LOCALNET, subject, "on, and the ruleset drops 127.0.0.0/8 from other interfaces")]
    # who turned it on (Docker's userland-proxy, kube-proxy's localhostNodePorts) and the line to change
    set_by = tuple(findings[0].extra.get("set_by") or ())
    return [
        Item(
            ROUTE_LOCALNET,
            "error",
            subject,
            "route_localnet is on and nothing drops 127.0.0.0/8 arriving on other interfaces",
            why="hosts on the network can reach services bound to loopback (CVE-2020-8558)"
            + "".join(f". {cause}" for cause in set_by),
            fix=(
                "iptables -A INPUT ! -i lo -d 127.0.0.0/8 -j DROP",
                "iptables -A INPUT ! -i lo -s 127.0.0.0/8 -j DROP",
                *(f"or: {cause}" for cause in set_by),
                "or: sysctl -w net.ipv4.conf.all.route_localnet=0",
            ),
        )
    ]

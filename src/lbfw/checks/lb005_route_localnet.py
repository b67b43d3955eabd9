"""LB005: route_localnet on without a 127.0.0.0/8 drop for other interfaces."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

from ..managers import docker, kube_proxy
from ..results import Finding
from .context import INBOUND_HOOKS, CheckContext, full_loopback_addr, has_port_match, iface_class, make_finding
from .fixes import NO_FIX
from .owners import DOCKER, KUBE_PROXY, owner_of

if TYPE_CHECKING:
    from ..analyze.engine import PacketResult

ID = "LB005"
NAME = "route-localnet-unprotected"
SEVERITY = "error"
SUMMARY = "route_localnet is on and nothing drops 127.0.0.0/8 arriving on other interfaces"
FIX = NO_FIX

DOC = """\
## What it does
On a live host, reads `net.ipv4.conf.*.route_localnet`. When it is 1 for `all` or for an
interface other than `lo`, looks for a drop or reject rule on PREROUTING or INPUT that covers the
whole 127.0.0.0/8 (source or destination) and does not apply to `lo`. Reports when there is none,
and says who turned it on when lbfw can tell: Docker on its bridges (docker0, br-*) when
`"userland-proxy": false`, naming that line of /etc/docker/daemon.json; kube-proxy on `all` for
NodePorts on localhost, naming its localhostNodePorts / nodePortAddresses setting (or the files
lbfw looked at).

## Why is this bad?
With route_localnet off the kernel drops packets with a 127/8 address arriving on a real interface
as martians. kube-proxy used to turn it on so NodePorts answer on 127.0.0.1, which let hosts on the
same network reach services bound to loopback (CVE-2020-8558, kubernetes#90259): databases,
admin ports, metrics endpoints that trust loopback. Kubernetes now adds
`-d 127.0.0.0/8 ! -s 127.0.0.0/8 ... -j DROP` to KUBE-FIREWALL for this reason.

## Example
```
net.ipv4.conf.all.route_localnet = 1
*filter
:INPUT ACCEPT [0:0]
COMMIT
```

## Use instead
```
-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP
-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP
```
or set `net.ipv4.conf.all.route_localnet = 0` when nothing needs it.

## Fix safety
No automatic fix: turning route_localnet off, or adding the drop, breaks whatever relies on
reaching 127/8 from the network (kube-proxy NodePorts on 127.0.0.1 in old releases). Decide first.

## References
- CVE-2020-8558
- kubernetes/kubernetes#90259 and #91569 (the KUBE-FIREWALL drop)
- Linux ip-sysctl documentation: route_localnet
"""


def _protected(ctx: CheckContext) -> bool:
    for ref in ctx.rules(families=("ip", "inet"), hooks=frozenset(INBOUND_HOOKS), skip_nat=True):
        if ref.rule.action.kind not in ("drop", "reject"):
            continue
        if iface_class(ref.rule) == "lo" or has_port_match(ref.rule):
            continue
        if full_loopback_addr(ref.rule, ref.table):
            return True
    return False


def _reachable_from(ctx: CheckContext, iface: str) -> Optional[PacketResult]:
    """The engine's answer for the CVE-2020-8558 packets: a host on ``iface``'s network sending to
    a service on 127.0.0.1 or 127.0.0.53 (a port no rule names); the first that is not dropped, else
    the last. None when there is no engine."""
    engine = ctx.engine
    if engine is None or not hasattr(engine, "walk_packet"):
        return None
    from ..analyze.engine import Packet

    walked: Optional[PacketResult] = None
    for daddr in ("127.0.0.1", "127.0.0.53"):  # a narrow `-d 127.0.0.1 -j DROP` leaves .53 open
        probe = Packet(family="ip", saddr="192.0.2.1", daddr=daddr, proto="tcp", dport=6379, iif=iface)
        walked = engine.walk_packet(probe, ("prerouting", "input"))
        if walked.verdict != "drop":
            return walked
    return walked


def _set_by(ctx: CheckContext, on: list[str]) -> list[str]:
    """Which manager turned route_localnet on, with the line of its configuration to change."""
    host = ctx.ruleset.host
    if host is None:
        return []
    kube_runs = any(
        owner_of(table, chain) == KUBE_PROXY for table in ctx.ruleset.tables for chain in table.chains.values()
    )
    causes = (
        docker.route_localnet_cause(on, host.managers.get(DOCKER)),
        kube_proxy.route_localnet_cause(on, host.managers.get(KUBE_PROXY), kube_runs),
    )
    return [cause for cause in causes if cause is not None]


def check(ctx: CheckContext) -> list[Finding]:
    host = ctx.ruleset.host
    if host is None or not host.route_localnet:
        return []
    on = sorted(name for name, value in host.route_localnet.items() if str(value) == "1" and name != "lo")
    if not on or _protected(ctx):
        return []
    iface = next((name for name in on if name not in ("all", "default")), "eth0")
    walked = _reachable_from(ctx, iface)
    if walked is not None and walked.verdict == "drop":
        return []  # the ruleset drops them anyway (e.g. a policy drop with no rule for that port)
    message = (
        f"net.ipv4.conf.{{{','.join(on)}}}.route_localnet is 1 and no rule drops 127.0.0.0/8 arriving on "
        "other interfaces: hosts on the network can reach services bound to loopback (CVE-2020-8558). "
        "Add `-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP` or turn route_localnet off."
    )
    set_by = _set_by(ctx, on)
    if set_by:
        message += " " + " ".join(set_by)
    f = make_finding(sys.modules[__name__], message, None, extra={"route_localnet": on, "set_by": set_by})
    f.source = "live:host"
    return [f]

"""LB006: lo lacks 127.0.0.0/8 (only 127.0.0.1/32), so alternate loopback addresses fail."""

from __future__ import annotations

import sys

from ..results import Finding
from .context import CheckContext, make_finding
from .fixes import NO_FIX

ID = "LB006"
NAME = "lo-without-127-8"
SEVERITY = "warning"
SUMMARY = "The loopback interface lacks 127.0.0.0/8, so 127.0.0.2 and up fail before any rule"
FIX = NO_FIX

DOC = """\
## What it does
On a live host, checks that the local routing table holds `local 127.0.0.0/8 dev lo`, which the
kernel installs when `lo` carries 127.0.0.1/8.

## Why is this bad?
When `lo` carries only 127.0.0.1/32, the route for the rest of 127/8 is missing: binding or
connecting to 127.0.0.53 or 127.0.0.2 fails before any firewall rule is consulted, and a correct
ruleset does not help. It happens after hand-written network configuration (`address 127.0.0.1/32`)
or container images that set up lo themselves.

## Example
```
ip addr add 127.0.0.1/32 dev lo
```

## Use instead
```
ip addr add 127.0.0.1/8 dev lo
```

## Fix safety
No automatic fix: lbfw changes firewall rules only. Adding 127.0.0.1/8 to lo is safe: it only
installs the local route for the loopback block.

## References
- RFC 1122 section 3.2.1.3: 127.0.0.0/8 is loopback
- ip-address(8), ip-route(8): the local routing table
"""


def check(ctx: CheckContext) -> list[Finding]:
    host = ctx.ruleset.host
    if host is None or host.local_127_route is not False:
        return []
    addrs = ", ".join(host.lo_addrs) or "no IPv4 address"
    message = (
        f"lo carries {addrs} and the local routing table has no 127.0.0.0/8 route: connections to "
        "127.0.0.53 or from 127.0.0.2 fail before any firewall rule. Give lo 127.0.0.1/8 "
        "(`ip addr add 127.0.0.1/8 dev lo`)."
    )
    f = make_finding(sys.modules[__name__], message, None, extra={"lo_addrs": list(host.lo_addrs)})
    f.source = "live:host"
    return [f]

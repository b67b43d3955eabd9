"""LB001: loopback traffic blocked."""

from __future__ import annotations

import sys

from ..results import Finding
from ._blocked import blocked_findings
from .context import CheckContext
from .fixes import NO_FIX

ID = "LB001"
NAME = "loopback-blocked"
SEVERITY = "error"
SUMMARY = "A rule or policy drops IPv4 loopback traffic"
FIX = NO_FIX

DOC = """\
## What it does
Follows IPv4 loopback connections through every netfilter hook the way the kernel does (OUTPUT,
POSTROUTING, then PREROUTING and INPUT over `lo`, every table and backend in priority order) and
reports each rule or chain policy that drops one of them, with the connections it breaks. The set
of connections exposes the narrow-127.0.0.1 mistake: clients using the kernel's default source
(127.0.0.1) and clients bound to another address such as 127.0.0.2, to servers on 127.0.0.1,
127.0.0.53 and an address far from 127.0.0.1, over TCP and UDP, on a port no rule names and on each
port the rules single out.

## Why is this bad?
The whole 127.0.0.0/8 block is loopback. systemd-resolved listens on 127.0.0.53 and 127.0.0.54,
Debian resolves its hostname to 127.0.1.1, Docker's embedded resolver is 127.0.0.11, and load
tests bind clients to 127.0.0.2, 127.0.0.3 ... A connection needs its request to pass as NEW and
its reply as ESTABLISHED: with `-s 127.0.0.1 -j ACCEPT` under a DROP policy the SYN-ACK from
127.0.0.53 is dropped, and a client bound to 127.0.0.2 fails even when an ESTABLISHED rule hides
the first case. These failures look like broken services, not like a firewall.

When loopback is opened only to chosen users by owner matches (a deliberate lockdown, as in Tails),
the finding is a note with that evidence.

## Example
```
*filter
:INPUT DROP [0:0]
-A INPUT -s 127.0.0.1/32 -j ACCEPT
COMMIT
```

## Use instead
```
*filter
:INPUT DROP [0:0]
-A INPUT -i lo -j ACCEPT
COMMIT
```
nftables: `iif "lo" accept` at the top of the input chain.

## Fix safety
LB001 has no fix of its own: it names the flows and the rule or policy that drops them. When the
cause is a narrow accept, LB002's fix repairs it; a policy with no loopback accept at all needs an
`-i lo -j ACCEPT` rule, which the administrator adds. Remember that an accept ends only its own
base chain: a second table on the same hook with a drop policy still drops (see the flows listed).

## References
- RFC 1122 section 3.2.1.3 and RFC 5735: 127.0.0.0/8 is loopback
- systemd-resolved(8): the stub resolver on 127.0.0.53 and 127.0.0.54
- CIS Distribution Independent Linux Benchmark: "Ensure loopback traffic is configured"
"""


def check(ctx: CheckContext) -> list[Finding]:
    return blocked_findings(ctx, sys.modules[__name__], "ip")

"""LB004: IPv6 loopback (::1) blocked."""

from __future__ import annotations

import sys

from ..results import Finding
from ._blocked import blocked_findings
from .context import CheckContext
from .fixes import NO_FIX

ID = "LB004"
NAME = "ipv6-loopback-blocked"
SEVERITY = "error"
SUMMARY = "A rule or policy drops IPv6 loopback (::1) traffic"
FIX = NO_FIX

DOC = """\
## What it does
Follows IPv6 loopback connections (::1 to ::1, TCP and UDP) through every hook and reports each
rule or chain policy that drops one of them, with the connections it breaks.

## Why is this bad?
`localhost` resolves to ::1 first on most distributions (/etc/hosts lists `::1 localhost`), so a
program that connects to `localhost` tries ::1 before 127.0.0.1. An ip6tables or nftables ruleset
with a DROP policy and no IPv6 loopback accept makes those connections hang or fail, while the
IPv4 ruleset looks correct. Unlike IPv4, ::1/128 is the whole IPv6 loopback, so `-s ::1` is not
the narrow-address mistake: it is simply missing.

## Example
```
*filter
:INPUT DROP [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
```

## Use instead
```
*filter
:INPUT DROP [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
```
nftables (inet table): `iif "lo" accept`.

## Fix safety
No automatic fix: lbfw does not add rules to a ruleset on its own. Adding `-i lo -j ACCEPT` to
ip6tables also admits the host's traffic to its own global IPv6 addresses, which travels over `lo`
too; that traffic never leaves the host.

## References
- RFC 4291 section 2.5.3: the loopback address ::1
- hosts(5): `::1 localhost`
"""


def check(ctx: CheckContext) -> list[Finding]:
    return blocked_findings(ctx, sys.modules[__name__], "ip6")

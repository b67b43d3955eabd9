"""ufw: a rule `ufw allow from 127.0.0.1` made lives in /etc/ufw/user.rules (chains ufw-user-*), which
ufw rewrites and nobody edits by hand; the safe change is ufw's own command."""

from __future__ import annotations

import re

_SOURCE = re.compile(r"(?:^|\s)-s\s+(127\.0\.0\.1)(?:/32)?(?:\s|$)")
_DPORT = re.compile(r"--dport\s+(\d+)")
_PROTO = re.compile(r"(?:^|\s)-p\s+(tcp|udp)(?:\s|$)")


def commands(chain: str, rule: str) -> tuple:
    """The ufw commands that replace a narrow loopback rule of ufw-user-input (`ufw delete` the rule
    made by `ufw allow`, then `ufw allow in on lo`); () for other chains or rules."""
    if not chain.startswith(("ufw-user-input", "ufw6-user-input")) or not _SOURCE.search(rule):
        return ()
    made = "allow from 127.0.0.1"
    port, proto = _DPORT.search(rule), _PROTO.search(rule)
    if port:
        made += f" to any port {port.group(1)}" + (f" proto {proto.group(1)}" if proto else "")
    return (f"ufw delete {made}", "ufw allow in on lo")

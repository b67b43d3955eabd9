"""fail2ban's ignoreip: does it spare the whole of 127.0.0.0/8?"""

from __future__ import annotations

from ..managers.fail2ban import covers_loopback, effective_ignoreip
from .host import Host
from .items import Check, Item, ok

IGNOREIP = Check(
    "DR040",
    "fail2ban-ignoreip-narrow",
    "fail2ban may ban loopback clients other than 127.0.0.1",
    """\
## What it checks
When /etc/fail2ban exists: the `ignoreip` of `[DEFAULT]` and of every jail, from jail.conf, jail.d/*.conf,
jail.local and jail.d/*.local in fail2ban's order (later files win), covers 127.0.0.0/8.

## Why
fail2ban's `ignoreself` covers 127.0.0.1 and ::1 only: load-test clients on 127.0.0.2 and up that fail
to log in (or hit a rate limit) are banned, and the ban drops them in the firewall.

## Fix
In /etc/fail2ban/jail.local: `[DEFAULT]` `ignoreip = 127.0.0.1/8 ::1`, then `fail2ban-client reload`.
""",
)

CHECKS = (IGNOREIP,)


def host_items(host: Host) -> list:
    """DR040 when fail2ban is there."""
    if "/etc/fail2ban" not in host.files and not any(p.startswith("/etc/fail2ban/") for p in host.files):
        return []
    items = []
    for section, value in sorted(effective_ignoreip(host.files).items(), key=lambda kv: kv[0] != "DEFAULT"):
        subject = f"fail2ban [{section}]"
        if value is not None and "%(" in value:
            value = value.split("%(", 1)[0]  # an interpolated default: judge what is written out
        if covers_loopback(value):
            items.append(ok(IGNOREIP, subject, f"ignoreip = {value.strip()} covers 127.0.0.0/8"))
        else:
            shown = f"ignoreip = {value.strip()}" if value and value.strip() else "no ignoreip"
            items.append(
                Item(
                    IGNOREIP,
                    "warning",
                    subject,
                    f"{shown}: 127.0.0.2 and up can be banned",
                    why="ignoreself covers 127.0.0.1 and ::1 only",
                    fix=(f"/etc/fail2ban/jail.local: [{section}] ignoreip = 127.0.0.1/8 ::1", "fail2ban-client reload"),
                )
            )
    return items

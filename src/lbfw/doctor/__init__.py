"""`lbfw doctor`: is this host ready for the multi-loopback setup about to be deployed?

Pure logic: host facts (`host.Host`, gathered by `facts_linux` or `facts_macos`) and the plan's flows
in, `items.Item`s out. One module per concern: addresses and routes, listeners, privileges,
capacity, resolver, fail2ban, firewall flows, macOS aliases and pf. Each check documents itself
(`Check.doc`) next to its code; docs/doctor.md is generated from them (`python -m lbfw.doctor.docs`).
"""

from __future__ import annotations

from typing import Optional

from . import addresses, capacity, fail2ban, firewall, listeners, macos, privileges, resolver
from .host import Host, User
from .items import Check, Item

UNSUPPORTED = Check(
    "DR090",
    "platform-unsupported",
    "doctor cannot check this platform",
    """\
## What it checks
Whether doctor knows how to read this platform's loopback (Linux and macOS).

## Why
Elsewhere it cannot read the addresses, routes, port range or listeners, and says so instead of
guessing: every other check is skipped.

## Fix
Run doctor on Linux or macOS, or check by hand: the loopback interface carries the plan's addresses,
no wildcard listener holds the plan's ports, and the ephemeral port range is wide enough.
""",
)

CHECKS = (
    addresses.CHECKS
    + listeners.CHECKS
    + privileges.CHECKS
    + firewall.CHECKS
    + capacity.CHECKS
    + resolver.CHECKS
    + fail2ban.CHECKS
    + macos.CHECKS
    + (UNSUPPORTED,)
)
BY_ID = {c.id: c for c in CHECKS}


def diagnose(
    host: Host,
    flows=(),
    user: Optional[User] = None,
    ruleset=None,
    ruleset_unread: Optional[str] = None,
    connections: Optional[int] = None,
) -> list:
    """Every item for ``host``: the general loopback checks, and with ``flows`` (a plan) the checks of
    each address, port and flow. ``user`` runs the services (None: privileged ports are not checked);
    ``ruleset`` None: the firewall could not be read (``ruleset_unread`` says why)."""
    if host.platform not in ("linux", "macos"):
        return [
            Item(
                UNSUPPORTED,
                "note",
                host.platform or "unknown",
                f"doctor does not know how to read {host.platform or 'this platform'}'s loopback: nothing was checked",
                why="only Linux and macOS are supported",
                fix=("run the checks in docs/doctor.md by hand",),
            )
        ]
    flows = list(flows)
    items = addresses.host_items(host)
    if flows:
        items += addresses.plan_items(host, flows)
        items += listeners.plan_items(host, flows)
        items += privileges.plan_items(host, flows, user)
        items += firewall.flow_items(ruleset, flows, ruleset_unread)
        items += capacity.plan_items(host, flows, connections)
    if host.platform == "linux":
        items += firewall.route_localnet_items(host, ruleset, ruleset_unread)
    items += resolver.host_items(host, flows)
    items += fail2ban.host_items(host)
    items += macos.host_items(host)
    return items


__all__ = ["BY_ID", "CHECKS", "Host", "Item", "User", "diagnose"]

"""Privileged ports: can the user who runs the services bind the plan's server ports?"""

from __future__ import annotations

from typing import Optional

from .host import Host, User
from .items import Check, Item, ok, skipped

PRIVILEGED_PORT = Check(
    "DR014",
    "privileged-port",
    "the user cannot bind a privileged server port",
    """\
## What it checks
For every server port of the plan below `net.ipv4.ip_unprivileged_port_start` (1024 by default):
whether the user (`--user NAME|UID`, default: whoever runs doctor) is root or holds
CAP_NET_BIND_SERVICE.

## Why
An unprivileged service gets EACCES binding 127.53.53.53:53. For another user doctor cannot see
the capabilities its service manager will grant, so it reports what a plain process of that user gets.

## Fix
Give the service the capability (systemd: `AmbientCapabilities=CAP_NET_BIND_SERVICE`; a binary:
`setcap cap_net_bind_service=+ep BINARY`), or lower the limit for the namespace:
`sysctl -w net.ipv4.ip_unprivileged_port_start=53` (persist in /etc/sysctl.d/), or use a port above it.
""",
)

CHECKS = (PRIVILEGED_PORT,)


def plan_items(host: Host, flows, user: Optional[User]) -> list:
    """DR014 for every server port of the plan that is privileged here."""
    ports = sorted({(f.port, f.proto) for f in flows})
    if user is None:
        return (
            [skipped(PRIVILEGED_PORT, "privileged ports", "no user was named")]
            if any(port < 1024 for port, _proto in ports)
            else []
        )
    if host.unprivileged_port_start is None:
        if any(port < 1024 for port, _proto in ports):
            return [
                skipped(PRIVILEGED_PORT, "privileged ports", "this platform has no ip_unprivileged_port_start to read")
            ]
        return []
    start = host.unprivileged_port_start
    items = []
    for port, proto in ports:
        if port >= start:
            continue
        subject = f"port {port}/{proto} ({user.name})"
        if user.uid == 0 and user.caps_bind is not False:
            items.append(ok(PRIVILEGED_PORT, subject, "root may bind it"))
        elif user.caps_bind:
            items.append(ok(PRIVILEGED_PORT, subject, "CAP_NET_BIND_SERVICE allows it"))
        else:
            unknown = user.caps_bind is None
            why = f"ip_unprivileged_port_start is {start}: bind() by uid {user.uid} gives EACCES" + (
                " unless its service manager grants CAP_NET_BIND_SERVICE" if unknown else ""
            )
            items.append(
                Item(
                    PRIVILEGED_PORT,
                    "error",
                    subject,
                    f"{user.name} (uid {user.uid}) cannot bind port {port}",
                    why=why,
                    fix=(
                        "systemd unit: AmbientCapabilities=CAP_NET_BIND_SERVICE",
                        "or: setcap cap_net_bind_service=+ep BINARY",
                        f"or: sysctl -w net.ipv4.ip_unprivileged_port_start={port}",
                    ),
                    data={"uid": user.uid, "unprivileged_port_start": start},
                )
            )
    return items

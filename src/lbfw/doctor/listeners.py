"""Ports already held: a wildcard or exact listener on a port the plan's servers will bind, and
server ports inside the ephemeral range."""

from __future__ import annotations

from .host import Host
from .items import Check, Item, ok, skipped

PORT_HELD = Check(
    "DR012",
    "port-held",
    "a listener already holds a server port of the plan",
    """\
## What it checks
For every server address and port of the plan: is there a socket (from `ss -l`) on the same protocol
and port bound to that address, to `0.0.0.0` (for IPv4 servers), to `[::]` (IPv6 servers) or dual-stack
(`*` in `ss`: an IPv6 socket with v6only off, for both)?

## Why
On Linux a wildcard listener on 0.0.0.0:8001, or `[::]:8001` dual-stack, makes bind(127.10.0.1:8001)
fail with EADDRINUSE even with SO_REUSEADDR; UDP 0.0.0.0:53 blocks 127.53.53.53:53 (measured). A
listener on exactly the server's address is either the service already running or a conflict.
On macOS a wildcard holder lets a specific bind through only with SO_REUSEADDR.

## Fix
Bind the other service to the address it needs (`127.0.0.1:8001` instead of `0.0.0.0:8001`), move one
of them to another port, or stop it. `ss -lntup 'sport = :8001'` shows who holds it.
""",
)

EPHEMERAL_PORT = Check(
    "DR013",
    "server-port-ephemeral",
    "a server port lies in the ephemeral port range",
    """\
## What it checks
Whether a server port of the plan lies inside `ip_local_port_range` (macOS
`net.inet.ip.portrange.first`..`last`) and is not reserved.

## Why
Outgoing connections take their source ports from that range: a client may hold the port at the
moment the service starts, and then bind() fails with EADDRINUSE, at random, under load.

## Fix
`sysctl -w net.ipv4.ip_local_reserved_ports=8001` (a list, e.g. `8001,9000-9010`; persist it in
/etc/sysctl.d/), or pick a port below the range.
""",
)

CHECKS = (PORT_HELD, EPHEMERAL_PORT)


def holders(listeners, proto: str, server: str, port: int) -> list:
    """The listeners that keep ``server:port`` from being bound (or already have it)."""
    v6 = ":" in server
    found = []
    for sock in listeners:
        if sock.proto != proto or sock.port != port:
            continue
        if sock.addr == server or sock.addr == "*" or sock.addr == ("::" if v6 else "0.0.0.0"):
            found.append(sock)
    return found


def _server_endpoints(flows) -> list:
    return sorted({(f.proto, f.server, f.port) for f in flows}, key=lambda e: (e[2], e[0], ":" in e[1], e[1]))


def _subject(proto: str, server: str, port: int) -> str:
    return f"{f'[{server}]' if ':' in server else server}:{port}/{proto}"


def _held_item(host: Host, subject: str, server: str, found: list) -> Item:
    wildcard = [s for s in found if s.addr != server]
    names = ", ".join(s.label() + (f" ({s.process})" if s.process else "") for s in found)
    data = {"holders": [s.label() for s in found]}
    if not wildcard:
        return Item(
            PORT_HELD,
            "warning",
            subject,
            f"already bound by {names}",
            why="a second bind() gets EADDRINUSE: fine only if that is this plan's service, already running",
            fix=(f"ss -lntup 'sport = :{found[0].port}'",),
            data=data,
        )
    if host.platform == "macos":
        return Item(
            PORT_HELD,
            "warning",
            subject,
            f"a wildcard listener holds the port: {names}",
            why="macOS lets a specific address share the port only when the new socket sets SO_REUSEADDR",
            fix=("bind the other service to 127.0.0.1 instead of the wildcard",),
            data=data,
        )
    dual = any(s.addr == "*" for s in wildcard)
    return Item(
        PORT_HELD,
        "error",
        subject,
        f"a wildcard listener holds the port: {names}",
        why=(
            "bind() of the server gets EADDRINUSE, even with SO_REUSEADDR"
            + (" (a dual-stack [::] socket covers IPv4 as well)" if dual else "")
        ),
        fix=(
            "bind the other service to 127.0.0.1 (not the wildcard), or move one of them to another port",
            f"ss -lntup 'sport = :{found[0].port}'",
        ),
        data=data,
    )


def plan_items(host: Host, flows) -> list:
    """DR012 and DR013 for every server address and port of the plan."""
    items = []
    for proto, server, port in _server_endpoints(flows):
        subject = _subject(proto, server, port)
        if host.listeners is None:
            items.append(skipped(PORT_HELD, subject, host.unread.get("listeners", "listeners were not read")))
        else:
            found = holders(host.listeners, proto, server, port)
            items.append(
                _held_item(host, subject, server, found)
                if found
                else ok(PORT_HELD, subject, "no listener holds the port")
            )
    ports = sorted({port for _proto, _server, port in _server_endpoints(flows)})
    if host.port_range is not None:
        first, last = host.port_range
        for port in ports:
            if first <= port <= last and port not in host.reserved_ports:
                fix = (
                    (f"sudo sysctl -w net.inet.ip.portrange.first={port + 1}   # or move the port below {first}",)
                    if host.platform == "macos"
                    else (
                        f"sysctl -w net.ipv4.ip_local_reserved_ports={_with(host.reserved_ports, port)}",
                        "persist it in /etc/sysctl.d/60-lbfw.conf",
                    )
                )
                items.append(
                    Item(
                        EPHEMERAL_PORT,
                        "note",
                        f"port {port}",
                        f"port {port} lies in the ephemeral range {first}-{last}",
                        why="an outgoing connection may hold it when the service starts (EADDRINUSE)",
                        fix=fix,
                    )
                )
    return items


def _with(reserved: frozenset, port: int) -> str:
    """`ip_local_reserved_ports` as a list that adds ``port`` to what is reserved already."""
    ports = sorted(reserved | {port})
    parts = []
    start = prev = ports[0]
    for p in ports[1:]:
        if p == prev + 1:
            prev = p
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = p
    parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ",".join(parts)

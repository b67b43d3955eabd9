"""Capacity: how many concurrent TCP connections the plan's flows can hold, from the ephemeral port
range, the reserved ports, bind()-before-connect(), RLIMIT_NOFILE and the connection tracking limit.

Measured on Linux (private namespaces): one client address gets exactly `last - first + 1` minus the
reserved ports concurrent connections to one server ip:port (28,232 with 32768-60999), whether the
client does not bind, binds (addr, 0) or sets IP_BIND_ADDRESS_NO_PORT. With bind() before connect()
the ports are exclusive per source address: a second server gets none, and once the range is held
every other connect() on the host fails. A port stays in TIME_WAIT for 60 s (macOS 30 s) after an
active close, so churn with bind() is about ports / TIME_WAIT new connections per second per address.
"""

from __future__ import annotations

from typing import Optional

from .host import Host
from .items import Check, Item, ok, skipped

PER_ADDRESS = Check(
    "DR020",
    "connections-per-address",
    "connections each client address can hold",
    """\
## What it checks
From the ephemeral port range (`ip_local_port_range`, macOS `net.inet.ip.portrange.first`/`last`) less
`ip_local_reserved_ports`: how many concurrent TCP connections one client address can open to one
server ip:port, for every client address and TCP server of the plan, and the churn a bound client
reaches before TIME_WAIT holds every port. With `--connections N` the plan's figure is compared.

## Why
Each connection from one source address to one server ip:port needs its own source port: past the
range connect() fails with EADDRNOTAVAIL. Spreading clients over 127.0.0.2, 127.0.0.3 ... multiplies
the figure, which is why load tests do it.

## Fix
Widen the range (`sysctl -w net.ipv4.ip_local_port_range="1024 65535"`; macOS `sudo sysctl -w
net.inet.ip.portrange.first=1024`), spread clients over more source addresses, or add server ports.
""",
)

BIND_EXHAUSTS = Check(
    "DR021",
    "bind-before-connect-exhausts",
    "bind() before connect() can exhaust the range",
    """\
## What it checks
For every bound client address of the plan: whether bind(addr, 0) before connect() can hold the whole
ephemeral range, because the address talks to more than one server, or because `--connections`
asks for more than the range holds.

## Why
A socket bound with port 0 takes a port for itself before the kernel knows the destination, so the
port cannot be shared with other servers: once the range is held bind() fails with EADDRINUSE, the
second server gets 0 connections and every other connect() on the host fails too (measured). Churn
is about 470 new connections per second per address with bind() (TIME_WAIT), about 28,000/s with
IP_BIND_ADDRESS_NO_PORT and
`tcp_tw_reuse=2`.

## Fix
Set `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2+: `setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)`)
before bind(addr, 0): the port is chosen at connect() per destination, so each server gets the whole
range. Keep `net.ipv4.tcp_tw_reuse` at 1 or 2 for churn.
""",
)

NOFILE = Check(
    "DR022",
    "nofile-limit",
    "RLIMIT_NOFILE is below the plan's scale",
    """\
## What it checks
The plan's concurrent connections (with `--connections N`: N per flow; otherwise the most the port
range allows) against the soft RLIMIT_NOFILE of this process (`ulimit -n`).

## Why
Every connection is a file descriptor in the client and another in the server: past the limit
socket() and accept() fail with EMFILE long before ports run out.

## Fix
`ulimit -n 1048576` for a shell, `LimitNOFILE=1048576` in a systemd unit, or `nofile` in
/etc/security/limits.conf; macOS `launchctl limit maxfiles`.
""",
)

CONNTRACK = Check(
    "DR023",
    "conntrack-limit",
    "the connection tracking table is smaller than the plan's scale",
    """\
## What it checks
The plan's concurrent connections against `net.netfilter.nf_conntrack_max` (macOS: pf's states
limit when pf is enabled).

## Why
Every connection takes a conntrack entry, and entries stay about 120 s after close (TIME_WAIT): a
full table drops new connections ("nf_conntrack: table full, dropping packet") and older unreplied
UDP entries are evicted silently.

## Fix
`sysctl -w net.netfilter.nf_conntrack_max=1048576` (persist in /etc/sysctl.d/), or exempt loopback:
nft `table inet raw { chain pre { type filter hook prerouting priority raw; iif lo notrack } chain out
{ type filter hook output priority raw; oif lo notrack } }` (rules that match ct state then see UNTRACKED).
""",
)

CHECKS = (PER_ADDRESS, BIND_EXHAUSTS, NOFILE, CONNTRACK)


def ports_available(host: Host) -> Optional[int]:
    """Source ports one client address can use towards one server ip:port."""
    if host.port_range is None:
        return None
    first, last = host.port_range
    return max(0, last - first + 1 - sum(1 for p in host.reserved_ports if first <= p <= last))


def _default_client(server: str) -> str:
    return "::1" if ":" in server else "127.0.0.1"


def plan_items(host: Host, flows, connections: Optional[int] = None) -> list:
    """DR020-DR023 for the plan's TCP flows (UDP needs one port per socket, not per peer)."""
    tcp = [f for f in flows if f.proto == "tcp"]
    if not tcp:
        return []
    ports = ports_available(host)
    if ports is None:
        return [skipped(PER_ADDRESS, "ephemeral ports", host.unread.get("ports", "the port range was not read"))]
    assert host.port_range is not None  # ports_available read it
    first, last = host.port_range
    servers_of: dict = {}
    bound = set()
    for f in tcp:
        client = f.client or _default_client(f.server)
        servers_of.setdefault(client, set()).add((f.server, f.port))
        if f.client is not None:
            bound.add(client)
    tw = host.time_wait_seconds or 60
    churn = ports // tw
    figures = {
        "port_range": [first, last],
        "reserved_in_range": (last - first + 1) - ports,
        "per_client_address_and_server": ports,
        "time_wait_seconds": tw,
        "bind_churn_per_second": churn,
        "client_addresses": len(servers_of),
    }
    large = bool(bound) or len(tcp) >= 8 or connections is not None
    message = (
        f"{ports} concurrent connections per client address and server ip:port "
        f"(ports {first}-{last}"
        + (f", {figures['reserved_in_range']} reserved" if figures["reserved_in_range"] else "")
        + f"); with bind() about {churn} new connections/s per address"
    )
    items = [
        Item(
            PER_ADDRESS,
            "note" if large else "ok",
            "ephemeral ports",
            message,
            why="each connection from one address to one server ip:port needs its own source port",
            data=figures,
        )
    ]

    # the most the plan can hold at once: per flow the range (or --connections), except that a bound
    # address shares one range over all its servers
    total = 0
    for client, servers in sorted(servers_of.items()):
        want = connections if connections is not None else ports
        if client in bound:
            total += min(want * len(servers), ports) if connections is None else want * len(servers)
        else:
            total += want * len(servers)
        items.extend(_exhaustion(client, servers, client in bound, ports, connections))
    if not large:
        return items
    items.append(
        _against_limit(
            NOFILE,
            "RLIMIT_NOFILE",
            host.nofile[0] if host.nofile else None,
            total,
            connections,
            fix=("ulimit -n 1048576   # systemd: LimitNOFILE=1048576",),
            why_extra=" with EMFILE (the limit read is doctor's own, `ulimit -n`; a service "
            "gets its unit's LimitNOFILE=)",
        )
    )
    if host.conntrack_max is None:
        items.append(skipped(CONNTRACK, host.conntrack_name, host.unread.get("conntrack", "no limit was read")))
    else:
        fix = (
            ("pf: set limit states 1000000 in /etc/pf.conf, or `set skip on lo0`",)
            if host.platform == "macos"
            else ("sysctl -w net.netfilter.nf_conntrack_max=1048576", "persist it in /etc/sysctl.d/60-lbfw.conf")
        )
        items.append(
            _against_limit(
                CONNTRACK,
                host.conntrack_name,
                host.conntrack_max,
                total,
                connections,
                fix=fix,
                why_extra="; entries stay ~120 s after close",
            )
        )
    return items


def _exhaustion(client: str, servers: set, is_bound: bool, ports: int, connections: Optional[int]) -> list:
    subject = f"{client} (client)"
    n = len(servers)
    nopor = "set IP_BIND_ADDRESS_NO_PORT before bind(addr, 0): the port is then chosen per destination"
    if connections is not None and connections > ports:
        return [
            Item(
                BIND_EXHAUSTS,
                "error",
                subject,
                f"{connections} connections per server asked, {ports} source ports exist",
                why="connect() fails with EADDRNOTAVAIL past the range",
                fix=(
                    "spread the clients over more source addresses",
                    'sysctl -w net.ipv4.ip_local_port_range="1024 65535"',
                ),
                data={"servers": n, "ports": ports},
            )
        ]
    if not is_bound:
        return []
    if n > 1 or (connections is not None and connections * n > ports):
        need = f"{connections * n} ports" if connections is not None else f"up to {ports * n} ports"
        return [
            Item(
                BIND_EXHAUSTS,
                "warning",
                subject,
                f"bound to {client} with {n} servers: bind() before connect() holds one range of {ports} "
                f"ports for all of them ({need} wanted)",
                why="bind(addr, 0) makes a port exclusive to the address: the next server gets none, "
                "and once the range is held every other connect() on the host fails",
                fix=(nopor,),
                data={"servers": n, "ports": ports},
            )
        ]
    return [
        Item(
            BIND_EXHAUSTS,
            "note",
            subject,
            f"bound to {client}: at full use bind() before connect() holds all {ports} ports",
            why="once the range is held every other connect() on the host fails",
            fix=(nopor,),
            data={"servers": n, "ports": ports},
        )
    ]


def _against_limit(
    check: Check,
    name: str,
    limit: Optional[int],
    total: int,
    connections: Optional[int],
    fix: tuple,
    why_extra: str = "",
) -> Item:
    if limit is None:
        return skipped(check, name, "not read")
    data = {"limit": limit, "plan_connections": total, "from": "--connections" if connections else "port range"}
    if total <= limit:
        return ok(check, name, f"{limit} is enough for the plan's {total} connections", **data)
    if connections is None:
        return Item(
            check,
            "note",
            name,
            f"{limit}, and at full use the plan's flows hold up to {total} connections",
            why=f"past {limit} new connections fail{why_extra}",
            fix=fix,
            data=data,
        )
    return Item(
        check,
        "warning",
        name,
        f"{limit}, and the plan asks for {total} connections",
        why=f"past {limit} new connections fail{why_extra}",
        fix=fix,
        data=data,
    )

"""Loopback addresses and routes: is lo up, does it carry 127.0.0.0/8 and ::1, and can every
address the plan names be bound (Linux: a `local` route on lo; macOS: an lo0 alias)?"""

from __future__ import annotations

import ipaddress

from .host import Host
from .items import Check, Item, ok, skipped

LO_DOWN = Check(
    "DR001",
    "lo-down",
    "the loopback interface is down",
    """\
## What it checks
Whether the loopback interface (`lo`, macOS `lo0`) is administratively up.

## Why
With lo down, binding 127.x.y.z still succeeds (the addresses and the `local` route stay), but every
connect() fails: ENETUNREACH, or the SYN is dropped on the down interface and connect() times out
(both measured). Services start and then nothing can reach them, and ::1 disappears from lo.

## Fix
`ip link set lo up` (macOS: `sudo ifconfig lo0 up`). Something brought it down: look for
`ip link set lo down` in scripts, or a network manager told to manage lo.
""",
)

LO_NARROW = Check(
    "DR002",
    "lo-without-127-8",
    "lo does not make all of 127.0.0.0/8 local",
    """\
## What it checks
Whether lo carries `127.0.0.1/8` and the local routing table holds `local 127.0.0.0/8 dev lo`, the
route that makes every 127.x.y.z an address of this host. On macOS, lo0 carries 127.0.0.1 alone by
design and every other address needs its own alias: this is a note there (an error when `netstat -rn`
shows no 127 route on lo0), and the plan's addresses are checked one by one (DR010, DR011).

## Why
With lo as 127.0.0.1/32 (or the route deleted), binding 127.0.0.2 gives EADDRNOTAVAIL and
connecting to it ENETUNREACH; with a default route the packet goes to the gateway and times out
after 3 s (measured). systemd-resolved's 127.0.0.53, Debian's 127.0.1.1 hostname and every
service on another 127/8 address fail before any firewall rule is consulted.

## Fix
`ip addr replace 127.0.0.1/8 dev lo` (and remove the /32: `ip addr del 127.0.0.1/32 dev lo`);
`ip route replace local 127.0.0.0/8 dev lo table local` alone also repairs it. Make it persistent
where lo is configured: ifupdown (`/etc/network/interfaces`: `iface lo inet loopback`, no
`address 127.0.0.1/32`), netplan (`/etc/netplan/*.yaml`: lo's `addresses: [127.0.0.1/8]`),
systemd-networkd (`/etc/systemd/network/lo.network`: `[Match] Name=lo`, `[Network] Address=127.0.0.1/8`).
""",
)

NONLOCAL_BIND = Check(
    "DR003",
    "nonlocal-bind-hides-missing-route",
    "ip_nonlocal_bind hides a missing route",
    """\
## What it checks
Whether `net.ipv4.ip_nonlocal_bind` is 1 while 127.0.0.0/8 is not local.

## Why
With ip_nonlocal_bind=1 and a /32 lo, bind(127.0.0.2) succeeds and connect() fails (measured): the
service starts cleanly and the real cause, the missing route, is hidden.

## Fix
Repair lo (DR002). ip_nonlocal_bind is for addresses that arrive later (keepalived); it does not
make 127/8 work.
""",
)

IPV6_LOOPBACK = Check(
    "DR004",
    "ipv6-loopback-missing",
    "lo does not carry ::1",
    """\
## What it checks
Whether lo carries `::1/128`.

## Why
`localhost` resolves to ::1 first on most systems; without ::1 clients fall back slowly or fail.
IPv6 has no loopback /8: ::1 is the only IPv6 loopback address, and a second one for a service
(`::2`) exists only after `ip -6 addr add ::2/128 dev lo` (macOS: `ifconfig lo0 inet6 ::2 prefixlen
128 alias`).

## Fix
`sysctl -w net.ipv6.conf.lo.disable_ipv6=0` and `ip -6 addr add ::1/128 dev lo`.
""",
)

SERVER_ADDR = Check(
    "DR010",
    "server-address-not-local",
    "a server address of the plan cannot be bound",
    """\
## What it checks
For every server address of the plan: is it local on loopback (Linux: covered by a `local` route on
lo, which 127.0.0.1/8 gives to the whole /8; IPv6 and macOS: configured on lo itself)?

## Why
bind() on an address that is not local fails with EADDRNOTAVAIL (macOS: errno 49), so the service
does not start; with ip_nonlocal_bind=1 it starts and no client can reach it.

## Fix
Linux, IPv4: repair lo (`ip addr replace 127.0.0.1/8 dev lo`). IPv6: `ip -6 addr add ::2/128 dev lo`
per address. macOS: `sudo ifconfig lo0 alias 127.10.0.1 netmask 255.255.255.255 up` per address,
made persistent with a LaunchDaemon (`lbfw doctor --plan PLAN --emit-launchd`).
""",
)

CLIENT_ADDR = Check(
    "DR011",
    "client-address-not-local",
    "a client address of the plan cannot be bound",
    """\
## What it checks
For every client (source) address of the plan: is it local on loopback, as for DR010?

## Why
A load-test client that binds 127.0.0.2 before connecting gets EADDRNOTAVAIL (macOS errno 49) when
the address is not local: the test spreads over fewer addresses than planned, or fails.

## Fix
As for DR010.
""",
)

CHECKS = (LO_DOWN, LO_NARROW, NONLOCAL_BIND, IPV6_LOOPBACK, SERVER_ADDR, CLIENT_ADDR)


def persistence_lines(host: Host) -> tuple:
    """Where to make lo's 127.0.0.1/8 persistent, for the network managers this host has
    (all three when none is found)."""
    lines = []
    have = host.files
    if "/etc/network/interfaces" in have:
        lines.append("ifupdown: /etc/network/interfaces: `iface lo inet loopback` with no `address 127.0.0.1/32`")
    if "/etc/netplan" in have:
        lines.append(
            "netplan: /etc/netplan/*.yaml: `ethernets: {lo: {addresses: [127.0.0.1/8]}}`, then `netplan apply`"
        )
    if "/etc/systemd/network" in have:
        lines.append(
            "systemd-networkd: /etc/systemd/network/lo.network: `[Match] Name=lo` `[Network] Address=127.0.0.1/8`"
        )
    return tuple(lines) or (
        "ifupdown: /etc/network/interfaces: `iface lo inet loopback` with no `address 127.0.0.1/32`",
        "netplan: /etc/netplan/*.yaml: `ethernets: {lo: {addresses: [127.0.0.1/8]}}`",
        "systemd-networkd: /etc/systemd/network/lo.network: `[Match] Name=lo` `[Network] Address=127.0.0.1/8`",
    )


def alias_fix(host: Host, addr: str) -> tuple:
    """The commands that make ``addr`` local on this platform."""
    v6 = ":" in addr
    if host.platform == "macos":
        if v6:
            return (
                f"sudo ifconfig lo0 inet6 {addr} prefixlen 128 alias",
                "persist: lbfw doctor --plan PLAN --emit-launchd (a LaunchDaemon with RunAtLoad)",
            )
        return (
            f"sudo ifconfig lo0 alias {addr} netmask 255.255.255.255 up",
            "persist: lbfw doctor --plan PLAN --emit-launchd (a LaunchDaemon with RunAtLoad)",
        )
    if v6:
        enable = ("sysctl -w net.ipv6.conf.lo.disable_ipv6=0",) if addr == "::1" else ()
        return (*enable, f"ip -6 addr add {addr}/128 dev lo")
    return (
        "ip addr replace 127.0.0.1/8 dev lo",
        "ip addr del 127.0.0.1/32 dev lo   # if lo has it",
        *persistence_lines(host),
    )


def _v4_wide(host: Host) -> bool:
    return bool(host.is_local("127.255.255.254")) and bool(host.is_local("127.0.0.2"))


def host_items(host: Host) -> list:
    """lo up, the /8, ip_nonlocal_bind and ::1: the checks that need no plan."""
    items = []
    lo = host.lo_name
    if host.lo_up is None:
        items.append(skipped(LO_DOWN, lo, host.unread.get("lo", "lo's state was not read")))
    elif not host.lo_up:
        up = "sudo ifconfig lo0 up" if host.platform == "macos" else "ip link set lo up"
        items.append(
            Item(
                LO_DOWN,
                "error",
                lo,
                f"{lo} is down",
                why="binding still succeeds but every connect() over loopback fails (ENETUNREACH or a timeout)",
                fix=(up,),
            )
        )
    else:
        items.append(ok(LO_DOWN, lo, f"{lo} is up"))

    if host.local_nets is None:
        items.append(skipped(LO_NARROW, lo, host.unread.get("routes", "the local routes were not read")))
    elif host.platform == "macos" and "route127" in host.unread:
        items.append(
            Item(
                LO_NARROW,
                "error",
                lo,
                "netstat shows no 127.0.0.0/8 route on lo0",
                why="packets to 127/8 aliases follow the default route instead of lo0",
                fix=("sudo ifconfig lo0 127.0.0.1 netmask 255.0.0.0 up   # re-creates the network route",),
            )
        )
    elif host.platform == "macos":
        aliases = [a for a in host.lo_addrs if "." in a and not a.startswith("127.0.0.1/")]
        carries = f"127.0.0.1 and {len(aliases)} alias(es)" if aliases else "127.0.0.1 alone"
        items.append(
            Item(
                LO_NARROW,
                "note",
                lo,
                f"lo0 carries {carries}: on macOS every other 127/8 address needs its own alias",
                why="macOS routes 127/8 to lo0 but binds only the addresses lo0 carries (errno 49)",
                fix=("sudo ifconfig lo0 alias 127.0.0.2 netmask 255.255.255.255 up",),
                data={"aliases": aliases},
            )
        )
    elif _v4_wide(host):
        items.append(ok(LO_NARROW, lo, "127.0.0.0/8 is local on lo", lo_addrs=list(host.lo_addrs)))
    else:
        v4 = [a for a in host.lo_addrs if "." in a]
        items.append(
            Item(
                LO_NARROW,
                "error",
                lo,
                f"lo carries {', '.join(v4) or 'no IPv4 address'} and there is no "
                "`local 127.0.0.0/8` route: only those addresses work",
                why="bind(127.0.0.2) gives EADDRNOTAVAIL, connect() ENETUNREACH, or with a default route "
                "the packet goes to the gateway and times out after 3 s",
                fix=("ip addr replace 127.0.0.1/8 dev lo", "ip addr del 127.0.0.1/32 dev lo", *persistence_lines(host)),
                data={"lo_addrs": list(host.lo_addrs), "local_nets": list(host.local_nets)},
            )
        )
        if host.nonlocal_bind:
            items.append(
                Item(
                    NONLOCAL_BIND,
                    "warning",
                    "net.ipv4.ip_nonlocal_bind",
                    "ip_nonlocal_bind is 1: services bind 127.0.0.2 and then cannot be reached",
                    why="bind succeeds, connect fails: the missing route is hidden",
                    fix=("ip addr replace 127.0.0.1/8 dev lo",),
                )
            )
    if (
        host.platform == "linux"
        and host.nonlocal_bind is not None
        and not (host.nonlocal_bind and host.local_nets is not None and not _v4_wide(host))
    ):
        items.append(ok(NONLOCAL_BIND, "net.ipv4.ip_nonlocal_bind", "nothing hidden"))

    if host.local_nets is not None:
        if host.is_local("::1"):
            items.append(ok(IPV6_LOOPBACK, lo, f"::1 is on {lo}"))
        else:
            fix = (
                ("sudo ifconfig lo0 inet6 ::1 prefixlen 128",)
                if host.platform == "macos"
                else ("sysctl -w net.ipv6.conf.lo.disable_ipv6=0", "ip -6 addr add ::1/128 dev lo")
            )
            items.append(
                Item(
                    IPV6_LOOPBACK,
                    "warning",
                    lo,
                    f"::1 is not on {lo}",
                    why="localhost resolves to ::1 first on most systems",
                    fix=fix,
                )
            )
    return items


def plan_items(host: Host, flows) -> list:
    """DR010 and DR011 for every address the plan names."""
    items = []
    servers = sorted({f.server for f in flows}, key=_addr_key)
    clients = sorted({f.client for f in flows if f.client is not None}, key=_addr_key)
    for check, addrs, role in ((SERVER_ADDR, servers, "server"), (CLIENT_ADDR, clients, "client")):
        for addr in addrs:
            subject = f"{addr} ({role})"
            local = host.is_local(addr)
            if local is None:
                items.append(skipped(check, subject, host.unread.get("routes", "the local addresses were not read")))
            elif local:
                items.append(ok(check, subject, f"{addr} is local on {host.lo_name}"))
            else:
                errno = "errno 49 (EADDRNOTAVAIL)" if host.platform == "macos" else "EADDRNOTAVAIL"
                why = f"bind({addr}) fails with {errno}"
                if host.nonlocal_bind and ":" not in addr:
                    why = f"ip_nonlocal_bind=1: bind({addr}) succeeds but connect() to it fails (the cause is hidden)"
                items.append(
                    Item(
                        check,
                        "error",
                        subject,
                        f"{addr} is not local on {host.lo_name}",
                        why=why,
                        fix=alias_fix(host, addr),
                    )
                )
    return items


def _addr_key(addr: str) -> tuple:
    ip = ipaddress.ip_address(addr)
    return (ip.version, int(ip))

"""The resolver: loopback nameservers in /etc/resolv.conf, systemd-resolved's per-link DNS servers,
and macOS, whose system resolver does not read /etc/resolv.conf."""

from __future__ import annotations

import ipaddress
import re

from .host import Host
from .items import Check, Item, ok
from .listeners import holders

NAMESERVER = Check(
    "DR030",
    "loopback-nameserver",
    "a loopback nameserver in resolv.conf cannot answer",
    """\
## What it checks
For every `nameserver` on 127/8 or ::1 in /etc/resolv.conf: is the address local, and does something
listen on port 53/udp there (itself or a wildcard)?

## Why
A nameserver on 127.53.53.53 needs the /8 on lo, and until the DNS server runs every lookup waits for
the resolver's timeout (5 s by default) before trying the next one.

## Fix
Repair lo (DR002), start the DNS server before pointing resolv.conf at it, and keep a second
`nameserver` line for the time it is down.
""",
)

PER_LINK_DNS = Check(
    "DR031",
    "resolved-per-link-loopback-dns",
    "systemd-resolved has a per-link loopback DNS server",
    """\
## What it checks
systemd-networkd `.network` files with `DNS=` on 127/8 or ::1 (per-link DNS servers of systemd-resolved).

## Why
systemd-resolved sends a link's queries out of that link: a per-link DNS server on 127.x.y.z is not
reached and lookups time out; a global `DNS=` in resolved.conf works.

## Fix
Move the address to `[Resolve] DNS=127.53.53.53` in /etc/systemd/resolved.conf (or a drop-in in
/etc/systemd/resolved.conf.d/), remove it from the link, then `systemctl restart systemd-resolved`.
""",
)

MACOS_RESOLV = Check(
    "DR032",
    "macos-resolv-conf-ignored",
    "macOS does not use /etc/resolv.conf",
    """\
## What it checks
On macOS, whether a loopback DNS server of the plan (port 53) or of /etc/resolv.conf is among the
system resolver's servers (`scutil --dns`).

## Why
The system resolver (mDNSResponder) ignores /etc/resolv.conf: only tools such as dig read it.
Applications keep using the DHCP servers.

## Fix
For one domain: `/etc/resolver/DOMAIN` with `nameserver 127.53.53.53`; for everything: set the
server in System Settings > Network > DNS (`networksetup -setdnsservers Wi-Fi 127.53.53.53`).
""",
)

CHECKS = (NAMESERVER, PER_LINK_DNS, MACOS_RESOLV)

_NAMESERVER = re.compile(r"^\s*nameserver\s+(\S+)", re.M)
_DNS_LINE = re.compile(r"^\s*DNS\s*=\s*(.+)$", re.M)


def _loopback(text: str):
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0].split("#", 1)[0])
    except ValueError:
        return None
    return str(addr) if addr.is_loopback else None


def loopback_nameservers(resolv_conf: str) -> list:
    """The loopback `nameserver` addresses of a resolv.conf, in order."""
    return [a for a in (_loopback(m.group(1)) for m in _NAMESERVER.finditer(resolv_conf)) if a]


def host_items(host: Host, flows=()) -> list:
    """DR030-DR032."""
    items = []
    resolv = host.files.get("/etc/resolv.conf")
    if resolv is not None and host.platform != "macos":
        for addr in loopback_nameservers(resolv):
            subject = f"nameserver {addr}"
            if host.is_local(addr) is False:
                items.append(
                    Item(
                        NAMESERVER,
                        "error",
                        subject,
                        f"{addr} is not local on lo",
                        why="every lookup fails (EADDRNOTAVAIL/ENETUNREACH) before any DNS server is asked",
                        fix=("ip addr replace 127.0.0.1/8 dev lo",),
                    )
                )
            elif host.listeners is not None and not holders(host.listeners, "udp", addr, 53):
                items.append(
                    Item(
                        NAMESERVER,
                        "warning",
                        subject,
                        f"nothing listens on {addr}:53/udp",
                        why="lookups wait for the resolver's timeout before the next nameserver",
                        fix=("start the DNS server first, and keep a second nameserver line",),
                    )
                )
            else:
                items.append(ok(NAMESERVER, subject, "local, and something listens on port 53"))
    for path, text in sorted(host.files.items()):
        if not path.endswith(".network") or not text:
            continue
        for m in _DNS_LINE.finditer(text):
            for word in m.group(1).split():
                addr = _loopback(word)
                if addr and addr not in ("127.0.0.53", "127.0.0.54"):
                    items.append(
                        Item(
                            PER_LINK_DNS,
                            "warning",
                            path,
                            f"per-link DNS={addr}",
                            why="systemd-resolved does not reach a per-link DNS server on loopback: lookups time out",
                            fix=(
                                f"/etc/systemd/resolved.conf.d/lbfw.conf: [Resolve] DNS={addr}",
                                f"remove DNS={addr} from {path}",
                                "systemctl restart systemd-resolved",
                            ),
                        )
                    )
    if host.platform == "macos":
        wanted = sorted({f.server for f in flows if f.port == 53} | set(loopback_nameservers(resolv or "")))
        system = set(host.dns_servers or ())
        for addr in wanted:
            if addr in system:
                items.append(ok(MACOS_RESOLV, f"nameserver {addr}", "the system resolver uses it"))
            else:
                items.append(
                    Item(
                        MACOS_RESOLV,
                        "note",
                        f"nameserver {addr}",
                        f"{addr} is not among the system resolver's servers (scutil --dns)",
                        why="macOS applications ignore /etc/resolv.conf",
                        fix=(
                            f"sudo sh -c 'mkdir -p /etc/resolver && echo \"nameserver {addr}\" > /etc/resolver/DOMAIN'",
                        ),
                    )
                )
    return items

"""macOS only: lo0 aliases that vanish at reboot, aliases with a wide netmask, pf keeping state on
lo0, and the LaunchDaemon (`--emit-launchd`) that adds a plan's aliases at boot."""

from __future__ import annotations

import ipaddress
import plistlib

from .host import Host
from .items import Check, Item, ok, skipped

LAUNCHD_LABEL = "org.lbfw.loopback-aliases"
LAUNCHD_PATH = f"/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist"

NOT_PERSISTENT = Check(
    "DR050",
    "macos-alias-not-persistent",
    "an lo0 alias vanishes at reboot",
    """\
## What it checks
On macOS, for every lo0 address besides 127.0.0.1 and ::1 (and every address the plan needs): does a
LaunchDaemon in /Library/LaunchDaemons add it at boot (`ifconfig lo0 alias ADDR` in its ProgramArguments)?

## Why
`ifconfig lo0 alias` lasts until the next reboot: the services that bind the alias fail to start
afterwards (errno 49), long after whoever set it up has moved on.

## Fix
`lbfw doctor --plan PLAN --emit-launchd | sudo tee /Library/LaunchDaemons/org.lbfw.loopback-aliases.plist`,
then `sudo launchctl bootstrap system /Library/LaunchDaemons/org.lbfw.loopback-aliases.plist`
(a LaunchDaemon with RunAtLoad that runs the `ifconfig lo0 alias` lines).
""",
)

WIDE_NETMASK = Check(
    "DR051",
    "macos-alias-wide-netmask",
    "an lo0 alias has a netmask wider than /32",
    """\
## What it checks
On macOS, lo0 aliases other than 127.0.0.1 whose netmask is not 255.255.255.255.

## Why
Each alias with netmask 255.0.0.0 adds another 127/8 network route: with hundreds of them
mDNSResponder spins, re-reading the interface list. A /32 alias binds just as well.

## Fix
`sudo ifconfig lo0 -alias ADDR` and `sudo ifconfig lo0 alias ADDR netmask 255.255.255.255 up`.
""",
)

PF_STATE = Check(
    "DR052",
    "macos-pf-keeps-state-on-lo0",
    "pf is enabled and keeps state on lo0",
    """\
## What it checks
On macOS, as root: whether pf is enabled (`pfctl -s info`) and /etc/pf.conf lacks `set skip on lo0`.

## Why
pf then filters loopback and keeps a state entry per connection, like Linux conntrack: its states limit
(`pfctl -s memory`) caps the connections a load test opens, and a block rule can catch 127/8 aliases.

## Fix
Add `set skip on lo0` to /etc/pf.conf and `sudo pfctl -f /etc/pf.conf`.
""",
)

CHECKS = (NOT_PERSISTENT, WIDE_NETMASK, PF_STATE)


def _addr_key(addr: str) -> tuple:
    ip = ipaddress.ip_address(addr)
    return (ip.version, int(ip))


def _extra_addrs(host: Host) -> list:
    return [a for a in host.lo_addrs if a.split("/")[0] not in ("127.0.0.1", "::1")]


def host_items(host: Host) -> list:
    """DR050-DR052 (macOS only)."""
    if host.platform != "macos":
        return []
    items = []
    # an alias that is missing altogether is DR010/DR011's business
    wanted = sorted({a.split("/")[0] for a in _extra_addrs(host)}, key=_addr_key)
    persisted = set(host.launchd_aliases or ())
    for addr in wanted:
        subject = f"{addr} (lo0 alias)"
        if host.launchd_aliases is None:
            items.append(skipped(NOT_PERSISTENT, subject, "/Library/LaunchDaemons was not read"))
        elif addr in persisted:
            items.append(ok(NOT_PERSISTENT, subject, "a LaunchDaemon adds it at boot"))
        else:
            items.append(
                Item(
                    NOT_PERSISTENT,
                    "warning",
                    subject,
                    "no LaunchDaemon adds it at boot",
                    why="aliases vanish at reboot: services binding it then fail with errno 49",
                    fix=(
                        f"lbfw doctor --plan PLAN --emit-launchd | sudo tee {LAUNCHD_PATH}",
                        f"sudo launchctl bootstrap system {LAUNCHD_PATH}",
                    ),
                )
            )
    for prefix in _extra_addrs(host):
        addr, bits = prefix.split("/")
        if ":" not in addr and int(bits) < 32:
            items.append(
                Item(
                    WIDE_NETMASK,
                    "warning",
                    f"{addr} (lo0 alias)",
                    f"alias {prefix} is wider than /32",
                    why="hundreds of /8 aliases make mDNSResponder spin",
                    fix=(
                        f"sudo ifconfig lo0 -alias {addr}",
                        f"sudo ifconfig lo0 alias {addr} netmask 255.255.255.255 up",
                    ),
                )
            )
    if host.pf_enabled is None:
        items.append(skipped(PF_STATE, "pf", host.unread.get("pf", "pf was not read")))
    elif host.pf_enabled and not host.pf_skip_lo0:
        items.append(
            Item(
                PF_STATE,
                "note",
                "pf",
                "pf is enabled and /etc/pf.conf has no `set skip on lo0`",
                why="pf filters loopback and keeps a state per connection (its states limit applies)",
                fix=("echo 'set skip on lo0' | sudo tee -a /etc/pf.conf", "sudo pfctl -f /etc/pf.conf"),
            )
        )
    else:
        items.append(ok(PF_STATE, "pf", "pf is disabled" if not host.pf_enabled else "pf skips lo0"))
    return items


def launchd_plist(addresses) -> str:
    """A LaunchDaemon that adds ``addresses`` to lo0 at boot (/32 and /128 aliases), as XML."""
    lines = []
    for addr in addresses:
        if ":" in addr:
            lines.append(f"/sbin/ifconfig lo0 inet6 {addr} prefixlen 128 alias")
        else:
            lines.append(f"/sbin/ifconfig lo0 alias {addr} netmask 255.255.255.255 up")
    doc = {"Label": LAUNCHD_LABEL, "ProgramArguments": ["/bin/sh", "-c", "; ".join(lines) or "true"], "RunAtLoad": True}
    return plistlib.dumps(doc, sort_keys=False).decode("utf-8")


def plan_aliases(flows) -> list:
    """The addresses a plan needs on lo0 besides 127.0.0.1 and ::1, in order."""
    seen: dict[str, None] = {}
    for f in flows:
        for addr in (f.server, f.client):
            if addr and addr not in ("127.0.0.1", "::1"):
                seen.setdefault(addr, None)
    return list(seen)

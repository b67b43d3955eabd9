"""fail2ban's ignoreip: does it spare the whole of 127.0.0.0/8?"""

from __future__ import annotations

import configparser
import ipaddress
from typing import Optional

from .host import Host
from .items import Check, Item, ok

IGNOREIP = Check("DR040", "fail2ban-ignoreip-narrow", "fail2ban may ban loopback clients other than 127.0.0.1",
                 """\
## What it checks
When /etc/fail2ban exists: the `ignoreip` of `[DEFAULT]` and of every jail, from jail.conf, jail.d/*.conf,
jail.local and jail.d/*.local in fail2ban's order (later files win), covers 127.0.0.0/8.

## Why
fail2ban's `ignoreself` covers 127.0.0.1 and ::1 only: load-test clients on 127.0.0.2 and up that fail
to log in (or hit a rate limit) are banned, and the ban drops them in the firewall.

## Fix
In /etc/fail2ban/jail.local: `[DEFAULT]` `ignoreip = 127.0.0.1/8 ::1`, then `fail2ban-client reload`.
""")

CHECKS = (IGNOREIP,)

_LOOP = ipaddress.IPv4Network("127.0.0.0/8")


def _rank(path: str) -> tuple:
    """fail2ban's reading order: jail.conf, jail.d/*.conf, jail.local, jail.d/*.local (each sorted)."""
    in_d = path.startswith("/etc/fail2ban/jail.d/")
    if path == "/etc/fail2ban/jail.conf":
        return (0, path)
    if in_d and path.endswith(".conf"):
        return (1, path)
    if path == "/etc/fail2ban/jail.local":
        return (2, path)
    return (3, path)


def covers_loopback(ignoreip: Optional[str]) -> bool:
    """Whether an `ignoreip` value covers all of 127.0.0.0/8."""
    for word in (ignoreip or "").replace(",", " ").split():
        try:
            net = ipaddress.ip_network(word, strict=False)
            if isinstance(net, ipaddress.IPv4Network) and _LOOP.subnet_of(net):
                return True
        except (ValueError, TypeError):
            continue
    return False


def effective_ignoreip(files: dict) -> dict:
    """{section: ignoreip} after reading the jail files in fail2ban's order ("DEFAULT" included)."""
    parser = configparser.RawConfigParser(strict=False, default_section="__none__")
    jails = (p for p in files if files[p] and (p in ("/etc/fail2ban/jail.conf", "/etc/fail2ban/jail.local") or (
        p.startswith("/etc/fail2ban/jail.d/") and p.endswith((".conf", ".local")))))
    for path in sorted(jails, key=_rank):
        try:
            parser.read_string(files[path], source=path)
        except configparser.Error:
            continue
    out = {}
    default = parser.get("DEFAULT", "ignoreip", fallback=None) if parser.has_section("DEFAULT") else None
    out["DEFAULT"] = default
    for section in parser.sections():
        if section in ("DEFAULT", "INCLUDES"):
            continue
        if parser.has_option(section, "ignoreip"):
            out[section] = parser.get(section, "ignoreip")
    return out


def host_items(host: Host) -> list:
    """DR040 when fail2ban is there."""
    if "/etc/fail2ban" not in host.files and not any(p.startswith("/etc/fail2ban/") for p in host.files):
        return []
    items = []
    for section, value in sorted(effective_ignoreip(host.files).items(), key=lambda kv: kv[0] != "DEFAULT"):
        subject = f"fail2ban [{section}]"
        if value is not None and "%(" in value:
            value = value.split("%(", 1)[0]   # an interpolated default: judge what is written out
        if covers_loopback(value):
            items.append(ok(IGNOREIP, subject, f"ignoreip = {value.strip()} covers 127.0.0.0/8"))
        else:
            shown = f"ignoreip = {value.strip()}" if value and value.strip() else "no ignoreip"
            items.append(Item(IGNOREIP, "warning", subject, f"{shown}: 127.0.0.2 and up can be banned",
                              why="ignoreself covers 127.0.0.1 and ::1 only",
                              fix=(f"/etc/fail2ban/jail.local: [{section}] ignoreip = 127.0.0.1/8 ::1",
                                   "fail2ban-client reload")))
    return items

"""firewalld: direct rules (/etc/firewalld/direct.xml, evaluated before firewalld's own chains, where
RHEL hosts keep hand-written iptables rules) and rich rules (zones/*.xml). A narrow loopback one is
changed with `firewall-cmd --permanent`, never in the kernel."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Optional

DIRECT = "/etc/firewalld/direct.xml"
_NARROW = ("-s 127.0.0.1", "-s 127.0.0.1/32", "-d 127.0.0.1", "-d 127.0.0.1/32")


@dataclass(frozen=True)
class DirectRule:
    ipv: str
    table: str
    chain: str
    priority: str
    args: str
    line: Optional[int] = None


def direct_rules(text: str) -> list:
    """The <rule> elements of a direct.xml text (with their line when it can be found)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    lines = text.split("\n")
    out = []
    for rule in root.iter("rule"):
        args = " ".join((rule.text or "").split())
        line = next(
            (n for n, raw in enumerate(lines, 1) if "<rule" in raw and args and args in " ".join(raw.split())), None
        )
        out.append(
            DirectRule(
                rule.get("ipv", "ipv4"),
                rule.get("table", "filter"),
                rule.get("chain", ""),
                rule.get("priority", "0"),
                args,
                line,
            )
        )
    return out


def direct_commands(rule: DirectRule) -> tuple:
    """`firewall-cmd --permanent --direct` commands replacing a narrow loopback direct rule; ()."""
    padded = f" {rule.args} "
    narrow = next((n for n in _NARROW if f" {n} " in padded), None)
    if narrow is None:
        return ()
    wide = " ".join(padded.replace(f" {narrow} ", " -i lo " if narrow.startswith("-s") else " -o lo ").split())
    head = ["firewall-cmd", "--permanent", "--direct"]
    where = f"{rule.ipv} {rule.table} {rule.chain} {rule.priority}"
    return (
        " ".join(head + ["--remove-rule", where, rule.args]),
        " ".join(head + ["--add-rule", where, wide]),
        "firewall-cmd --reload",
    )


def rich_commands(zone: str, rich: str) -> tuple:
    """The commands replacing a rich rule whose source is 127.0.0.1 alone."""
    if 'source address="127.0.0.1"' not in rich and 'source address="127.0.0.1/32"' not in rich:
        return ()
    return (
        f"firewall-cmd --permanent --zone={zone} --remove-rich-rule='{rich}'",
        "firewall-cmd --permanent --zone=trusted --add-interface=lo",
        "firewall-cmd --reload",
    )

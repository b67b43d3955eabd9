"""Proxmox VE's firewall: cluster.fw, each node's host.fw and the guests' VMID.fw, where a rule,
an IP set or an alias names 127.0.0.1 alone.

The files have sections: `[RULES]` and `[group NAME]` hold rules (`IN ACCEPT -source 127.0.0.1
-p tcp -dport 8006`, a leading `|` disables one), `[IPSET NAME]` one address per line,
`[ALIASES]` `NAME ADDRESS`. pve-firewall compiles them into the PVEFW-* chains (or the
proxmox-firewall nft tables). Pure: texts in, settings out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..model import ManagerSetting
from .addresses import located, narrow, numbered, widen

OWNER = "proxmox"
CLUSTER = "/etc/pve/firewall/cluster.fw"
FILES = (CLUSTER, "/etc/pve/nodes/*/host.fw", "/etc/pve/firewall/[0-9]*.fw")
APPLY = "`pve-firewall compile` (it checks the files), then `pve-firewall restart`"

_SECTION = re.compile(r"^\s*\[(?P<kind>[A-Za-z_]+)(?:\s+[^\]]*)?\]")
_ADDRESS_OPTIONS = ("-source", "-dest")


def _addresses(kind: str, words: list[str]) -> list[str]:
    """The addresses one line of a section of ``kind`` names."""
    if kind in ("rules", "group"):
        found = []
        for option, value in zip(words, words[1:]):
            if option in _ADDRESS_OPTIONS:
                found += value.split(",")
        return found
    if kind == "ipset" and words:
        return [words[0].lstrip("!")]
    if kind == "aliases" and len(words) >= 2:
        return [words[1]]
    return []


def settings(files: Mapping[str, str]) -> tuple[ManagerSetting, ...]:
    """The narrow loopback addresses of every rule, IP set entry and alias."""
    found: list[ManagerSetting] = []
    for path in sorted(files):
        kind = ""
        for number, line in numbered(files[path]):
            head = _SECTION.match(line)
            if head:
                kind = head.group("kind").lower()
                continue
            if line.lstrip().startswith("|"):  # a disabled rule: pve-firewall compiles nothing from it
                continue
            words = line.split("#", 1)[0].split()
            for address in _addresses(kind, words):
                if narrow(address) is not None:
                    found.append(located(path, number, line, address, widen(address)))
    return tuple(found)

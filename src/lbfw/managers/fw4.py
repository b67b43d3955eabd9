"""OpenWrt's fw4: /etc/config/firewall (UCI), where a rule, redirect or zone names 127.0.0.1 alone.

fw4 generates `table inet fw4` from the UCI file and accepts lo itself (`iif "lo" accept` in its
input chain), so a narrow `option src_ip '127.0.0.1'` (or `list`) in a `config rule` section is
changed in the file, then `fw4 reload`. Pure: text in, settings out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..model import ManagerSetting
from .addresses import located, narrow, numbered, widen

OWNER = "fw4"
FIREWALL = "/etc/config/firewall"
FILES = (FIREWALL,)
APPLY = "`fw4 reload`"

_SECTION = re.compile(r"^\s*config\s+(?P<type>\S+)(?:\s+(?P<name>\S+))?")
_OPTION = re.compile(r"^\s*(?P<kind>option|list)\s+(?P<key>\S+)\s+(?P<value>.*?)\s*$")
_ADDRESS_KEYS = ("src_ip", "dest_ip", "src_dip", "dest_dip", "subnet")


def settings(files: Mapping[str, str]) -> tuple[ManagerSetting, ...]:
    """The narrow loopback values of the address options, each with its section."""
    found: list[ManagerSetting] = []
    section = ""
    for number, line in numbered(files.get(FIREWALL, "")):
        head = _SECTION.match(line)
        if head:
            section = f"config {head.group('type')}" + (f" {head.group('name')}" if head.group("name") else "")
            continue
        option = _OPTION.match(line)
        if not option or option.group("key") not in _ADDRESS_KEYS:
            continue
        for word in option.group("value").split("#", 1)[0].split():
            address = word.strip("'\"").lstrip("!")
            if narrow(address) is None:
                continue
            change = f"{widen(address)} (`{option.group('kind')} {option.group('key')} '127.0.0.0/8'` in {section})"
            found.append(located(FIREWALL, number, line, address, change))
    return tuple(found)

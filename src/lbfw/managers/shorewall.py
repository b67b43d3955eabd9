"""Shorewall: the rules and hosts files, where a zone's host list names 127.0.0.1 alone.

A rules line is ACTION SOURCE DEST [PROTO [DPORT ...]] with SOURCE and DEST written
`zone[:address[,address...]]` (`ACCEPT $FW:127.0.0.1 $FW tcp 5432`); a hosts line is
`ZONE interface:address[,address...]`. Shorewall compiles them into the chains the kernel holds
(its own `shorewall` chain marks the table), so the file is what changes, then `shorewall check`
and `shorewall reload`. Pure: texts in, settings out.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..model import ManagerSetting
from .addresses import located, narrow, numbered, widen

OWNER = "shorewall"
RULES = "/etc/shorewall/rules"
HOSTS = "/etc/shorewall/hosts"
FILES = (RULES, HOSTS)
APPLY = "`shorewall check`, then `shorewall reload`"

# which columns hold host lists: rules' SOURCE and DEST, hosts' HOST(S)
_COLUMNS = {RULES: (1, 2), HOSTS: (1,)}


def _hosts(column: str) -> list[str]:
    """The addresses of a `zone:addr,addr` (or `iface:addr`) column; `!` exclusions kept as written."""
    if ":" not in column:
        return []
    listed = column.split(":", 1)[1].strip("<>")
    return [word.lstrip("!") for word in listed.replace("[", "").replace("]", "").split(",") if word]


def settings(files: Mapping[str, str]) -> tuple[ManagerSetting, ...]:
    """The narrow loopback addresses of the rules and hosts files' host columns."""
    found: list[ManagerSetting] = []
    for path, columns in _COLUMNS.items():
        for number, line in numbered(files.get(path, "")):
            words = line.split("#", 1)[0].split()
            if not words or words[0].startswith("?"):  # ?SECTION, ?COMMENT, ?IF ...
                continue
            for index in columns:
                if index >= len(words):
                    continue
                for address in _hosts(words[index]):
                    if narrow(address) is not None:
                        found.append(located(path, number, line, address, widen(address)))
    return tuple(found)

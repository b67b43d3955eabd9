"""CSF (ConfigServer Security & Firewall): csf.allow and csf.ignore, where a narrow 127.0.0.1 is.

csf writes csf.allow's addresses into ALLOWIN/ALLOWOUT (`-s 127.0.0.1 -j ACCEPT`), and lfd never
blocks what csf.ignore lists. csf itself inserts `-I INPUT -i lo -j ACCEPT` and
`-I OUTPUT -o lo -j ACCEPT` before its own chains (csf.pl), so a csf.allow line for 127.0.0.1 adds
nothing on lo; a narrow csf.ignore entry leaves 127.0.0.2 and up blockable by lfd. Lines are an
address, `Include FILE`, or an advanced filter `tcp|in|d=22|s=127.0.0.1`, each with an optional
`# comment`. Pure: texts in, settings out.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..model import ManagerSetting
from .addresses import located, narrow, numbered, widen

OWNER = "csf"
ALLOW = "/etc/csf/csf.allow"
IGNORE = "/etc/csf/csf.ignore"
FILES = (ALLOW, IGNORE)
APPLY = "`csf -r`"


def _addresses(entry: str) -> list[str]:
    """The addresses of one csf.allow / csf.ignore entry (plain, or the s=/d= of an advanced filter)."""
    if "|" not in entry:
        return [entry]
    fields = (part.split("=", 1) for part in entry.split("|") if "=" in part)
    return [value for key, value in fields if key.strip().lower() in ("s", "d")]


def settings(files: Mapping[str, str]) -> tuple[ManagerSetting, ...]:
    """The narrow loopback entries of csf.allow and csf.ignore."""
    found: list[ManagerSetting] = []
    for path in FILES:
        for number, line in numbered(files.get(path, "")):
            entry = line.split("#", 1)[0].strip()
            if not entry or entry.lower().startswith("include"):
                continue
            for address in _addresses(entry.split()[0]):
                if narrow(address) is None:
                    continue
                if path == ALLOW:
                    change = (
                        f"{widen(address)}, or delete the line: csf already accepts all of lo "
                        "(`-I INPUT -i lo -j ACCEPT`)"
                    )
                else:
                    change = f"{widen(address)} so that lfd never blocks 127.0.0.2 and up (then `csf -ra`)"
                found.append(located(path, number, line, address, change))
    return tuple(found)

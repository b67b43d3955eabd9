"""Narrow loopback addresses in a manager's configuration text: 127.0.0.1 (or any 127/8 network
smaller than /8) where the manager means loopback, and the exact replacement. Pure."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Optional

from ..model import ManagerSetting

WIDE = "127.0.0.0/8"
_LOOP = ipaddress.IPv4Network(WIDE)
# a dotted quad starting 127, with an optional prefix length or netmask, not inside a longer token
_CANDIDATE = re.compile(r"(?<![\w.])127\.\d{1,3}\.\d{1,3}\.\d{1,3}(?:/[\d.]+)?(?![\w.])")


def narrow(word: str) -> Optional[ipaddress.IPv4Network]:
    """The network ``word`` names when it lies inside 127.0.0.0/8 and is smaller than it, else None."""
    try:
        net = ipaddress.IPv4Network(word.strip(), strict=False)
    except ValueError:
        return None
    return net if net.prefixlen > 8 and net.subnet_of(_LOOP) else None


def narrow_in(text: str) -> list[str]:
    """Every narrow loopback address written in ``text``, as written."""
    return [m.group(0) for m in _CANDIDATE.finditer(text) if narrow(m.group(0)) is not None]


def widen(address: str) -> str:
    """The replacement sentence for one narrow address."""
    return f"write `{WIDE}` in place of `{address}`"


def same_address(a: str, b: str) -> bool:
    """Whether two spellings name the same network (`127.0.0.1` and `127.0.0.1/32`)."""
    left, right = narrow(a), narrow(b)
    return left is not None and left == right


def matching(settings: Iterable[ManagerSetting], rule_text: Optional[str]) -> list[ManagerSetting]:
    """The settings that name an address the rule names; every addressed setting when none does."""
    addressed = [s for s in settings if s.address is not None]
    words = narrow_in(rule_text or "")
    hits = [s for s in addressed if any(same_address(s.address or "", w) for w in words)]
    return hits or addressed


def located(path: str, number: int, line: str, address: str, change: str) -> ManagerSetting:
    """A setting for a narrow ``address`` on ``path``:``number``."""
    return ManagerSetting(path=path, line=number, text=line.strip(), change=change, address=address)


def numbered(text: str) -> Iterable[tuple[int, str]]:
    """(line number, line) from 1."""
    return enumerate(text.splitlines(), 1)

"""The one grammar of suppression comments, for every reader and the checks.

``lbfw: ignore LB002, LB003`` names the checks it suppresses; ``lbfw: ignore`` alone or
``lbfw: ignore all`` suppresses every check. It may stand in a rule's own comment
(iptables ``-m comment --comment``, nft ``comment "..."``) or in a ``#`` line directly
above the rule in a file (iptables-save and nft alike).
"""

from __future__ import annotations

import re
from typing import Optional

_IGNORE_RE = re.compile(r"lbfw:\s*ignore\b([\s,A-Za-z0-9]*)", re.IGNORECASE)
_ID_RE = re.compile(r"\b(LB\d{3}|all)\b", re.IGNORECASE)

ALL = "ALL"


def ignored_ids(text: Optional[str]) -> frozenset:
    """Check ids a comment suppresses: `lbfw: ignore LB002, LB003` -> {"LB002", "LB003"};
    `lbfw: ignore` alone or `lbfw: ignore all` -> {"ALL"}; no directive -> empty."""
    if not text or "lbfw" not in text.lower():
        return frozenset()
    out: set = set()
    for found in _IGNORE_RE.finditer(text):
        ids = {i.upper() for i in _ID_RE.findall(found.group(1))}
        out |= ids or {ALL}
    return frozenset(out)


def suppresses(ignore: frozenset, check_id: str) -> bool:
    """True when the set of ids ``ignore`` (from ``ignored_ids``) covers ``check_id``."""
    return ALL in ignore or check_id.upper() in ignore

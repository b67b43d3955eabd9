"""What the iptables parser's parts share: the attributes ``_Parser`` sets, declared once.

``_Parser`` (parser.py) is one object built from mixins (``TailReader``, ``MatchBuilder``,
``TargetReader``), each in its own module; they read the state ``_Parser.__init__`` sets. The
annotations here say what that state is, so each mixin is checked against it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ...errors import InputError
from ...model import Action, Match, Rule, Table


class ParserState:
    """The parser's state (set in ``_Parser.__init__``), and its errors."""

    source: str
    lazy: bool
    family: str  # "ip" | "ip6"
    family_word: str  # "an IPv4" | "an IPv6", for messages
    backend: str
    live: bool
    saddr: str  # "ip.saddr" | "ip6.saddr"
    daddr: str
    full: int  # the highest address of the family
    deferred_targets: set[str]
    build: Optional[Callable[..., Rule]]
    position: Optional[int]
    tables: list[Table]
    table: Optional[Table]  # the table being read (between `*name` and COMMIT)
    table_line: int
    lineno: int
    # the caches (see _Parser.__init__); an address cache entry may be fast._ANY
    fast: dict[tuple[str, str, str], tuple[Match, ...]]
    addrs: dict[tuple[str, bool], dict[str, Any]]
    tails: dict[Any, tuple[Any, ...]]
    jumps: dict[tuple[str, bool], Action]
    rests: dict[str, tuple[Any, ...]]
    protos: dict[tuple[str, bool], tuple[tuple[Match, ...], Optional[str]]]
    contexts: dict[tuple[str, str], str]
    actions: dict[tuple[str, tuple[str, ...]], Action]
    unresolved: list[tuple[Rule, str, bool, str]]  # (rule, target, goto, chain name)
    warnings: list[str]

    def bad(self, message: object, line: Optional[int] = None) -> InputError:
        """InputError at this line (``message`` a str, or a _Bad with its hint)."""
        hint = getattr(message, "hint", None)
        return InputError(str(message), path=self.source, line=line if line is not None else self.lineno, hint=hint)

"""Where each rule of an nft ruleset file is written: its path (following includes) and line.

Pure but for reading included files. A light walk over the source text that tracks table
and chain blocks and ``add rule`` commands; ``place`` then pairs what it found with the rules
libnftables listed, chain by chain, so findings say PATH:LINE and the fixer edits that line.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["RuleLine", "Walker", "map_rule_lines", "place", "walk"]

_DEFAULT_INCLUDE = "/etc"
_FAMILIES = frozenset(("ip", "ip6", "inet", "arp", "bridge", "netdev"))
_CHAIN_PROPS = frozenset(("type", "policy", "comment", "devices", "device", "priority", "flags"))
_TABLE_OBJECTS = frozenset(
    ("set", "map", "flowtable", "counter", "quota", "ct", "limit", "secmark", "synproxy", "tunnel")
)
_TOKEN = re.compile(r'"[^"\n]*"?|#[^\n]*|\\\n|\n|[{};]|[^\s{};"#]+')


@dataclass(frozen=True, slots=True)
class RuleLine:
    """Where one rule is written: the file (path as given or as the include resolved it),
    its 1-based line, and the statement's text."""

    path: str
    line: int
    text: str


def place(doc: Any, lines: dict) -> dict:
    """Assign the mapped source lines to the JSON rules, in order per chain.

    A chain whose rule count differs from what the walk found (a `delete rule` in the
    file, an include resolved differently) gets no lines at all: no line is better than
    a line off by one, which would send findings and the fixer to the wrong rule."""
    items = doc.get("nftables", []) if isinstance(doc, dict) else doc
    per_chain: dict = {}
    for obj in items:
        rule = obj.get("rule") if isinstance(obj, dict) else None
        if rule is not None:
            per_chain.setdefault((rule.get("family"), rule.get("table"), rule.get("chain")), []).append(
                rule.get("handle")
            )
    placed = {}
    for key, handles in per_chain.items():
        locs = lines.get(key)
        if locs is None or len(locs) != len(handles):
            continue
        for handle, loc in zip(handles, locs):
            placed[key + (handle,)] = loc
    return placed


class Walker:
    """Walk nft source text (following includes) and record where each rule is written."""

    def __init__(self, base_dir: str, absolute: bool) -> None:
        self.base_dir = base_dir
        self.absolute = absolute  # show included paths absolute (else relative to the cwd)
        self.rules: dict = {}  # (family, table, chain) -> list[RuleLine]
        self.blocks: dict = {}  # ("table"|"chain"|"set", family, table[, name]) -> (path, line)
        self.stack: list = [("top", None)]
        self.depth = 0

    # -- statements

    def _flush(self, words: list, path: str, line: int, text: str) -> None:
        if not words:
            return
        kind, info = self.stack[-1]
        w0 = words[0]
        if w0 == "include" and len(words) >= 2:
            self._include(words[1].strip('"'), path)
            return
        if kind == "chain":
            if w0 in _CHAIN_PROPS:
                return
            self.rules.setdefault(info, []).append(RuleLine(path, line, text))
        elif kind == "top":
            self._command(words, path, line, text)

    def _command(self, words: list, path: str, line: int, text: str) -> None:
        w0 = words[0]
        if w0 in ("add", "insert", "create") and len(words) > 2 and words[1] == "rule":
            fam, rest = _family(words[2:])
            if len(rest) < 3:
                return
            key = (fam, rest[0], rest[1])
            # the statement text without the command prefix, as nft lists the rule
            loc = RuleLine(path, line, _strip_words(text, 2 + (len(words) - 2 - len(rest)) + 2))
            if w0 == "insert":
                self.rules.setdefault(key, []).insert(0, loc)
            else:
                self.rules.setdefault(key, []).append(loc)
        elif w0 == "flush" and len(words) >= 2 and words[1] == "ruleset":
            self.rules.clear()
        elif w0 in ("flush", "delete", "destroy") and len(words) >= 3 and words[1] in ("table", "chain"):
            fam, rest = _family(words[2:])
            if words[1] == "table" and rest:
                for key in [k for k in self.rules if k[0] == fam and k[1] == rest[0]]:
                    del self.rules[key]
            elif words[1] == "chain" and len(rest) >= 2:
                self.rules.pop((fam, rest[0], rest[1]), None)

    def _open_block(self, words: list, where: tuple) -> bool:
        """`{` after ``words``: push a table/chain/skip block, or return False (an expression brace).

        ``where`` (path, line) of the header is kept for the table, chain or set it opens."""
        kind, info = self.stack[-1]
        w = words
        if kind == "top":
            if w and w[0] in ("add", "create") and len(w) > 1:
                w = w[1:]
            if w and w[0] == "table":
                fam, rest = _family(w[1:])
                if rest:
                    self.stack.append(("table", (fam, rest[0])))
                    self.blocks.setdefault(("table", fam, rest[0]), where)
                    return True
            if w and w[0] == "chain":
                fam, rest = _family(w[1:])
                if len(rest) >= 2:
                    self.stack.append(("chain", (fam, rest[0], rest[1])))
                    self.blocks.setdefault(("chain", fam, rest[0], rest[1]), where)
                    return True
            if w and w[0] in _TABLE_OBJECTS and words[0] in ("add", "create"):
                if w[0] in ("set", "map"):
                    fam, rest = _family(w[1:])
                    if len(rest) >= 2:
                        self.blocks.setdefault(("set", fam, rest[0], rest[1]), where)
                self.stack.append(("skip", None))
                return True
            return False
        if kind == "table":
            if w and w[0] == "chain" and len(w) >= 2:
                self.stack.append(("chain", (info[0], info[1], w[1].strip('"'))))
                self.blocks.setdefault(("chain", info[0], info[1], w[1].strip('"')), where)
                return True
            if w and w[0] in _TABLE_OBJECTS:
                if w[0] in ("set", "map") and len(w) >= 2:
                    self.blocks.setdefault(("set", info[0], info[1], w[1].strip('"')), where)
                self.stack.append(("skip", None))
                return True
            return False
        if kind == "skip":
            self.stack.append(("skip", None))
            return True
        return False

    # -- the token loop

    def walk(self, text: str, path: str) -> None:
        words: list = []
        start = end = 0
        start_line = 0
        expr = 0  # depth of expression braces inside the current statement
        line = 1
        pos = 0
        search = _TOKEN.search
        while True:
            m = search(text, pos)
            if m is None:
                break
            pos = m.end()
            tok = m.group()
            c = tok[0]
            if c == "\n" or c == ";":
                if expr == 0:
                    if words:
                        self._flush(words, path, start_line, text[start:end])
                    words = []
                if c == "\n":
                    line += 1
                continue
            if c == "\\" and tok == "\\\n":
                line += 1
                continue
            if c == "#":
                continue
            if c == "{":
                if expr == 0 and self._open_block(words, (path, start_line if words else line)):
                    words = []
                    if self.stack[-1][0] == "skip":
                        # a set/map/object body (maybe 100,000 elements): jump to its end
                        pos, line = _skip_block(text, pos, line)
                        self.stack.pop()
                    continue
                expr += 1
            elif c == "}":
                if expr > 0:
                    expr -= 1
                else:
                    if words:
                        self._flush(words, path, start_line, text[start:end])
                    words = []
                    if len(self.stack) > 1:
                        self.stack.pop()
                    continue
            if not words:
                start, start_line = m.start(), line
            end = pos
            words.append(tok)
        if words:
            self._flush(words, path, start_line, text[start:end])

    def _include(self, name: str, from_path: str) -> None:
        if self.depth >= 16:
            return
        if os.path.isabs(name):
            found = sorted(glob.glob(name))
        else:
            found = []
            for d in (_DEFAULT_INCLUDE, self.base_dir):
                found = sorted(glob.glob(os.path.join(d, name)))
                if found:
                    break
        for inc in found:
            try:
                with open(inc, encoding="utf-8", errors="surrogateescape") as f:
                    inc_text = f.read()
            except OSError:
                continue
            shown = inc if self.absolute else os.path.relpath(inc)
            self.depth += 1
            self.walk(inc_text, shown)
            self.depth -= 1


_SKIP_TOKEN = re.compile(r'"[^"\n]*"?|#[^\n]*|[{}]')


def _skip_block(text: str, pos: int, line: int) -> tuple:
    """From just after a block's "{", the position after its matching "}" and the line there."""
    depth = 1
    for m in _SKIP_TOKEN.finditer(text, pos):
        c = m.group()[0]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return m.end(), line + text.count("\n", pos, m.end())
    return len(text), line + text.count("\n", pos)


def _family(words: list) -> tuple:
    if words and words[0] in _FAMILIES:
        return words[0], [w.strip('"') for w in words[1:]]
    return "ip", [w.strip('"') for w in words]


def _strip_words(text: str, n: int) -> str:
    """``text`` without its first ``n`` whitespace-separated words."""
    parts = text.split(None, n)
    return parts[n] if len(parts) > n else ""


def map_rule_lines(text: str, path: str, base_dir: Optional[str] = None) -> dict:
    """Where each rule of an nft file is written: ``{(family, table, chain): [RuleLine, ...]}``
    in chain order (``insert rule`` prepends), following includes relative to
    ``base_dir`` (default: the file's directory)."""
    return walk(text, path, base_dir).rules


def walk(text: str, path: str, base_dir: Optional[str] = None) -> Walker:
    """Walk ``text`` (written at ``path``): the Walker holds ``rules`` and ``blocks`` (where each
    table, chain and set is opened)."""
    walker = Walker(base_dir or os.path.dirname(os.path.abspath(path)), os.path.isabs(path))
    walker.walk(text, path)
    return walker

"""nft ruleset text -> the `nft -j list ruleset` document, read by lbfw itself (no kernel).

Pure but for reading included files. For big files, where loading them into a kernel costs
minutes (the commit of one transaction grows faster than the file: 96 s for kube-proxy's
nftables ruleset of 10,000 services), and for the kernel's own listing of big live tables
(``nft -a list table``: rule texts as the kernel prints them, handles as ``# handle N``).

The grammar read here is the block syntax ``nft list ruleset`` prints: ``table`` blocks
holding ``set``/``map`` and ``chain`` blocks, with ``define``, ``include``, ``flush ruleset``
and comments; rule statements are ``grammar.py``'s. Anything else raises
``grammar.Unsupported`` and the caller lets libnftables read the text; values nft would refuse
(a bad address, a jump to a chain the table lacks, an unknown set) raise ``InputError`` at
their line. The document is what ``tables.parse`` reads, so both paths build one model.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ...errors import InputError
from ...model import BACKEND_FILE
from .grammar import RuleGrammar
from .lines import RuleLine
from .tables import NAMED_PRIORITIES, Builder
from .textvalues import Invalid, Unsupported, finish_set, name_of, seconds, set_type_kinds, split_colons, string
from .validate import RESTRICTED, check_tables

__all__ = ["Parsed", "parse_text", "Unsupported"]

_TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|[{};,]|[^\s{};,"#]+|"')
_FAMILIES = frozenset(("ip", "ip6", "inet", "arp", "bridge", "netdev"))
_HOOKS = {
    "ip": frozenset(("prerouting", "input", "forward", "output", "postrouting")),
    "ip6": frozenset(("prerouting", "input", "forward", "output", "postrouting")),
    "inet": frozenset(("prerouting", "input", "forward", "output", "postrouting")),
}
_CHAIN_TYPES = frozenset(("filter", "nat", "route"))
_SET_FLAGS = frozenset(("constant", "interval", "timeout", "dynamic"))
_HANDLE = re.compile(r"#\s*handle\s+(\d+)\s*$")
_MAX_INCLUDE_DEPTH = 16


@dataclass
class Parsed:
    """What ``parse_text`` read: the model's tables, where each rule is written (keyed like
    ``lines.place``'s result), and where each table, chain and set block opens."""

    tables: list
    placed: dict = field(default_factory=dict)  # (family, table, chain, handle) -> RuleLine
    blocks: dict = field(default_factory=dict)  # ("table"|"chain"|"set", family, table[, name]) -> (path, line)


class _Table:
    __slots__ = ("family", "name", "handle", "comment", "sets", "set_blocks", "chains", "next_handle")

    def __init__(self, family: str, name: str, handle: Optional[int]) -> None:
        self.family, self.name, self.handle = family, name, handle
        self.comment: Optional[str] = None
        self.sets: dict = {}  # name -> JSON body (with "_kinds" until declared)
        self.set_blocks: dict = {}  # name -> its _Block (elements gathered until the file is read)
        self.chains: dict = {}  # name -> [JSON body, [rules]]
        self.next_handle = 0


class _Statement:
    __slots__ = ("toks", "path", "line", "end_line", "skip", "handle", "expanded", "whole", "prefix")

    def __init__(self, path: str, line: int, skip: int) -> None:
        self.toks: list = []  # emptied for a rule that is its line alone: tokenized again when built
        self.path, self.line, self.end_line, self.skip = path, line, line, skip
        self.handle: Optional[int] = None
        self.expanded = False  # a $define was substituted
        self.whole = False  # the statement is its line, alone
        self.prefix = 0  # words of an `add rule FAMILY TABLE CHAIN` command before the rule


class _Reader:
    def __init__(self, base_dir: str, absolute: bool, listing: bool) -> None:
        self.base_dir = base_dir
        self.absolute = absolute
        self.listing = listing  # the kernel's own listing: handles from `# handle N`
        self.defines: dict = {}
        self.tables: dict = {}  # (family, name) -> _Table
        self.blocks: dict = {}
        self.depth = 0
        self.texts: dict = {}  # path -> list of lines (for rule texts spanning lines)

    # -- the statement loop

    def read(self, text: str, path: str) -> None:
        lines = text.split("\n")
        self.texts[path] = lines
        stack: list = [("top", None)]
        st: Optional[_Statement] = None
        depth = 0  # expression braces of the current statement
        findall = _TOKEN.findall
        continued = False
        for number, line in enumerate(lines, 1):
            toks = findall(line)
            if not toks:
                continue
            for index, tok in enumerate(toks):
                c = tok[0]
                if c == "#":
                    if self.listing:
                        m = _HANDLE.match(tok)
                        if m is not None:
                            self._note_handle(stack, st, int(m.group(1)))
                    continue
                if c == "\\" and tok == "\\" and index == len(toks) - 1:
                    continued = True
                    continue
                if c == '"' and (len(tok) < 2 or tok[-1] != '"'):
                    raise Unsupported("unterminated string")
                if c == ";" and depth == 0:
                    if st is not None:
                        self._statement(stack, st)
                        st = None
                    continue
                if c == "{":
                    if depth == 0 and self._opens_block(stack, st, path, number if st is None else st.line):
                        st = None
                        continue
                    depth += 1
                elif c == "}":
                    if depth == 0:
                        if st is not None:
                            self._statement(stack, st)
                            st = None
                        self._close_block(stack)
                        continue
                    depth -= 1
                if st is None:
                    st = _Statement(path, number, index)
                if c == "$":
                    st.toks.extend(self._define(tok))
                    st.expanded = True
                else:
                    st.toks.append(tok)
                st.end_line = number
            if continued:
                continued = False
                if st is not None:
                    st.expanded = True  # spans lines: keep its tokens
                continue
            if depth == 0 and st is not None:
                st.whole = st.skip == 0 and st.line == number and not st.expanded
                self._statement(stack, st)
                st = None
        if st is not None or depth:
            raise Unsupported("unterminated statement")
        if len(stack) != 1:
            raise InputError("syntax error, unexpected end of file: a block is not closed", path=path, line=len(lines))

    def _define(self, tok: str) -> list:
        name = tok[1:]
        if name not in self.defines:
            raise Unsupported(f"undefined {tok}")
        return self.defines[name]

    def _note_handle(self, stack: list, st: Optional[_Statement], handle: int) -> None:
        if st is not None:
            st.handle = handle
            return
        kind, info = stack[-1]
        if kind in ("table", "chain", "set"):
            info.handle_seen = handle

    # -- blocks

    def _opens_block(self, stack: list, st: Optional[_Statement], path: str, line: int) -> bool:
        words = st.toks if st is not None else []
        kind, info = stack[-1]
        if kind == "top":
            if len(words) >= 2 and words[0] in ("add", "insert") and words[1] in ("rule", "element"):
                return False  # an anonymous set or the elements of the command
            if words[:1] == ["define"]:
                return False  # a define's value: an anonymous set
            w = words[1:] if words[:1] in (["add"], ["create"]) else words
            if len(w) >= 2 and w[0] == "table":
                fam, rest = _family(w[1:])
                if len(rest) != 1:
                    raise Unsupported("table header")
                table = self._table(fam, name_of(rest[0]), st)
                self.blocks.setdefault(("table", fam, table.name), (path, line))
                stack.append(("table", _Block(table)))
                return True
            if len(w) >= 2 and w is not words and w[0] in ("chain", "set", "map"):
                # `add chain ip t c { ... }`, `add set ip t s { ... }`: a block of a table declared before
                fam, rest = _family(w[1:])
                if len(rest) != 2:
                    raise Unsupported(f"{w[0]} header")
                table = self._existing(fam, name_of(rest[0]), st)
                return self._open_member(stack, table, w[0], rest[1], path, line)
            if words:
                raise Unsupported(f"block {' '.join(words[:2])}")
            return False
        if kind == "table":
            if len(words) == 2 and words[0] in ("chain", "set", "map"):
                return self._open_member(stack, info.obj, words[0], words[1], path, line)
            raise Unsupported(f"in a table: {' '.join(words[:2])}")
        return False

    def _open_member(self, stack: list, table: _Table, what: str, raw_name: str, path: str, line: int) -> bool:
        """Open the block of a chain, set or map of ``table``."""
        name = name_of(raw_name)
        if what == "chain":
            if name not in table.chains:
                table.chains[name] = [{"family": table.family, "table": table.name, "name": name}, []]
            elif "hook" in table.chains[name][0] or table.chains[name][1]:
                raise Unsupported("a chain declared twice")
            self.blocks.setdefault(("chain", table.family, table.name, name), (path, line))
            stack.append(("chain", _Block(table.chains[name][0], table)))
            return True
        if name in table.sets:
            raise Unsupported("a set declared twice")
        body = {"family": table.family, "name": name, "table": table.name}
        table.sets[name] = body
        self.blocks.setdefault(("set", table.family, table.name, name), (path, line))
        block = _Block(body, table, what == "map")
        table.set_blocks[name] = block
        stack.append(("set", block))
        return True

    def _table(self, family: str, name: str, st: Optional[_Statement]) -> _Table:
        if family not in _HOOKS:
            raise Unsupported(f"family {family}")
        table = self.tables.get((family, name))
        if table is None:
            table = self.tables[(family, name)] = _Table(family, name, st.handle if st is not None else None)
        return table

    def _existing(self, family: str, name: str, st: Optional[_Statement]) -> _Table:
        table = self.tables.get((family, name))
        if table is None:
            where = st.path if st is not None else None
            line = st.line if st is not None else None
            raise InputError(
                f"Could not process rule: No such file or directory (no table {family} {name})", path=where, line=line
            )
        return table

    def _close_block(self, stack: list) -> None:
        if len(stack) == 1:
            raise Unsupported("} outside a block")
        kind, info = stack.pop()
        if kind == "set":
            if info.handle_seen is not None:
                info.obj["handle"] = info.handle_seen
        elif kind == "chain":
            body = info.obj
            if "hook" in body and "policy" not in body:
                body["policy"] = "accept"
            if info.handle_seen is not None:
                body["handle"] = info.handle_seen
        elif kind == "table" and info.handle_seen is not None:
            info.obj.handle = info.handle_seen

    # -- statements

    def _statement(self, stack: list, st: _Statement) -> None:
        kind, info = stack[-1]
        toks = st.toks
        try:
            if toks[0] == "include":
                self._include(toks, st)
            elif kind == "top":
                self._top(toks, st)
            elif kind == "table":
                if toks[0] == "comment" and len(toks) == 2:
                    info.obj.comment = string(toks[1])
                else:
                    raise Unsupported(f"in a table: {toks[0]}")
            elif kind == "chain":
                self._chain_statement(info, st)
            elif kind == "set":
                self._set_statement(info, toks)
        except Invalid as err:
            raise InputError(str(err), path=st.path, line=st.line) from None

    def _top(self, toks: list, st: _Statement) -> None:
        if toks[0] == "define" and len(toks) >= 4 and toks[2] == "=":
            self.defines[toks[1]] = toks[3:]
        elif toks == ["flush", "ruleset"]:
            self.tables.clear()
        elif toks[0] in ("add", "create", "insert") and len(toks) >= 3:
            self._command(toks, st)
        else:
            raise Unsupported(f"command {toks[0]}")

    def _command(self, toks: list, st: _Statement) -> None:
        """`add table|chain|rule|element ...` and `insert rule ...` outside blocks."""
        verb, what = toks[0], toks[1]
        fam, rest = _family(toks[2:])
        named = len(toks) - len(rest)  # words before the table's name
        if what == "table" and verb != "insert" and len(rest) == 1:
            self._table(fam, name_of(rest[0]), st)
        elif what == "chain" and verb != "insert" and len(rest) == 2:
            table = self._existing(fam, name_of(rest[0]), st)
            name = name_of(rest[1])
            if name not in table.chains:
                # no block: like lines.py, no place recorded (findings about it name the file)
                table.chains[name] = [{"family": fam, "table": table.name, "name": name}, []]
        elif what == "rule" and len(rest) >= 3 and rest[2] not in ("position", "handle", "index"):
            table = self._existing(fam, name_of(rest[0]), st)
            chain = table.chains.get(name_of(rest[1]))
            if chain is None:
                raise InputError(
                    f"Could not process rule: No such file or directory (no chain {rest[1]!r})",
                    path=st.path,
                    line=st.line,
                )
            st.prefix = named + 2
            st.toks = rest[2:]
            st.whole = False
            if verb == "insert":
                chain[1].insert(0, st)
            else:
                chain[1].append(st)
        elif what == "element" and verb == "add" and len(rest) >= 4 and rest[2] == "{" and rest[-1] == "}":
            table = self._existing(fam, name_of(rest[0]), st)
            block = table.set_blocks.get(name_of(rest[1]))
            if block is None:
                raise InputError(
                    f"Could not process rule: No such file or directory (no set {rest[1]!r})",
                    path=st.path,
                    line=st.line,
                )
            if block.elements:
                block.elements.append(",")
            block.elements.extend(split_colons(rest[3:-1]))
        else:
            raise Unsupported(f"command {verb} {what}")

    def _include(self, toks: list, st: _Statement) -> None:
        if len(toks) != 2 or not toks[1].startswith('"'):
            raise Unsupported("include")
        name = string(toks[1])
        if self.depth >= _MAX_INCLUDE_DEPTH:
            raise Unsupported("includes nested too deep")
        if os.path.isabs(name):
            found = sorted(glob.glob(name))
        else:
            found = []
            for d in ("/etc", self.base_dir):
                found = sorted(glob.glob(os.path.join(d, name)))
                if found:
                    break
        if not found and not glob.has_magic(name):
            raise InputError(f"File not found: {name}", path=st.path, line=st.line)
        for inc in found:
            try:
                with open(inc, encoding="utf-8") as f:
                    inc_text = f.read()
            except (OSError, UnicodeDecodeError):
                raise Unsupported(f"cannot read {inc}") from None
            self.depth += 1
            self.read(inc_text, inc if self.absolute else os.path.relpath(inc))
            self.depth -= 1

    def _chain_statement(self, block: _Block, st: _Statement) -> None:
        body = block.obj
        toks = st.toks
        w0 = toks[0]
        if w0 == "type":
            # type T hook H priority P  (the `;` ends it)
            if len(toks) < 6 or toks[2] != "hook" or toks[4] != "priority":
                raise Unsupported("chain type")
            family = body["family"]
            if toks[1] not in _CHAIN_TYPES or toks[3] not in _HOOKS[family]:
                raise Unsupported("chain type or hook")
            body["type"], body["hook"] = toks[1], toks[3]
            body["prio"] = _priority(toks[5:], family)
            return
        if w0 == "policy" and len(toks) == 2:
            if toks[1] not in ("accept", "drop"):
                raise Invalid(f"invalid chain policy {toks[1]!r}")
            body["policy"] = toks[1]
            return
        table = block.table
        assert table is not None  # a chain block always belongs to a table
        if w0 == "comment" and len(toks) == 2 and "hook" not in body and not table.chains[body["name"]][1]:
            body["comment"] = string(toks[1])
            return
        if w0 in ("devices", "device", "flags"):
            raise Unsupported(f"chain {w0}")
        if st.whole:
            st.toks = []  # 92,000 rules of tokens cost more than tokenizing each line again
        table.chains[body["name"]][1].append(st)

    def _set_statement(self, block: _Block, toks: list) -> None:
        body = block.obj
        w0 = toks[0]
        if w0 == "type":
            typ, kinds, data = set_type_kinds(toks[1:])
            if block.is_map != (data is not None):
                raise Unsupported("set or map type")
            body["type"] = typ
            if data is not None:
                body["map"] = data
            block.kinds = kinds
        elif w0 == "flags" and len(toks) >= 2:
            flags = "".join(toks[1:]).split(",")
            if any(f not in _SET_FLAGS for f in flags):
                raise Unsupported("set flags")
            block.flags = flags
        elif w0 == "timeout" and len(toks) == 2:
            body["timeout"] = seconds(toks[1])
        elif w0 == "size" and len(toks) == 2 and toks[1].isdigit():
            body["size"] = int(toks[1])
        elif w0 == "comment" and len(toks) == 2:
            body["comment"] = string(toks[1])
        elif w0 == "elements" and len(toks) >= 4 and toks[1] == "=" and toks[2] == "{" and toks[-1] == "}":
            if block.elements:
                block.elements.append(",")
            block.elements.extend(split_colons(toks[3:-1]))
        else:
            raise Unsupported(f"in a set: {w0}")


class _Block:
    __slots__ = ("obj", "table", "is_map", "kinds", "flags", "elements", "handle_seen", "targets")

    def __init__(self, obj: Any, table: Optional[_Table] = None, is_map: bool = False) -> None:
        self.obj, self.table, self.is_map = obj, table, is_map
        self.kinds: Optional[tuple] = None
        self.flags: list = []
        self.elements: list = []
        self.handle_seen: Optional[int] = None
        self.targets: list = []  # a verdict map's jump and goto targets


def _priority(words: list, family: str) -> int:
    text = " ".join(words)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    m = re.fullmatch(r"([a-z]+)(?: ([+-]) (\d+))?", text)
    named = NAMED_PRIORITIES.get(family, {})
    if m is None or m.group(1) not in named:
        raise Unsupported(f"priority {text}")
    base = named[m.group(1)]
    if m.group(2):
        base += int(m.group(3)) * (1 if m.group(2) == "+" else -1)
    return base


def _family(words: list) -> tuple:
    if words and words[0] in _FAMILIES:
        return words[0], words[1:]
    return "ip", words


_STMT_TEXT = re.compile(r'"[^"\n]*"?|#[^\n]*|\\\n|\n|[{};]|[^\s{};"#]+')


def _listed_text(lines: list, st: _Statement) -> str:
    """A rule's text in the kernel's listing, wrapped lines joined (as ``live.handle_texts``)."""
    parts = [line.strip() for line in lines[st.line - 1 : st.end_line]]
    last = parts[-1]
    cut = last.rfind("# handle ")
    parts[-1] = last[:cut].rstrip() if cut >= 0 else last
    return " ".join(p for p in parts if p)


def _rule_text(lines: list, st: _Statement) -> str:
    """The rule's text as written (what ``lines.py`` gives for the kernel path): for an `add
    rule` command, without the command's words."""
    text = _statement_text(lines, st)
    if st.prefix:
        parts = text.split(None, st.prefix)
        return parts[st.prefix] if len(parts) > st.prefix else ""
    return text


def _statement_text(lines: list, st: _Statement) -> str:
    if st.whole:
        line = lines[st.line - 1]
        if "#" not in line and ";" not in line and "}" not in line:
            return line.strip()
    chunk = "\n".join(lines[st.line - 1 : st.end_line])
    toks = [m for m in _STMT_TEXT.finditer(chunk) if m.group()[0] not in "#\n\\"]
    # skip the tokens of earlier statements on the first line, then this statement's own
    first_line_toks = [m for m in _TOKEN.finditer(lines[st.line - 1]) if m.group()[0] != "#"]
    skip_chars = first_line_toks[st.skip].start() if st.skip < len(first_line_toks) else 0
    mine = [m for m in toks if m.start() >= skip_chars]
    start = mine[0].start()
    end = start
    for m in mine:
        if m.group() in (";",) or (m.group() == "}" and _balance(chunk[start : m.start()]) == 0):
            break
        end = m.end()
    return chunk[start:end]


def _balance(text: str) -> int:
    return text.count("{") - text.count("}")


def parse_text(
    text: str, source: str, base_dir: Optional[str] = None, backend: str = BACKEND_FILE, listing: bool = False
) -> Parsed:
    """Read nft ruleset ``text`` (written at ``source``) into model tables -> ``Parsed``.

    ``listing``: the text is the kernel's own ``nft -a list`` output (rule handles from
    ``# handle N``); otherwise handles are counted as nft -f would give them, and only the
    file's lines locate rules. Raises ``Unsupported`` for grammar this reader does not
    implement, ``InputError`` for what nft would refuse. Rules are built one at a time
    (``tables.Builder``): no whole document is held."""
    reader = _Reader(base_dir or os.path.dirname(os.path.abspath(source)), os.path.isabs(source), listing)
    reader.read(text, source)
    builder = Builder(source, backend)
    placed: dict = {}
    grammars = {}
    for table in reader.tables.values():
        for name, block in table.set_blocks.items():
            try:
                block.targets = finish_set(block.obj, block.kinds, block.flags, block.elements)
            except Invalid as err:  # told at the set's line: its elements may span many
                where = reader.blocks.get(("set", table.family, table.name, name), (source, None))
                raise InputError(f"set {name}: {err}", path=where[0], line=where[1]) from None
        grammars[(table.family, table.name)] = _declare(builder, table)
    # a rule that names a set shows which field the set's elements are for: note those first
    early: dict = {}
    for table in reader.tables.values():
        grammar = grammars[(table.family, table.name)]
        for _body, rules in table.chains.values():
            for st in rules:
                toks = _tokens(reader, st)
                if any(t[0] == "@" for t in toks):
                    parsed = _rule(grammar, table, st, toks)
                    early[id(st)] = parsed
                    builder.note_rule({"family": table.family, "table": table.name, "expr": parsed[0]})
    builder.convert_sets()
    uses: dict = {}  # (family, table, chain) -> (chains it jumps to, restricted statements): validate.py
    for table in reader.tables.values():
        grammar = grammars[(table.family, table.name)]
        counter = table.next_handle
        fam, tname = table.family, table.name
        map_targets = {name: block.targets for name, block in table.set_blocks.items()}
        for chain_name, (_body, rules) in table.chains.items():
            targets: list = []
            kinds: set = set()
            uses[(fam, tname, chain_name)] = (targets, kinds)
            for st in rules:
                cached = early.get(id(st))
                exprs, comment = cached if cached is not None else _rule(grammar, table, st, _tokens(reader, st))
                _note_uses(exprs, map_targets, targets, kinds)
                counter += 1 + sum(1 for e in exprs if _anonymous_set(e))
                if listing and st.handle is None:
                    raise Unsupported("a listed rule without its handle")
                handle = st.handle if st.handle is not None else counter
                body: dict = {"family": fam, "table": tname, "chain": chain_name, "handle": handle, "expr": exprs}
                if comment is not None:
                    body["comment"] = comment
                if listing:
                    builder.add_rule(body, _listed_text(reader.texts[st.path], st))
                    continue
                loc = RuleLine(st.path, st.line, _rule_text(reader.texts[st.path], st))
                placed[(fam, tname, chain_name, handle)] = loc
                builder.add_rule(body, loc.text)
            rules.clear()
    tables = builder.tables_list()
    check_tables(tables, uses)
    return Parsed(tables, placed, reader.blocks)


def _note_uses(exprs: list, map_targets: dict, targets: list, kinds: set) -> None:
    """Add the chains a rule jumps or goes to (through verdict maps too) and its statements
    whose hooks the kernel restricts."""
    for stmt in exprs:
        key, val = next(iter(stmt.items()))
        if key in ("jump", "goto"):
            targets.append(val["target"])
        elif key == "vmap":
            data = val["data"]
            if isinstance(data, str):
                targets.extend(map_targets.get(data[1:], ()))
            else:
                targets.extend(v["target"] for _k, d in data["set"] for v in d.values() if isinstance(v, dict))
        elif key in RESTRICTED:
            kinds.add(key)


def _tokens(reader: _Reader, st: _Statement) -> list:
    if not st.whole:
        return st.toks
    return [t for t in _TOKEN.findall(reader.texts[st.path][st.line - 1]) if t[0] != "#"]


def _rule(grammar: RuleGrammar, table: _Table, st: _Statement, toks: list) -> tuple:
    """One rule's (JSON statements, comment), its jump targets checked against the table."""
    try:
        exprs, comment = grammar.parse(split_colons(toks))
        for target in grammar.targets:
            if target not in table.chains:
                raise Invalid(f"Could not process rule: No such file or directory (no chain {target!r})")
    except Invalid as err:
        raise InputError(str(err), path=st.path, line=st.line) from None
    return exprs, comment


def _declare(builder: Builder, table: _Table) -> RuleGrammar:
    """Give the builder the table, its sets and chains (handles counted as nft -f gives them:
    chains first, then sets, then rules and their anonymous sets); the grammar for its rules."""
    fam, tname = table.family, table.name
    head: dict = {"family": fam, "name": tname, "handle": table.handle}
    if table.comment is not None:
        head["comment"] = table.comment
    builder.add("table", head)
    counter = 0
    for body, _rules in table.chains.values():
        counter += 1
        body.setdefault("handle", counter)
    set_info: dict = {}
    for name, body in table.sets.items():
        counter += 1
        body.setdefault("handle", counter)
        set_info[name] = (body.pop("_kinds"), body.get("map"))
        builder.add("map" if "map" in body else "set", _ordered_set(body))
    for body, _rules in table.chains.values():
        builder.add("chain", body)
    table.next_handle = counter
    return RuleGrammar(fam, set_info)


def _ordered_set(body: dict) -> dict:
    """The set's keys in the order nft prints them (family, name, table, type, handle, ...)."""
    order = ("family", "name", "table", "type", "handle", "size", "flags", "timeout", "comment", "map", "elem")
    return {k: body[k] for k in order if k in body}


def _anonymous_set(stmt: dict) -> bool:
    """An anonymous set or verdict map takes a handle of its own in the table."""
    val = next(iter(stmt.values()))
    if not isinstance(val, dict):
        return False
    data = val.get("right") if "match" in stmt else val.get("data") if "vmap" in stmt else None
    return isinstance(data, dict) and "set" in data

"""`nft -j list ruleset` JSON (libnftables-json(5)) -> the model's tables, chains, sets and rules.

Pure: no I/O. Used for nft-json files, for nft files once libnftables has loaded them in a
throwaway namespace (``files``), and for the live host's native nftables tables (``live``).
Expressions become Matches in ``exprs``, statements Actions in ``stmts``; this module puts
them together and resolves named sets and maps against the fields rules match them with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Optional

from ...errors import InputError
from ...model import BACKEND_FILE, SYNTAX_NFT, Chain, NamedSet, Origin, Rule, Table, VmapEntry
from ...suppression import ignored_ids
from .exprs import TableContext, field_of
from .render import render_expr, render_rule
from .stmts import rule_parts, verdict
from .values import TYPE_KIND, Opaque, kind_of, value_items

__all__ = ["parse", "Builder", "NAMED_PRIORITIES"]

LineOf = Callable[[Table, str, Optional[int]], Optional[int]]

# Named chain priorities (nft(8), "PRIORITY"): family -> name -> number.
_STD_PRIO = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_BRIDGE_PRIO = {"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}
NAMED_PRIORITIES = {
    "ip": _STD_PRIO,
    "ip6": _STD_PRIO,
    "inet": _STD_PRIO,
    "arp": {"filter": 0},
    "netdev": {"filter": 0},
    "bridge": _BRIDGE_PRIO,
}


# Kinds of values per model field, to convert JSON values to model values.


def _named_set(obj: dict, is_map: bool, origin: Origin) -> NamedSet:
    flags = obj.get("flags") or []
    if isinstance(flags, str):
        flags = [flags]
    elems = obj.get("elem")
    if elems is None:
        elems = []
    elif not isinstance(elems, list):
        elems = [elems]
    typ = obj.get("type")
    key: Any
    if isinstance(typ, list):
        key = tuple(TYPE_KIND.get(t, (t, None))[0] for t in typ)
    else:
        key = TYPE_KIND.get(typ, (typ, None))[0] if typ else None
    dynamic = bool({"dynamic", "timeout"} & set(flags))
    return NamedSet(
        name=obj["name"],
        key=key,
        elements=tuple(elems),
        flags=frozenset(flags),
        is_map=is_map,
        map_type=obj.get("map") if is_map else None,
        known=not dynamic,
        origin=origin,
    )


def _convert_set(named: NamedSet, field: Any, ctx: TableContext) -> None:
    """Replace a set's raw JSON elements by model values, shaped for ``field`` (or its type)."""
    raw = named.elements
    if field is None:
        named.known = False
        named.elements = ()
        return
    kinds: Any
    if isinstance(field, tuple):
        kinds = tuple(kind_of(f) for f in field)
        if any(k is None for k in kinds):
            named.known = False
            named.elements = ()
            return
    else:
        kinds = kind_of(field)
        if kinds is None:
            named.known = False
            named.elements = ()
            return
    try:
        if named.is_map and named.map_type == "verdict":
            out = []
            for pair in raw:
                key_v, target = pair
                value = value_items(kinds, {"set": [key_v]})[0]
                vk, vv = next(iter(target.items()))
                out.append(VmapEntry(value, verdict(vk, vv)))
            named.elements = tuple(out)
        elif named.is_map:
            named.elements = tuple((value_items(kinds, {"set": [k]})[0], render_expr(d)) for k, d in raw)
        else:
            named.elements = value_items(kinds, {"set": list(raw)})
        named.key = field
        ctx.set_kinds[named.name] = kinds
    except (Opaque, KeyError, TypeError, ValueError, IndexError, StopIteration):
        named.known = False
        named.elements = ()


def _priority(value: Any, family: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    m = re.fullmatch(r"([a-z]+)\s*(?:([+-])\s*(\d+))?", text)
    if m and m.group(1) in NAMED_PRIORITIES.get(family, _STD_PRIO):
        base = NAMED_PRIORITIES.get(family, _STD_PRIO)[m.group(1)]
        if m.group(2):
            base += int(m.group(3)) * (1 if m.group(2) == "+" else -1)
        return base
    return None


def parse(
    doc: Any, source: str, backend: str = BACKEND_FILE, line_of: Optional[LineOf] = None, text_of: Optional[dict] = None
) -> list[Table]:
    """The `nft -j list ruleset` object -> list of model Tables.

    ``doc`` is the parsed JSON (``{"nftables": [...]}``).
    ``source`` goes into every Origin (a path, or "live:nftables").
    ``line_of(table, chain, handle)`` maps a rule to its source line (files): ``table``
    is the model Table being built. Without it rules carry ``Origin(source, handle=N)``.
    ``text_of`` maps ``(family, table, handle)`` to the rule's text as nft prints it;
    rules not in it get a text rendered from the JSON.
    """
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise InputError('not an `nft -j list ruleset` document: no "nftables" list', path=source)
    try:
        return _parse_items(items, source, backend, line_of, text_of)
    except (KeyError, TypeError, AttributeError) as err:
        raise InputError(f"malformed nft JSON: {type(err).__name__} {err}", path=source) from None


def _parse_items(
    items: list, source: str, backend: str, line_of: Optional[LineOf], text_of: Optional[dict]
) -> list[Table]:
    builder = Builder(source, backend)
    pending_rules: list = []
    for obj in items:
        if not isinstance(obj, dict) or not obj:
            continue
        kind, body = next(iter(obj.items()))
        if kind in ("add", "create", "insert") and isinstance(body, dict) and body:
            # the `nft -j -f` input form: {"add": {"rule": {...}}} (flush/delete commands ignored)
            kind, body = next(iter(body.items()))
        if not isinstance(body, dict):
            continue
        if kind == "rule":
            pending_rules.append(body)
        else:
            builder.add(kind, body)
    # Sets are converted once a rule shows which field they are matched against.
    for body in pending_rules:
        builder.note_rule(body)
    builder.convert_sets()
    for body in pending_rules:
        text = None
        if text_of is not None:
            text = text_of.get((body.get("family", "ip"), body.get("table"), body.get("handle")))
        builder.add_rule(body, text, line_of)
    return builder.tables_list()


class Builder:
    """Tables, sets and chains first (``add``), then every rule's set uses (``note_rule``),
    ``convert_sets``, then the rules (``add_rule``): ``parse`` in steps, for a reader that
    streams rules (text.py) instead of holding the whole document."""

    def __init__(self, source: str, backend: str) -> None:
        self.source = source
        self.backend = backend
        self.tables: dict = {}
        self.ctxs: dict = {}

    def add(self, kind: str, body: dict) -> None:
        """One table, set, map or chain object of the document (other kinds are ignored)."""
        source, backend, tables, ctxs = self.source, self.backend, self.tables, self.ctxs
        if kind == "table":
            key: tuple = (body.get("family", "ip"), body.get("name"))
            if key not in tables:
                tables[key] = Table(
                    family=key[0],
                    name=key[1],
                    backend=backend,
                    syntax=SYNTAX_NFT,
                    source=source,
                    origin=Origin(source, handle=body.get("handle")),
                    handle=body.get("handle"),
                )
                ctxs[key] = TableContext(key[0], tables[key].sets)
        elif kind in ("set", "map"):
            table = _table_for(tables, ctxs, body, source, backend)
            table.sets[body["name"]] = _named_set(body, kind == "map", Origin(source, handle=body.get("handle")))
        elif kind == "chain":
            table = _table_for(tables, ctxs, body, source, backend)
            hook = body.get("hook")
            table.chains[body["name"]] = Chain(
                name=body["name"],
                hook=hook,
                priority=_priority(body.get("prio"), table.family) if hook else None,
                type=body.get("type") if hook else None,
                policy=(body.get("policy") or "accept") if hook else None,
                origin=Origin(source, handle=body.get("handle")),
                handle=body.get("handle"),
            )

    def note_rule(self, body: dict) -> None:
        """Record the fields a rule matches named sets against (before ``convert_sets``)."""
        ctx = self.ctxs.get((body.get("family", "ip"), body.get("table")))
        for stmt in body.get("expr") or []:
            _note_set_use(stmt, ctx)

    def convert_sets(self) -> None:
        """Turn every set's JSON elements into model values, shaped for the field it is used with."""
        for key, ctx in self.ctxs.items():
            for name, named in self.tables[key].sets.items():
                _convert_set(named, ctx.set_keys.get(name) or named.key, ctx)

    def add_rule(self, body: dict, text: Optional[str] = None, line_of: Optional[LineOf] = None) -> Rule:
        """Build one rule object of the document into its chain (``text``: as written)."""
        source, backend = self.source, self.backend
        table = _table_for(self.tables, self.ctxs, body, source, backend)
        ctx = self.ctxs[(table.family, table.name)]
        chain_name: Any = body.get("chain")
        chain = table.chains.get(chain_name)
        if chain is None:
            chain = table.chains[chain_name] = Chain(name=chain_name)
        handle = body.get("handle")
        exprs = body.get("expr") or []
        comment = body.get("comment")
        matches, action, before = rule_parts(exprs, ctx)
        if text is None:
            text = render_rule(exprs, comment)
        line = line_of(table, chain_name, handle) if line_of is not None else None
        origin = Origin(source, line=line) if line is not None else Origin(source, handle=handle)
        rule = Rule(
            matches=matches,
            action=action,
            text=text,
            origin=origin,
            comment=comment,
            ignore=ignored_ids(comment),
            before=before,
        )
        chain.rules.append(rule)
        return rule

    def tables_list(self) -> list[Table]:
        """The tables built, in the order they were first named."""
        return list(self.tables.values())


def _note_set_use(stmt: Any, ctx: Optional[TableContext]) -> None:
    """Record which field each named set is first matched against (its key)."""
    if ctx is None or not isinstance(stmt, dict) or not stmt:
        return
    key, val = next(iter(stmt.items()))
    if key not in ("match", "vmap") or not isinstance(val, dict):
        return
    target = val.get("right") if key == "match" else val.get("data")
    left = val.get("left") if key == "match" else val.get("key")
    if not (isinstance(target, str) and target.startswith("@")):
        return
    try:
        if isinstance(left, dict) and "concat" in left:
            field: Any = tuple(field_of(x, ctx.family)[0] for x in left["concat"])
        else:
            fld, kind, _l4, mask = field_of(left, ctx.family)
            if mask is not None or kind == "ethertype":
                return
            field = fld
    except Opaque:
        return
    ctx.set_keys.setdefault(target[1:], field)


def _table_for(tables: dict, ctxs: dict, body: dict, source: str, backend: str) -> Table:
    key: tuple = (body.get("family", "ip"), body.get("table"))
    if key not in tables:
        tables[key] = Table(
            family=key[0], name=key[1], backend=backend, syntax=SYNTAX_NFT, source=source, origin=Origin(source)
        )
        ctxs[key] = TableContext(key[0], tables[key].sets)
    return tables[key]

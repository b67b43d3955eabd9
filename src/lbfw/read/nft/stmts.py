"""nft JSON statements -> the rule's matches, verdict or other action, and mark edits.

Pure. Verdicts, NAT, reject, queue and verdict maps become ``Action``s; statements that
never change the verdict (counter, log, limit, ...) stay in the rule text only; anything
else an ``Action("unknown")`` with its text.
"""

from __future__ import annotations

from typing import Any, Optional

from ...model import Action, Match, VmapEntry
from .exprs import TableContext, field_of, match_stmt
from .render import VERDICTS, render_stmt
from .values import Opaque, addr, value_item, value_items

__all__ = ["rule_parts", "verdict"]

# Statements that never change the verdict or what later rules see (kept in the text only).
_NEUTRAL_STMTS = {"counter", "log", "limit", "quota", "set", "map", "dup", "ct helper", "ct timeout",
                  "ct expectation", "secmark", "last", "flow", "meter"}


def verdict(key: str, val: Any) -> Action:
    """A verdict statement (accept, drop, jump X, ...) -> its Action."""
    if key in ("jump", "goto"):
        return Action(key, target=val.get("target") if isinstance(val, dict) else None)
    return Action(key)


def _nat(key: str, val: Any, family: str) -> Action:
    text = render_stmt({key: val})
    if not isinstance(val, dict):
        return Action(key, args=text)
    fam = val.get("family") or family
    raw_addr = val.get("addr")
    to_addr = None
    if isinstance(raw_addr, str):
        kind = "ip6" if (fam == "ip6" or ":" in raw_addr) else "ip4"
        try:
            to_addr = addr(kind, raw_addr)
        except Opaque:
            to_addr = None
    port = val.get("port")
    to_port = port if isinstance(port, int) and not isinstance(port, bool) else None
    return Action(key, args=text, to_addr=to_addr, to_port=to_port)


def _vmap(val: Any, ctx: TableContext) -> Action:
    text = render_stmt({"vmap": val})
    try:
        left = val["key"]
        if isinstance(left, dict) and "concat" in left:
            parts = [field_of(x, ctx.family) for x in left["concat"]]
            field: Any = tuple(p[0] for p in parts)
            kinds: Any = tuple(p[1] for p in parts)
        else:
            field, kinds, _l4, mask = field_of(left, ctx.family)
            if mask is not None or kinds == "ethertype":
                raise Opaque(text)
        data = val["data"]
        set_name = None
        if isinstance(data, str) and data.startswith("@"):
            set_name = data[1:]
            named = ctx.sets.get(set_name)
            if (named is None or not named.known or named.map_type != "verdict"
                    or ctx.set_kinds.get(set_name) != kinds):
                raise Opaque(text)
            return Action("vmap", args=text, vmap_field=field, vmap=named.elements, set_name=set_name)
        else:
            pairs = data["set"] if isinstance(data, dict) and "set" in data else None
            if pairs is None:
                raise Opaque(text)
        entries = []
        for pair in pairs:
            if isinstance(pair, dict) and "elem" in pair:
                pair = [pair["elem"].get("val"), pair.get("data")]
            key_v, target = pair
            if isinstance(kinds, tuple):
                value = value_items(kinds, {"set": [key_v]})[0]
            else:
                value = value_item(kinds, key_v)
            if not isinstance(target, dict) or not target:
                raise Opaque(text)
            vk, vv = next(iter(target.items()))
            if vk not in VERDICTS and vk not in ("drop", "accept"):
                raise Opaque(text)
            entries.append(VmapEntry(value, verdict(vk, vv)))
        return Action("vmap", args=text, vmap_field=field, vmap=tuple(entries), set_name=set_name)
    except (Opaque, KeyError, TypeError, ValueError, IndexError):
        return Action("unknown", target="vmap", args=text)


def _implied_l4(left: Any, ctx: TableContext) -> list:
    """Protocols a key expression implies (tcp/udp payload fields), in order, once each."""
    parts = left["concat"] if isinstance(left, dict) and "concat" in left else [left]
    out = []
    for part in parts:
        try:
            l4 = field_of(part, ctx.family)[2]
        except Opaque:
            continue
        if l4 is not None and l4 not in out:
            out.append(l4)
    return out


def _mark_set(value: Any) -> Optional[tuple]:
    """`meta mark set` value -> (value, mask): the new mark is (mark & ~mask) | value."""
    full = 0xFFFFFFFF
    if isinstance(value, int) and not isinstance(value, bool):
        return (value & full, full)
    if isinstance(value, dict) and "|" in value:
        inner, b = value["|"]
        if isinstance(b, int) and isinstance(inner, dict) and "&" in inner:
            m, a = inner["&"]
            if isinstance(a, int) and isinstance(m, dict) and m.get("meta", {}).get("key") == "mark":
                keep = a & ~b & full
                return (b & full, ~keep & full)
    if isinstance(value, dict) and "&" in value:
        m, a = value["&"]
        if isinstance(a, int) and isinstance(m, dict) and m.get("meta", {}).get("key") == "mark":
            return (0, ~a & full)
    return None


def rule_parts(exprs: list, ctx: TableContext) -> tuple:
    """Statements of one JSON rule -> (matches, action, before)."""
    matches: list = []
    before: list = []
    action: Optional[Action] = None
    unknown: Optional[Action] = None
    for stmt in exprs:
        if not isinstance(stmt, dict) or not stmt:
            continue
        key, val = next(iter(stmt.items()))
        if action is not None:
            break  # nothing after a verdict runs
        if key == "match":
            matches.extend(match_stmt(val, ctx))
        elif key in VERDICTS:
            action = verdict(key, val)
        elif key == "reject":
            action = Action("reject", args=render_stmt(stmt))
        elif key in ("dnat", "snat", "redirect", "masquerade"):
            action = _nat(key, val, ctx.family)
        elif key == "notrack":
            action = Action("notrack")
        elif key == "queue":
            action = Action("queue", args=render_stmt(stmt))
        elif key == "vmap":
            action = _vmap(val, ctx)
            # `tcp dport vmap {...}` only sees tcp packets: keep that dependency as a match
            for l4 in _implied_l4(val.get("key") if isinstance(val, dict) else None, ctx):
                matches.append(Match(field="meta.l4proto", values=((l4, l4),), text=render_stmt(stmt)))
        elif key == "xt":
            kind = val.get("type") if isinstance(val, dict) else None
            name = val.get("name") if isinstance(val, dict) else None
            if kind == "match":
                matches.append(Match(field="xt", text=f"xt match {name}", opaque=True))
            else:
                action = Action("unknown", target=name or "xt", args=f"xt {kind} {name}")
        elif key == "mangle" and isinstance(val, dict) and val.get("key", {}).get("meta", {}).get("key") == "mark":
            mark = _mark_set(val.get("value"))
            if mark is None:
                unknown = Action("unknown", target="meta mark set", args=render_stmt(stmt))
            else:
                before.append(Action("continue", set_mark=mark, args=render_stmt(stmt)))
        elif key in _NEUTRAL_STMTS or key == "mangle":
            continue  # counters, logs, other packet edits that do not decide verdicts
        else:
            unknown = Action("unknown", target=key, args=render_stmt(stmt))
    if action is None:
        action = unknown or Action("continue")
    return tuple(matches), action, tuple(before)

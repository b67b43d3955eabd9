"""nft JSON statements -> the rule's matches, verdict or other action, and mark edits.

Pure. Verdicts, NAT, reject, queue and verdict maps become ``Action``s; mark edits
(``meta mark set``, ``ct mark set``) Actions of kind "continue" in the rule's ``before``;
``limit``, ``quota`` and ``ct count`` Matches; statements that never change the verdict
(counter, log, nftrace, ct zone ...) stay in the rule text only; anything else an
``Action("unknown")`` with its text.
"""

from __future__ import annotations

from typing import Any, Optional

from ...model import Action, Match, VmapEntry
from .exprs import TableContext, field_of, match_stmt
from .render import VERDICTS, render_stmt
from .values import Opaque, addr, value_item, value_items

__all__ = ["rule_parts", "verdict"]

# Statements that never change the verdict or what later rules see (kept in the text only).
_NEUTRAL_STMTS = {
    "counter",
    "log",
    "set",
    "map",
    "dup",
    "ct helper",
    "ct timeout",
    "ct expectation",
    "secmark",
    "last",
    "flow",
    "meter",
}
_FULL = 0xFFFFFFFF
_META_MARK = {"meta": {"key": "mark"}}
_CT_MARK = {"ct": {"key": "mark"}}
_QUOTA_UNITS = {"bytes": 1, "kbytes": 1 << 10, "mbytes": 1 << 20, "gbytes": 1 << 30}


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
            if named is None or not named.known or named.map_type != "verdict" or ctx.set_kinds.get(set_name) != kinds:
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
            value = value_items(kinds, {"set": [key_v]})[0] if isinstance(kinds, tuple) else value_item(kinds, key_v)
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


def _mark_edit(value: Any, own: dict) -> Optional[tuple]:
    """A mark's new value written in terms of itself (``own``: meta mark or ct mark) -> (value,
    mask): the new mark is (mark & ~mask) ^ value. None when it is not such an edit."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value & _FULL, _FULL)
    if not isinstance(value, dict) or len(value) != 1:
        return None
    op, args = next(iter(value.items()))
    if op not in ("|", "&", "^") or not isinstance(args, list) or len(args) != 2 or not isinstance(args[1], int):
        return None
    inner, b = args
    b &= _FULL
    if inner == own:
        if op == "|":
            return (b, b)
        return (0, ~b & _FULL) if op == "&" else (b, 0)
    if (
        op == "|"
        and isinstance(inner, dict)
        and isinstance(inner.get("&"), list)
        and len(inner["&"]) == 2
        and inner["&"][0] == own
        and isinstance(inner["&"][1], int)
    ):
        keep = inner["&"][1] & ~b & _FULL
        return (b, ~keep & _FULL)
    return None


def _mark_stmts(target: str, value: Any, text: str) -> tuple:
    """`meta mark set ...` / `ct mark set ...` -> the Actions (kind continue) that edit the marks:
    set_mark / set_ctmark, copy_mark from the other mark (first cleared when only some bits are
    copied: `meta mark set ct mark & 0xff` leaves the other bits 0), or mark_unknown."""
    own, other = (_META_MARK, _CT_MARK) if target == "meta" else (_CT_MARK, _META_MARK)
    direction = "ct->meta" if target == "meta" else "meta->ct"
    edit = _mark_edit(value, own)
    if edit is not None:
        if target == "meta":
            return (Action("continue", args=text, set_mark=edit),)
        return (Action("continue", args=text, set_ctmark=edit),)
    if value == other:
        return (Action("continue", args=text, copy_mark=(direction, _FULL)),)
    if (
        isinstance(value, dict)
        and isinstance(value.get("&"), list)
        and len(value["&"]) == 2
        and value["&"][0] == other
        and isinstance(value["&"][1], int)
    ):
        mask = value["&"][1] & _FULL
        clear = (
            Action("continue", args=text, set_mark=(0, _FULL))
            if target == "meta"
            else Action("continue", args=text, set_ctmark=(0, _FULL))
        )
        return (clear, Action("continue", args=text, copy_mark=(direction, mask)))
    return (Action("continue", args=text, mark_unknown=target),)


def _rate_match(key: str, val: Any, text: str) -> Match:
    """`limit rate [over] ...`, `quota [over] N unit`, `ct count [over] N` -> their Match."""
    inverted = isinstance(val, dict) and bool(val.get("inv"))
    try:
        if key == "limit":
            return Match(field="limit", values=(("limit", text),), negate=inverted, text=text)
        if key == "quota":
            n = int(val["val"]) * _QUOTA_UNITS[val.get("val_unit", "bytes")]
            return Match(field="quota", values=(("over" if inverted else "quota", n),), text=text)
        n = int(val["val"])
        return Match(field="connlimit", values=(("above" if inverted else "upto", n),), text=text)
    except (KeyError, TypeError, ValueError):
        return Match(field=key, text=text, opaque=True)


def _without_repeats(matches: list) -> list:
    """Drop an implied protocol / family match (meta.l4proto, meta.nfproto) the rule already has."""
    seen: set = set()
    out = []
    for m in matches:
        if m.field in ("meta.l4proto", "meta.nfproto") and not m.negate and not m.opaque:
            key = (m.field, m.values)
            if key in seen:
                continue
            seen.add(key)
        out.append(m)
    return out


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
        elif key == "mangle" and isinstance(val, dict) and val.get("key") in (_META_MARK, _CT_MARK):
            target = "meta" if val["key"] == _META_MARK else "ct"
            before.extend(_mark_stmts(target, val.get("value"), render_stmt(stmt)))
        elif key in ("limit", "quota", "ct count"):
            matches.append(_rate_match(key, val, render_stmt(stmt)))
        elif key in _NEUTRAL_STMTS or key == "mangle":
            continue  # counters, logs, other packet edits that do not decide verdicts
        else:
            unknown = Action("unknown", target=key, args=render_stmt(stmt))
    if action is None:
        action = unknown or Action("continue")
    return tuple(_without_repeats(matches)), action, tuple(before)

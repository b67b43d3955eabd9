"""`nft -j list ruleset` JSON (libnftables-json(5)) -> the model.

Pure: no I/O. Used for nft-json files, for nft files once libnftables has loaded
them in a throwaway namespace (``nft_file``), and for the live host's native
nftables tables (``live``).

Every expression the model can express becomes a normalised ``Match`` (see
model.py); anything else becomes an opaque match or an ``Action("unknown")``
with a readable text: never an error, never dropped.
"""

from __future__ import annotations

import re
import socket
from typing import Any, Callable, Optional

from ..errors import InputError
from ..suppression import ignored_ids
from ..model import (
    Action, Chain, Match, NamedSet, Origin, Rule, Table, VmapEntry, BACKEND_FILE, SYNTAX_NFT,
)

__all__ = ["parse", "render_expr", "render_rule", "NAMED_PRIORITIES"]

# Named chain priorities (nft(8), "PRIORITY"): family -> name -> number.
_STD_PRIO = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_BRIDGE_PRIO = {"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}
NAMED_PRIORITIES = {
    "ip": _STD_PRIO, "ip6": _STD_PRIO, "inet": _STD_PRIO, "arp": {"filter": 0},
    "netdev": {"filter": 0}, "bridge": _BRIDGE_PRIO,
}


# Kinds of values per model field, to convert JSON values to model values.
_FIELD_KIND = {
    "ip.saddr": "ip4", "ip.daddr": "ip4", "ip6.saddr": "ip6", "ip6.daddr": "ip6",
    "th.sport": "port", "th.dport": "port", "meta.l4proto": "proto",
    "meta.iifname": "ifname", "meta.oifname": "ifname", "meta.nfproto": "word",
    "ct.state": "word", "ct.status": "word", "ct.direction": "word",
    "fib.saddr.type": "word", "fib.daddr.type": "word", "meta.mark": "u32",
}
_MAX = {"ip4": 0xFFFFFFFF, "ip6": (1 << 128) - 1, "port": 0xFFFF, "proto": 0xFF, "u32": 0xFFFFFFFF}
_PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "udplite": 136,
              "esp": 50, "ah": 51, "gre": 47, "dccp": 33, "igmp": 2, "ipip": 4, "all": 0}
_L4_OF_PAYLOAD = {"tcp": 6, "udp": 17, "sctp": 132, "dccp": 33, "udplite": 136}
_IF_KEYS = {"iif": "meta.iifname", "iifname": "meta.iifname", "oif": "meta.oifname", "oifname": "meta.oifname"}
_NFPROTO_OF_ETHERTYPE = {"ip": "ipv4", "ip6": "ipv6", "ipv4": "ipv4", "ipv6": "ipv6"}
# Statements that never change the verdict or what later rules see (kept in the text only).
_NEUTRAL_STMTS = {"counter", "log", "limit", "quota", "set", "map", "dup", "ct helper", "ct timeout",
                  "ct expectation", "secmark", "last", "flow", "meter"}
_VERDICTS = {"accept", "drop", "continue", "return", "jump", "goto"}
# Set types -> the field family their elements are shaped for (before a rule names the field).
_TYPE_KIND = {"ipv4_addr": ("ip.addr", "ip4"), "ipv6_addr": ("ip6.addr", "ip6"),
              "inet_service": ("th.port", "port"), "inet_proto": ("meta.l4proto", "proto"),
              "ifname": ("meta.ifname", "ifname"), "mark": ("meta.mark", "u32"),
              "ct_state": ("ct.state", "word"), "nf_proto": ("meta.nfproto", "word")}


class _Opaque(Exception):
    """Internal: this expression cannot be expressed in the model."""


# --------------------------------------------------------------------------- value conversion

def _ip4(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big") if text.count(".") == 3 else _bad(text)


def _ip6(text: str) -> int:
    return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")


def _bad(text):
    raise _Opaque(str(text))


def _addr(kind: str, text) -> int:
    if not isinstance(text, str):
        raise _Opaque(str(text))
    try:
        return _ip4(text) if kind == "ip4" else _ip6(text)
    except OSError:
        raise _Opaque(text) from None


def _scalar(kind: str, value) -> int:
    """A single integer for numeric kinds (port, proto, mark)."""
    if isinstance(value, bool):
        raise _Opaque(str(value))
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if kind == "proto":
            if value in _PROTO_NUM:
                return _PROTO_NUM[value]
            try:
                return socket.getprotobyname(value)
            except OSError:
                raise _Opaque(value) from None
        if kind == "port":
            if value.isdigit():
                return int(value)
            try:
                return socket.getservbyname(value)
            except OSError:
                raise _Opaque(value) from None
        if kind == "u32":
            try:
                return int(value, 0)
            except ValueError:
                raise _Opaque(value) from None
    raise _Opaque(str(value))


def _range(kind: str, value) -> tuple:
    """One JSON value (plain, prefix, range, elem wrapper) -> (lo, hi)."""
    if isinstance(value, dict):
        if "elem" in value:
            return _range(kind, value["elem"].get("val"))
        if "prefix" in value:
            if kind not in ("ip4", "ip6"):
                raise _Opaque(render_expr(value))
            bits = 32 if kind == "ip4" else 128
            plen = int(value["prefix"]["len"])
            base = _addr(kind, value["prefix"]["addr"])
            host = (1 << (bits - plen)) - 1
            lo = base & ~host & _MAX[kind]
            return (lo, lo | host)
        if "range" in value:
            lo_v, hi_v = value["range"]
            return (_range(kind, lo_v)[0], _range(kind, hi_v)[1])
        raise _Opaque(render_expr(value))
    if kind in ("ip4", "ip6"):
        n = _addr(kind, value)
        return (n, n)
    n = _scalar(kind, value)
    return (n, n)


def _value(kind: str, value):
    """One JSON value -> a model value item for a field of ``kind``."""
    if kind in ("ifname", "word"):
        if isinstance(value, dict) and "elem" in value:
            value = value["elem"].get("val")
        if isinstance(value, str):
            return value
        raise _Opaque(render_expr(value))
    return _range(kind, value)


def _values(kinds, value, allow_word_list=True) -> tuple:
    """A match's right-hand side (scalar, set, list of flags) -> tuple of value items.

    ``kinds`` is a kind string, or a tuple of kinds for a concatenation."""
    if isinstance(value, dict) and "set" in value:
        items = value["set"]
        if not isinstance(items, list):
            items = [items]
    elif isinstance(value, list) and allow_word_list:
        items = value  # flag lists: ct state ["established", "related"]
    else:
        items = [value]
    out = []
    if kinds == "ip4":
        # fast path: big sets are mostly plain dotted quads (100,000 elements in one set)
        aton, from_bytes = socket.inet_aton, int.from_bytes
        for item in items:
            if type(item) is str and item.count(".") == 3:
                try:
                    n = from_bytes(aton(item), "big")
                except OSError:
                    raise _Opaque(item) from None
                out.append((n, n))
            else:
                out.append(_value(kinds, item))
        return tuple(out)
    for item in items:
        if isinstance(kinds, tuple):
            if isinstance(item, dict) and "elem" in item:
                item = item["elem"].get("val")
            if not (isinstance(item, dict) and "concat" in item) or len(item["concat"]) != len(kinds):
                raise _Opaque(render_expr(item))
            out.append(tuple(_value(k, v) for k, v in zip(kinds, item["concat"])))
        else:
            out.append(_value(kinds, item))
    return tuple(out)


# --------------------------------------------------------------------------- rendering (texts)

def render_expr(e) -> str:
    """A readable nft spelling of a JSON expression (for texts of opaque matches and rules)."""
    if e is None:
        return ""
    if isinstance(e, bool):
        return "true" if e else "false"
    if isinstance(e, (int, float)):
        return str(e)
    if isinstance(e, str):
        return e
    if isinstance(e, list):
        return ",".join(render_expr(x) for x in e)
    if not isinstance(e, dict) or not e:
        return str(e)
    key, val = next(iter(e.items()))
    if key == "payload":
        if "protocol" in val:
            return f"{val['protocol']} {val.get('field', '')}".strip()
        return f"@{val.get('base', '?')},{val.get('offset', '?')},{val.get('len', '?')}"
    if key == "meta":
        k = val.get("key")
        return k if k in ("iif", "iifname", "oif", "oifname") else f"meta {k}"
    if key == "ct":
        parts = ["ct"]
        if val.get("dir"):
            parts.append(val["dir"])
        if val.get("family"):
            parts.append(val["family"])
        parts.append(val.get("key", "?"))
        return " ".join(parts)
    if key == "fib":
        return f"fib {' . '.join(val.get('flags', []))} {val.get('result', '')}".strip()
    if key == "prefix":
        return f"{render_expr(val['addr'])}/{val['len']}"
    if key == "range":
        return f"{render_expr(val[0])}-{render_expr(val[1])}"
    if key == "set":
        items = val if isinstance(val, list) else [val]
        return "{ " + ", ".join(_render_elem(x) for x in items) + " }"
    if key == "concat":
        return " . ".join(render_expr(x) for x in val)
    if key == "elem":
        return render_expr(val.get("val"))
    if key in ("&", "|", "^", "<<", ">>"):
        return f" {key} ".join(render_expr(x) for x in val)
    if key in ("map", "vmap") and isinstance(val, dict) and "key" in val:
        word = "map" if key == "map" else "vmap"
        return f"{render_expr(val['key'])} {word} {render_expr(val['data'])}"
    if key in ("exthdr", "tcp option", "sctp chunk"):
        return f"{key} {val.get('name', '')} {val.get('field', '')}".strip()
    if key == "symhash" or key == "jhash" or key == "numgen":
        return key
    if key in _VERDICTS:
        return f"{key} {val['target']}" if isinstance(val, dict) and "target" in val else key
    return f"{key} {render_expr(val) if not isinstance(val, dict) else _render_dict(val)}".strip()


def _render_dict(d: dict) -> str:
    return " ".join(f"{k} {render_expr(v)}" for k, v in d.items())


def _render_elem(x) -> str:
    if isinstance(x, list) and len(x) == 2:
        return f"{render_expr(x[0])} : {render_expr(x[1])}"
    return render_expr(x)


_OPS_TEXT = {"==": "", "in": ""}


def _render_stmt(s: dict) -> str:
    key, val = next(iter(s.items()))
    if key == "match":
        op = val.get("op", "==")
        raw_left, raw_right = val.get("left"), val.get("right")
        op_text = _OPS_TEXT.get(op, op)
        if op == "==" and isinstance(raw_left, dict) and next(iter(raw_left), None) in ("&", "|", "^"):
            op_text = "=="
        left, right = render_expr(raw_left), render_expr(raw_right)
        if (isinstance(raw_left, dict) and raw_left.get("meta", {}).get("key") in _IF_KEYS
                and isinstance(raw_right, str) and not raw_right.startswith("@")):
            right = f'"{right}"'
        return f"{left} {op_text} {right}".replace("  ", " ")
    if key == "quota" and isinstance(val, dict):
        return f"quota {val.get('val')} {val.get('val_unit', 'bytes')}"
    if key in _VERDICTS:
        return render_expr(s)
    if key == "counter":
        return "counter"
    if key == "log":
        return "log" + (f' prefix "{val["prefix"]}"' if isinstance(val, dict) and "prefix" in val else "")
    if key == "limit" and isinstance(val, dict):
        return f"limit rate {val.get('rate')}/{val.get('per', 'second')}"
    if key == "mangle":
        return f"{render_expr(val.get('key'))} set {render_expr(val.get('value'))}"
    if key == "vmap":
        return f"{render_expr(val.get('key'))} vmap {render_expr(val.get('data'))}"
    if key in ("dnat", "snat"):
        if not isinstance(val, dict):
            return key
        to = render_expr(val.get("addr", ""))
        if "port" in val:
            to += f":{render_expr(val['port'])}"
        fam = f" {val['family']}" if val.get("family") else ""
        return f"{key}{fam} to {to}"
    if key in ("redirect", "masquerade"):
        if isinstance(val, dict) and "port" in val:
            return f"{key} to :{render_expr(val['port'])}"
        return key
    if key == "reject":
        if isinstance(val, dict) and val.get("type"):
            return f"reject with {val['type']}" + (f" {val['expr']}" if val.get("expr") else "")
        return "reject"
    if key == "xt":
        return f"xt {val.get('type', '')} {val.get('name', '')}".strip() if isinstance(val, dict) else "xt"
    if val is None:
        return key
    return f"{key} {render_expr(val) if not isinstance(val, dict) else _render_dict(val)}"


def render_rule(exprs: list, comment: Optional[str] = None) -> str:
    """The rule as nft would roughly print it (used when no source text is at hand)."""
    text = " ".join(_render_stmt(s) for s in exprs if isinstance(s, dict) and s)
    if comment:
        text += f' comment "{comment}"'
    return text


# --------------------------------------------------------------------------- expressions -> fields

def _field_of(left, family: str):
    """JSON left-hand expression -> (field name, kind, implied l4proto or None, mask or None)."""
    if not isinstance(left, dict) or not left:
        raise _Opaque(render_expr(left))
    key, val = next(iter(left.items()))
    if key == "payload":
        proto, fld = val.get("protocol"), val.get("field")
        if proto == "ip" and fld in ("saddr", "daddr"):
            return f"ip.{fld}", "ip4", None, None
        if proto == "ip6" and fld in ("saddr", "daddr"):
            return f"ip6.{fld}", "ip6", None, None
        if proto == "ip" and fld == "protocol":
            return "meta.l4proto", "proto", None, None
        if proto == "ip6" and fld == "nexthdr":
            return "meta.l4proto", "proto", None, None
        if fld in ("sport", "dport"):
            if proto == "th":
                return f"th.{fld}", "port", None, None
            if proto in _L4_OF_PAYLOAD:
                return f"th.{fld}", "port", _L4_OF_PAYLOAD[proto], None
        raise _Opaque(render_expr(left))
    if key == "meta":
        k = val.get("key")
        if k in _IF_KEYS:
            return _IF_KEYS[k], "ifname", None, None
        if k == "l4proto":
            return "meta.l4proto", "proto", None, None
        if k == "nfproto":
            return "meta.nfproto", "word", None, None
        if k == "protocol" and family in ("inet", "ip", "ip6", "bridge", "netdev"):
            return "meta.nfproto", "ethertype", None, None
        if k == "mark":
            return "meta.mark", "u32", None, None
        raise _Opaque(render_expr(left))
    if key == "ct":
        k = val.get("key")
        if k in ("state", "status", "direction") and not val.get("dir"):
            return f"ct.{k}", "word", None, None
        raise _Opaque(render_expr(left))
    if key == "fib":
        flags = val.get("flags") or []
        if isinstance(flags, str):
            flags = [flags]
        if val.get("result") == "type" and len(flags) == 1 and flags[0] in ("saddr", "daddr"):
            return f"fib.{flags[0]}.type", "word", None, None
        raise _Opaque(render_expr(left))
    if key == "&" and isinstance(val, list) and len(val) == 2 and isinstance(val[1], int):
        inner = val[0]
        if isinstance(inner, dict) and inner.get("meta", {}).get("key") == "mark":
            return "meta.mark", "u32", None, val[1]
        raise _Opaque(render_expr(left))
    raise _Opaque(render_expr(left))


def _cmp_range(kind: str, op: str, value) -> tuple:
    n = _scalar(kind, value) if kind not in ("ip4", "ip6") else _addr(kind, value)
    top = _MAX[kind]
    if op == "<":
        return ((0, n - 1),) if n > 0 else ()
    if op == "<=":
        return ((0, n),)
    if op == ">":
        return ((n + 1, top),) if n < top else ()
    return ((n, top),)  # ">="


class _Ctx:
    """What expressions need to know about their table: family and named sets."""

    __slots__ = ("family", "sets", "set_keys", "set_kinds")

    def __init__(self, family: str, sets: dict):
        self.family = family
        self.sets = sets
        self.set_keys: dict = {}   # set name -> the field a rule first matches it against
        self.set_kinds: dict = {}  # set name -> value kind(s) its elements were converted to


def _match(stmt: dict, ctx: _Ctx) -> list:
    """A JSON match statement -> list of Match (an implied meta.l4proto comes first)."""
    left, right, op = stmt.get("left"), stmt.get("right"), stmt.get("op", "==")
    text = _render_stmt({"match": stmt})
    if op not in ("==", "!=", "in", "<", "<=", ">", ">="):
        return [Match(field="?", text=text, opaque=True)]
    implied: list = []
    try:
        if isinstance(left, dict) and "concat" in left:
            parts = [_field_of(x, ctx.family) for x in left["concat"]]
            if any(p[3] is not None or p[1] == "ethertype" for p in parts):
                raise _Opaque(text)
            field: Any = tuple(p[0] for p in parts)
            kinds: Any = tuple(p[1] for p in parts)
            implied = [p[2] for p in parts if p[2] is not None]
            mask = None
        else:
            field, kinds, l4, mask = _field_of(left, ctx.family)
            if l4 is not None:
                implied = [l4]
        set_name = None
        negate = op == "!="
        if isinstance(right, str) and right.startswith("@"):
            if op not in ("==", "!="):
                raise _Opaque(text)
            set_name = right[1:]
            named = ctx.sets.get(set_name)
            if named is None or not named.known or named.is_map or ctx.set_kinds.get(set_name) != kinds:
                raise _Opaque(text)
            values = named.elements
        elif op in ("<", "<=", ">", ">="):
            if isinstance(kinds, tuple) or kinds in ("ifname", "word", "ethertype"):
                raise _Opaque(text)
            values = _cmp_range(kinds, op, right)
        elif kinds == "ethertype":
            items = right["set"] if isinstance(right, dict) and "set" in right else [right]
            if not all(isinstance(x, str) and x in _NFPROTO_OF_ETHERTYPE for x in items):
                raise _Opaque(text)
            values = tuple(_NFPROTO_OF_ETHERTYPE[x] for x in items)
        else:
            if op == "in" and kinds not in ("word",):
                # "in" on a non-flag field is a bitwise test we do not model.
                raise _Opaque(text)
            values = _values(kinds, right)
        out = [Match(field="meta.l4proto", values=((p, p),), text=text) for p in dict.fromkeys(implied)]
        out.append(Match(field=field, values=values, negate=negate, text=text, set_name=set_name, mask=mask))
        return out
    except (_Opaque, KeyError, TypeError, ValueError, IndexError):
        # still only tcp (udp ...) packets: keep what is certain beside what is not
        out = [Match(field="meta.l4proto", values=((p, p),), text=text) for p in dict.fromkeys(implied)]
        out.append(Match(field=_opaque_field(left), text=text, opaque=True))
        return out


def _opaque_field(left) -> str:
    try:
        return render_expr(left) or "?"
    except Exception:  # a shape we have never seen: keep a placeholder, never fail
        return "?"


# --------------------------------------------------------------------------- statements -> actions

def _verdict(key: str, val) -> Action:
    if key in ("jump", "goto"):
        return Action(key, target=val.get("target") if isinstance(val, dict) else None)
    return Action(key)


def _nat(key: str, val, family: str) -> Action:
    text = _render_stmt({key: val})
    if not isinstance(val, dict):
        return Action(key, args=text)
    fam = val.get("family") or family
    addr = val.get("addr")
    to_addr = None
    if isinstance(addr, str):
        kind = "ip6" if (fam == "ip6" or ":" in addr) else "ip4"
        try:
            to_addr = _addr(kind, addr)
        except _Opaque:
            to_addr = None
    port = val.get("port")
    to_port = port if isinstance(port, int) and not isinstance(port, bool) else None
    return Action(key, args=text, to_addr=to_addr, to_port=to_port)


def _vmap(val, ctx: _Ctx) -> Action:
    text = _render_stmt({"vmap": val})
    try:
        left = val["key"]
        if isinstance(left, dict) and "concat" in left:
            parts = [_field_of(x, ctx.family) for x in left["concat"]]
            field: Any = tuple(p[0] for p in parts)
            kinds: Any = tuple(p[1] for p in parts)
        else:
            field, kinds, _l4, mask = _field_of(left, ctx.family)
            if mask is not None or kinds == "ethertype":
                raise _Opaque(text)
        data = val["data"]
        set_name = None
        if isinstance(data, str) and data.startswith("@"):
            set_name = data[1:]
            named = ctx.sets.get(set_name)
            if (named is None or not named.known or named.map_type != "verdict"
                    or ctx.set_kinds.get(set_name) != kinds):
                raise _Opaque(text)
            return Action("vmap", args=text, vmap_field=field, vmap=named.elements, set_name=set_name)
        else:
            pairs = data["set"] if isinstance(data, dict) and "set" in data else None
            if pairs is None:
                raise _Opaque(text)
        entries = []
        for pair in pairs:
            if isinstance(pair, dict) and "elem" in pair:
                pair = [pair["elem"].get("val"), pair.get("data")]
            key_v, verdict = pair
            if isinstance(kinds, tuple):
                value = _values(kinds, {"set": [key_v]})[0]
            else:
                value = _value(kinds, key_v)
            if not isinstance(verdict, dict) or not verdict:
                raise _Opaque(text)
            vk, vv = next(iter(verdict.items()))
            if vk not in _VERDICTS and vk not in ("drop", "accept"):
                raise _Opaque(text)
            entries.append(VmapEntry(value, _verdict(vk, vv)))
        return Action("vmap", args=text, vmap_field=field, vmap=tuple(entries), set_name=set_name)
    except (_Opaque, KeyError, TypeError, ValueError, IndexError):
        return Action("unknown", target="vmap", args=text)


def _implied_l4(left, ctx: _Ctx) -> list:
    """Protocols a key expression implies (tcp/udp payload fields), in order, once each."""
    parts = left["concat"] if isinstance(left, dict) and "concat" in left else [left]
    out = []
    for part in parts:
        try:
            l4 = _field_of(part, ctx.family)[2]
        except _Opaque:
            continue
        if l4 is not None and l4 not in out:
            out.append(l4)
    return out


def _mark_set(value) -> Optional[tuple]:
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


def _rule_parts(exprs: list, ctx: _Ctx) -> tuple:
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
            matches.extend(_match(val, ctx))
        elif key in _VERDICTS:
            action = _verdict(key, val)
        elif key == "reject":
            action = Action("reject", args=_render_stmt(stmt))
        elif key in ("dnat", "snat", "redirect", "masquerade"):
            action = _nat(key, val, ctx.family)
        elif key == "notrack":
            action = Action("notrack")
        elif key == "queue":
            action = Action("queue", args=_render_stmt(stmt))
        elif key == "vmap":
            action = _vmap(val, ctx)
            # `tcp dport vmap {...}` only sees tcp packets: keep that dependency as a match
            for l4 in _implied_l4(val.get("key") if isinstance(val, dict) else None, ctx):
                matches.append(Match(field="meta.l4proto", values=((l4, l4),), text=_render_stmt(stmt)))
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
                unknown = Action("unknown", target="meta mark set", args=_render_stmt(stmt))
            else:
                before.append(Action("continue", set_mark=mark, args=_render_stmt(stmt)))
        elif key in _NEUTRAL_STMTS or key == "mangle":
            continue  # counters, logs, other packet edits that do not decide verdicts
        else:
            unknown = Action("unknown", target=key, args=_render_stmt(stmt))
    if action is None:
        action = unknown or Action("continue")
    return tuple(matches), action, tuple(before)


# --------------------------------------------------------------------------- sets and tables

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
    if isinstance(typ, list):
        key = tuple(_TYPE_KIND.get(t, (t, None))[0] for t in typ)
    else:
        key = _TYPE_KIND.get(typ, (typ, None))[0] if typ else None
    dynamic = bool({"dynamic", "timeout"} & set(flags))
    return NamedSet(name=obj["name"], key=key, elements=tuple(elems), flags=frozenset(flags), is_map=is_map,
                    map_type=obj.get("map") if is_map else None, known=not dynamic, origin=origin)


def _convert_set(named: NamedSet, field, ctx: _Ctx) -> None:
    """Replace a set's raw JSON elements by model values, shaped for ``field`` (or its type)."""
    raw = named.elements
    if field is None:
        named.known = False
        named.elements = ()
        return
    kinds: Any
    if isinstance(field, tuple):
        kinds = tuple(_kind_of(f) for f in field)
        if any(k is None for k in kinds):
            named.known = False
            named.elements = ()
            return
    else:
        kinds = _kind_of(field)
        if kinds is None:
            named.known = False
            named.elements = ()
            return
    try:
        if named.is_map and named.map_type == "verdict":
            out = []
            for pair in raw:
                key_v, verdict = pair
                value = _values(kinds, {"set": [key_v]})[0]
                vk, vv = next(iter(verdict.items()))
                out.append(VmapEntry(value, _verdict(vk, vv)))
            named.elements = tuple(out)
        elif named.is_map:
            named.elements = tuple((_values(kinds, {"set": [k]})[0], render_expr(d)) for k, d in raw)
        else:
            named.elements = _values(kinds, {"set": list(raw)})
        named.key = field
        ctx.set_kinds[named.name] = kinds
    except (_Opaque, KeyError, TypeError, ValueError, IndexError, StopIteration):
        named.known = False
        named.elements = ()


def _kind_of(field: str) -> Optional[str]:
    if field in _FIELD_KIND:
        return _FIELD_KIND[field]
    for name, kind in _TYPE_KIND.values():
        if name == field:
            return kind
    return None


def _priority(value, family: str) -> Optional[int]:
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


def parse(doc, source: str, backend: str = BACKEND_FILE,
          line_of: Optional[Callable[[Table, str, Optional[int]], Optional[int]]] = None,
          text_of: Optional[dict] = None) -> list:
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
        raise InputError("not an `nft -j list ruleset` document: no \"nftables\" list", path=source)
    try:
        return _parse_items(items, source, backend, line_of, text_of)
    except (KeyError, TypeError, AttributeError) as err:
        raise InputError(f"malformed nft JSON: {type(err).__name__} {err}", path=source) from None


def _parse_items(items: list, source: str, backend: str, line_of, text_of) -> list:
    tables: dict = {}
    ctxs: dict = {}
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
        if kind == "table":
            key = (body.get("family", "ip"), body.get("name"))
            if key not in tables:
                tables[key] = Table(family=key[0], name=key[1], backend=backend, syntax=SYNTAX_NFT, source=source,
                                    origin=Origin(source, handle=body.get("handle")), handle=body.get("handle"))
                ctxs[key] = _Ctx(key[0], tables[key].sets)
        elif kind in ("set", "map"):
            table = _table_for(tables, ctxs, body, source, backend)
            table.sets[body["name"]] = _named_set(body, kind == "map", Origin(source, handle=body.get("handle")))
        elif kind == "chain":
            table = _table_for(tables, ctxs, body, source, backend)
            hook = body.get("hook")
            table.chains[body["name"]] = Chain(
                name=body["name"], hook=hook,
                priority=_priority(body.get("prio"), table.family) if hook else None,
                type=body.get("type") if hook else None,
                policy=(body.get("policy") or "accept") if hook else None,
                origin=Origin(source, handle=body.get("handle")), handle=body.get("handle"))
        elif kind == "rule":
            pending_rules.append(body)
    # Sets are converted once a rule shows which field they are matched against.
    for body in pending_rules:
        for stmt in body.get("expr") or []:
            _note_set_use(stmt, ctxs.get((body.get("family", "ip"), body.get("table"))))
    for key, ctx in ctxs.items():
        for name, named in tables[key].sets.items():
            _convert_set(named, ctx.set_keys.get(name) or named.key, ctx)
    for body in pending_rules:
        table = _table_for(tables, ctxs, body, source, backend)
        ctx = ctxs[(table.family, table.name)]
        chain_name = body.get("chain")
        chain = table.chains.get(chain_name)
        if chain is None:
            chain = table.chains[chain_name] = Chain(name=chain_name)
        handle = body.get("handle")
        exprs = body.get("expr") or []
        comment = body.get("comment")
        matches, action, before = _rule_parts(exprs, ctx)
        text = None
        if text_of is not None:
            text = text_of.get((table.family, table.name, handle))
        if text is None:
            text = render_rule(exprs, comment)
        line = line_of(table, chain_name, handle) if line_of is not None else None
        origin = Origin(source, line=line) if line is not None else Origin(source, handle=handle)
        if line is None and line_of is not None:
            origin = Origin(source, handle=handle)
        chain.rules.append(Rule(matches=matches, action=action, text=text, origin=origin, comment=comment,
                                ignore=ignored_ids(comment), before=before))
    return list(tables.values())


def _note_set_use(stmt, ctx: Optional[_Ctx]) -> None:
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
            field: Any = tuple(_field_of(x, ctx.family)[0] for x in left["concat"])
        else:
            fld, kind, _l4, mask = _field_of(left, ctx.family)
            if mask is not None or kind == "ethertype":
                return
            field = fld
    except _Opaque:
        return
    ctx.set_keys.setdefault(target[1:], field)


def _table_for(tables: dict, ctxs: dict, body: dict, source: str, backend: str) -> Table:
    key = (body.get("family", "ip"), body.get("table"))
    if key not in tables:
        tables[key] = Table(family=key[0], name=key[1], backend=backend, syntax=SYNTAX_NFT, source=source,
                            origin=Origin(source))
        ctxs[key] = _Ctx(key[0], tables[key].sets)
    return tables[key]

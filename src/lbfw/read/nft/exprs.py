"""nft JSON match expressions -> model Matches (field, values, negation).

Pure. Everything the model names becomes a normalised ``Match`` (see model.py); anything
else an opaque match with its text. Two lookups are emitted as their own fields so the
engine never reads rule text: the reverse-path ``fib ... oif`` test (``fib.rpf``) and
``tcp flags`` tests (``tcp.flags``, the same (mask, comp) items the iptables reader gives).
"""

from __future__ import annotations

from typing import Any, Optional

from ...model import Match, NamedSet
from .render import render_expr, render_stmt
from .values import MAX, Opaque, addr, scalar, value_items

__all__ = ["TableContext", "field_of", "match_stmt"]

_L4_OF_PAYLOAD = {"tcp": 6, "udp": 17, "sctp": 132, "dccp": 33, "udplite": 136}
_IF_KEYS = {"iif": "meta.iifname", "iifname": "meta.iifname", "oif": "meta.oifname", "oifname": "meta.oifname"}
_NFPROTO_OF_ETHERTYPE = {"ip": "ipv4", "ip6": "ipv6", "ipv4": "ipv4", "ipv6": "ipv6"}
# payload header fields -> (model field, value kind, implied l4proto)
_PAYLOAD_FIELDS = {
    ("icmp", "type"): ("icmp.type", "icmp_type", 1),
    ("icmp", "code"): ("icmp.code", "icmp_code", 1),
    ("icmpv6", "type"): ("icmpv6.type", "icmpv6_type", 58),
    ("icmpv6", "code"): ("icmpv6.code", "icmpv6_code", 58),
    ("ip", "ttl"): ("ip.ttl", "u8", None),
    ("ip6", "hoplimit"): ("ip6.hoplimit", "u8", None),
    ("ip", "length"): ("ip.length", "u16", None),
    ("ip6", "length"): ("ip6.length", "u16", None),
    ("ip", "dscp"): ("ip.dscp", "dscp", None),
    ("ip", "ecn"): ("ip.ecn", "ecn", None),
    ("ip6", "dscp"): ("ip6.dscp", "dscp", None),
    ("ip6", "ecn"): ("ip6.ecn", "ecn", None),
}
# meta keys -> (model field, value kind)
_META_FIELDS = {
    "length": ("meta.length", "u32"),
    "pkttype": ("meta.pkttype", "word"),
    "iiftype": ("meta.iiftype", "word"),
    "oiftype": ("meta.oiftype", "word"),
    "iifgroup": ("meta.iifgroup", "devgroup"),
    "oifgroup": ("meta.oifgroup", "devgroup"),
    "skuid": ("meta.skuid", "u32"),
    "skgid": ("meta.skgid", "u32"),
}
# meta keys only the moment a packet passes decides (field "runtime")
_RUNTIME_META = frozenset(("cpu", "time", "day", "hour", "iifkind", "oifkind", "random"))
# tcp option names nft prints -> option kind numbers
TCP_OPTION_KINDS = {
    "eol": 0,
    "nop": 1,
    "maxseg": 2,
    "window": 3,
    "sack-perm": 4,
    "sack": 5,
    "sack0": 5,
    "sack1": 5,
    "sack2": 5,
    "sack3": 5,
    "timestamp": 8,
    "md5sig": 19,
    "mptcp": 30,
    "fastopen": 34,
}
_FRAG_BITS = {0x1FFF: "ip.fragment", 0x2000: "ip.morefragments"}


def field_of(left: Any, family: str) -> tuple:
    """JSON left-hand expression -> (field name, kind, implied l4proto or None, mask or None)."""
    if not isinstance(left, dict) or not left:
        raise Opaque(render_expr(left))
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
        known = _PAYLOAD_FIELDS.get((proto, fld))
        if known is not None:
            return known[0], known[1], known[2], None
        if fld in ("sport", "dport"):
            if proto == "th":
                return f"th.{fld}", "port", None, None
            if proto in _L4_OF_PAYLOAD:
                return f"th.{fld}", "port", _L4_OF_PAYLOAD[proto], None
        raise Opaque(render_expr(left))
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
        if k in _META_FIELDS:
            return _META_FIELDS[k][0], _META_FIELDS[k][1], None, None
        raise Opaque(render_expr(left))
    if key == "ct":
        k = val.get("key")
        if k in ("state", "status", "direction") and not val.get("dir"):
            return f"ct.{k}", "word", None, None
        if k == "mark" and not val.get("dir"):
            return "ct.mark", "u32", None, None
        if k == "helper" and not val.get("dir"):
            return "ct.helper", "word", None, None
        raise Opaque(render_expr(left))
    if key == "tcp option" and val.get("name") == "maxseg" and val.get("field") == "size":
        return "tcp.option.mss", "u16", 6, None
    if key == "fib":
        flags = val.get("flags") or []
        if isinstance(flags, str):
            flags = [flags]
        if val.get("result") == "type" and len(flags) == 1 and flags[0] in ("saddr", "daddr"):
            return f"fib.{flags[0]}.type", "word", None, None
        raise Opaque(render_expr(left))
    if key == "&" and isinstance(val, list) and len(val) == 2 and isinstance(val[1], int):
        inner = val[0]
        if isinstance(inner, dict) and inner.get("meta", {}).get("key") == "mark":
            return "meta.mark", "u32", None, val[1]
        if isinstance(inner, dict) and inner.get("ct", {}).get("key") == "mark" and not inner["ct"].get("dir"):
            return "ct.mark", "u32", None, val[1]
        raise Opaque(render_expr(left))
    raise Opaque(render_expr(left))


def _cmp_range(kind: str, op: str, value: Any) -> tuple:
    n = scalar(kind, value) if kind not in ("ip4", "ip6") else addr(kind, value)
    top = MAX[kind]
    if op == "<":
        return ((0, n - 1),) if n > 0 else ()
    if op == "<=":
        return ((0, n),)
    if op == ">":
        return ((n + 1, top),) if n < top else ()
    return ((n, top),)  # ">="


class TableContext:
    """What expressions need to know about their table: family and named sets."""

    __slots__ = ("family", "sets", "set_keys", "set_kinds")

    def __init__(self, family: str, sets: dict[str, NamedSet]) -> None:
        self.family = family
        self.sets = sets
        self.set_keys: dict = {}  # set name -> the field a rule first matches it against
        self.set_kinds: dict = {}  # set name -> value kind(s) its elements were converted to


def match_stmt(stmt: dict, ctx: TableContext) -> list:
    """A JSON match statement -> list of Match (an implied meta.l4proto comes first)."""
    left, right, op = stmt.get("left"), stmt.get("right"), stmt.get("op", "==")
    text = render_stmt({"match": stmt})
    lookup = (
        _tcp_flags(left, op, right, text)
        or _fib_rpf(left, op, right, text)
        or _header_flag(left, op, right, text)
        or _numgen(left, op, right, text)
        or _runtime(left, text)
        or _tcp_option(left, op, right, text)
    )
    if lookup is not None:
        found = (
            [Match(field="meta.l4proto", values=((6, 6),), text=text), lookup]
            if lookup.field == "tcp.option"
            else [lookup]
        )
        return _with_nfproto(_implied_nfproto(left, ctx.family), found)
    if op not in ("==", "!=", "in", "<", "<=", ">", ">="):
        return [Match(field="?", text=text, opaque=True)]
    implied: list = []
    try:
        if isinstance(left, dict) and "concat" in left:
            parts = [field_of(x, ctx.family) for x in left["concat"]]
            if any(p[3] is not None or p[1] == "ethertype" for p in parts):
                raise Opaque(text)
            field: Any = tuple(p[0] for p in parts)
            kinds: Any = tuple(p[1] for p in parts)
            implied = [p[2] for p in parts if p[2] is not None]
            mask = None
        else:
            field, kinds, l4, mask = field_of(left, ctx.family)
            if l4 is not None:
                implied = [l4]
        set_name = None
        negate = op == "!="
        if isinstance(right, str) and right.startswith("@"):
            if op not in ("==", "!="):
                raise Opaque(text)
            set_name = right[1:]
            named = ctx.sets.get(set_name)
            if named is None or not named.known or named.is_map or ctx.set_kinds.get(set_name) != kinds:
                raise Opaque(text)
            values = named.elements
        elif op in ("<", "<=", ">", ">="):
            if isinstance(kinds, tuple) or kinds in ("ifname", "word", "ethertype"):
                raise Opaque(text)
            values = _cmp_range(kinds, op, right)
        elif kinds == "ethertype":
            items = right["set"] if isinstance(right, dict) and "set" in right else [right]
            names = [x for x in items if isinstance(x, str) and x in _NFPROTO_OF_ETHERTYPE]
            if len(names) != len(items):
                raise Opaque(text)
            values = tuple(_NFPROTO_OF_ETHERTYPE[x] for x in names)
        else:
            if op == "in" and kinds not in ("word",):
                # "in" on a non-flag field is a bitwise test we do not model.
                raise Opaque(text)
            values = value_items(kinds, right)
        out = [Match(field="meta.l4proto", values=((p, p),), text=text) for p in dict.fromkeys(implied)]
        out.append(Match(field=field, values=values, negate=negate, text=text, set_name=set_name, mask=mask))
        return _with_nfproto(_implied_nfproto(left, ctx.family), out)
    except (Opaque, KeyError, TypeError, ValueError, IndexError):
        # still only tcp (udp ...) packets: keep what is certain beside what is not
        out = [Match(field="meta.l4proto", values=((p, p),), text=text) for p in dict.fromkeys(implied)]
        out.append(Match(field=_opaque_field(left), text=text, opaque=True))
        return _with_nfproto(_implied_nfproto(left, ctx.family), out)


def _implied_nfproto(left: Any, family: str) -> Optional[str]:
    """In an inet table `ip ...` only sees IPv4 packets and `ip6 ...` IPv6 ones (nft adds the
    `meta nfproto` dependency and `nft -j` does not list it): the family the expression implies."""
    if family != "inet" or not isinstance(left, dict):
        return None
    parts = left["concat"] if "concat" in left and isinstance(left["concat"], list) else [left]
    for part in parts:
        while isinstance(part, dict) and "&" in part and isinstance(part["&"], list):
            part = part["&"][0]
        payload = part.get("payload") if isinstance(part, dict) else None
        if isinstance(payload, dict) and payload.get("protocol") in ("ip", "ip6"):
            return "ipv4" if payload["protocol"] == "ip" else "ipv6"
    return None


def _with_nfproto(nfproto: Optional[str], matches: list) -> list:
    if nfproto is None:
        return matches
    return [Match(field="meta.nfproto", values=(nfproto,), text=matches[-1].text)] + matches


def _opaque_field(left: Any) -> str:
    try:
        return render_expr(left) or "?"
    except Exception:  # a shape we have never seen: keep a placeholder, never fail
        return "?"


# --------------------------------------------------------------------------- tcp flags and fib oif

# The tcp_flag names nft prints, and their bits in the one-byte header field it loads.
_TCP_FLAG_BITS = {
    "fin": 0x01,
    "syn": 0x02,
    "rst": 0x04,
    "psh": 0x08,
    "ack": 0x10,
    "urg": 0x20,
    "ecn": 0x40,
    "cwr": 0x80,
}
_TCP_FLAGS_ALL = 0xFF
_TCP_FLAGS = {"payload": {"protocol": "tcp", "field": "flags"}}


def _flag_bits(value: Any) -> int:
    """A tcp flags value as nft JSON prints it -> its bits: "syn", a list ["syn", "ack"] and
    {"|": [...]} both mean syn|ack (one value, not a set), or a number."""
    if isinstance(value, str) and value in _TCP_FLAG_BITS:
        return _TCP_FLAG_BITS[value]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _TCP_FLAGS_ALL:
        return value
    parts = value if isinstance(value, list) else value.get("|") if isinstance(value, dict) else None
    if isinstance(parts, list) and parts:
        bits = 0
        for part in parts:
            bits |= _flag_bits(part)
        return bits
    raise Opaque(render_expr(value))


def _tcp_flags(left: Any, op: str, right: Any, text: str) -> Optional[Match]:
    """A `tcp flags` test -> ``Match("tcp.flags", ((mask, comp), ...))``: true when the packet's
    flags & mask == comp for one item (negate: for none), false for non-TCP packets.

    nft 1.0.6 prints (bytecode checked with ``nft --debug=netlink``):
    ``tcp flags & (syn|ack) == syn`` (and ``!=``) with the mask as a list or an OR, the
    comparison value as a name, a list (an OR) or a set; ``tcp flags == syn`` (mask 0xff);
    ``tcp flags syn,ack`` as op "in": flags & (syn|ack) != 0, any of them set; ``tcp flags !
    syn,ack`` as op "!": none of them set. Returns None when ``left`` is not tcp flags, an
    opaque Match for any other shape (a named set, a range)."""
    if left == _TCP_FLAGS:
        mask = _TCP_FLAGS_ALL
    elif (
        isinstance(left, dict)
        and isinstance(left.get("&"), list)
        and len(left["&"]) == 2
        and left["&"][0] == _TCP_FLAGS
    ):
        mask = -1  # read below, inside the try: an unknown mask keeps the match opaque
    else:
        return None
    try:
        if mask < 0:
            mask = _flag_bits(left["&"][1])
        if op == "in":
            return Match(field="tcp.flags", values=((mask & _flag_bits(right), 0),), negate=True, text=text)
        if op == "!":
            return Match(field="tcp.flags", values=((mask & _flag_bits(right), 0),), text=text)
        if op in ("==", "!="):
            comps = right["set"] if isinstance(right, dict) and isinstance(right.get("set"), list) else [right]
            if not comps:
                raise Opaque(text)
            return Match(
                field="tcp.flags", values=tuple((mask, _flag_bits(c)) for c in comps), negate=op == "!=", text=text
            )
    except Opaque:
        pass
    return Match(field=_opaque_field(left), text=text, opaque=True)


def _fib_rpf(left: Any, op: str, right: Any, text: str) -> Optional[Match]:
    """`fib saddr [. mark] . iif oif missing|exists|0` (and ``!=``): the reverse-path lookup ->
    ``Match("fib.rpf", (True,))`` when the rule asks whether a route exists, ``(False,)`` when
    it asks for none; negate for ``!=``. nft 1.0.6 prints missing/exists as false/true and
    ``oif 0`` as "0". Other flags are taken alike: on PREROUTING the kernel answers lo for a
    packet that came in on lo before it looks at them (nft_fib4_eval: nft_fib_is_loopback).
    None for any other fib lookup (types, an interface name), which stays as it was."""
    if not (isinstance(left, dict) and len(left) == 1 and isinstance(left.get("fib"), dict)):
        return None
    if left["fib"].get("result") not in ("oif", "oifname") or op not in ("==", "!="):
        return None
    if isinstance(right, bool):
        exists = right
    elif right in ("exists", "true"):
        exists = True
    elif right in ("missing", "false", "0") or (type(right) is int and right == 0):
        exists = False
    else:
        return None
    return Match(field="fib.rpf", values=(exists,), negate=op == "!=", text=text)


# --------------------------------------------------------------------------- other header and state tests


def _header_flag(left: Any, op: str, right: Any, text: str) -> Optional[Match]:
    """`ip frag-off & 0x1fff != 0` (a non-first fragment) and `& 0x2000` (more fragments) ->
    ip.fragment / ip.morefragments (True,); `== 0` negated."""
    if not (isinstance(left, dict) and isinstance(left.get("&"), list) and len(left["&"]) == 2):
        return None
    inner, bits = left["&"]
    if inner != {"payload": {"protocol": "ip", "field": "frag-off"}} or bits not in _FRAG_BITS:
        return None
    if op not in ("==", "!=") or right != 0:
        return Match(field=_opaque_field(left), text=text, opaque=True)
    return Match(field=_FRAG_BITS[bits], values=(True,), negate=op == "==", text=text)


def _numgen(left: Any, op: str, right: Any, text: str) -> Optional[Match]:
    """`numgen inc mod N P` -> statistic.nth ((N, P),) (negate for !=); `numgen random mod N` with a
    comparison -> statistic.random (the share of the N values it accepts,)."""
    if not (isinstance(left, dict) and isinstance(left.get("numgen"), dict)):
        return None
    gen = left["numgen"]
    mod, offset, mode = gen.get("mod"), gen.get("offset", 0), gen.get("mode")
    if not (isinstance(mod, int) and mod > 0 and isinstance(right, int) and not isinstance(right, bool)):
        return Match(field=_opaque_field(left), text=text, opaque=True)
    value = right - (offset or 0)
    if mode == "inc" and op in ("==", "!=") and 0 <= value < mod:
        return Match(field="statistic.nth", values=((mod, value),), negate=op == "!=", text=text)
    if mode == "random" and op in ("==", "!=", "<", "<=", ">", ">="):
        accepted = sum(
            1
            for n in range(mod)
            if {"==": n == value, "!=": n != value, "<": n < value, "<=": n <= value, ">": n > value, ">=": n >= value}[
                op
            ]
        )
        return Match(field="statistic.random", values=(accepted / mod,), text=text)
    return Match(field=_opaque_field(left), text=text, opaque=True)


def _runtime(left: Any, text: str) -> Optional[Match]:
    """`meta cpu`, `meta hour`, `meta day`, `meta time` ...: decided only when the packet passes."""
    if isinstance(left, dict) and isinstance(left.get("meta"), dict) and left["meta"].get("key") in _RUNTIME_META:
        return Match(field="runtime", values=((left["meta"]["key"], text),), text=text)
    return None


def _tcp_option(left: Any, op: str, right: Any, text: str) -> Optional[Match]:
    """`tcp option NAME exists` / `missing` (nft prints true / false) -> tcp.option (kind,)."""
    if not (isinstance(left, dict) and isinstance(left.get("tcp option"), dict)) or "field" in left["tcp option"]:
        return None
    kind = TCP_OPTION_KINDS.get(left["tcp option"].get("name"))
    if kind is None or not isinstance(right, bool) or op not in ("==", "!="):
        return Match(field=_opaque_field(left), text=text, opaque=True)
    return Match(field="tcp.option", values=(kind,), negate=(op == "!=") == right, text=text)

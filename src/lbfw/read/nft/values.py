"""nft JSON values -> model values: addresses, ports, protocols, marks, names, sets of them.

Pure. A value the model cannot hold raises ``Opaque``; the caller keeps the whole match
opaque with its text.
"""

from __future__ import annotations

import socket
from typing import Any, Optional

from .render import render_expr

__all__ = [
    "Opaque",
    "FIELD_KIND",
    "TYPE_KIND",
    "MAX",
    "NAMED",
    "addr",
    "scalar",
    "value_item",
    "value_items",
    "kind_of",
]

# Kinds of values per model field, to convert JSON values to model values.
FIELD_KIND = {
    "ip.saddr": "ip4",
    "ip.daddr": "ip4",
    "ip6.saddr": "ip6",
    "ip6.daddr": "ip6",
    "th.sport": "port",
    "th.dport": "port",
    "meta.l4proto": "proto",
    "meta.iifname": "ifname",
    "meta.oifname": "ifname",
    "meta.nfproto": "word",
    "ct.state": "word",
    "ct.status": "word",
    "ct.direction": "word",
    "fib.saddr.type": "word",
    "fib.daddr.type": "word",
    "meta.mark": "u32",
}
MAX = {
    "ip4": 0xFFFFFFFF,
    "ip6": (1 << 128) - 1,
    "port": 0xFFFF,
    "proto": 0xFF,
    "u32": 0xFFFFFFFF,
    "u8": 0xFF,
    "u16": 0xFFFF,
    "icmp_type": 0xFF,
    "icmp_code": 0xFF,
    "icmpv6_type": 0xFF,
    "icmpv6_code": 0xFF,
    "dscp": 63,
    "ecn": 3,
    "devgroup": 0xFFFFFFFF,
}
# The symbolic constants nft 1.0.6 prints for these kinds (`nft describe icmp type` ...)
NAMED = {
    "icmp_type": {
        "echo-reply": 0,
        "destination-unreachable": 3,
        "source-quench": 4,
        "redirect": 5,
        "echo-request": 8,
        "router-advertisement": 9,
        "router-solicitation": 10,
        "time-exceeded": 11,
        "parameter-problem": 12,
        "timestamp-request": 13,
        "timestamp-reply": 14,
        "info-request": 15,
        "info-reply": 16,
        "address-mask-request": 17,
        "address-mask-reply": 18,
    },
    "icmp_code": {
        "net-unreachable": 0,
        "host-unreachable": 1,
        "prot-unreachable": 2,
        "port-unreachable": 3,
        "frag-needed": 4,
        "net-prohibited": 9,
        "host-prohibited": 10,
        "admin-prohibited": 13,
    },
    "icmpv6_type": {
        "destination-unreachable": 1,
        "packet-too-big": 2,
        "time-exceeded": 3,
        "parameter-problem": 4,
        "echo-request": 128,
        "echo-reply": 129,
        "mld-listener-query": 130,
        "mld-listener-report": 131,
        "mld-listener-done": 132,
        "mld-listener-reduction": 132,
        "nd-router-solicit": 133,
        "nd-router-advert": 134,
        "nd-neighbor-solicit": 135,
        "nd-neighbor-advert": 136,
        "nd-redirect": 137,
        "router-renumbering": 138,
        "ind-neighbor-solicit": 141,
        "ind-neighbor-advert": 142,
        "mld2-listener-report": 143,
    },
    "icmpv6_code": {
        "no-route": 0,
        "admin-prohibited": 1,
        "addr-unreachable": 3,
        "port-unreachable": 4,
        "policy-fail": 5,
        "reject-route": 6,
    },
    "dscp": {
        "cs0": 0,
        "cs1": 8,
        "af11": 10,
        "af12": 12,
        "af13": 14,
        "cs2": 16,
        "af21": 18,
        "af22": 20,
        "af23": 22,
        "cs3": 24,
        "af31": 26,
        "af32": 28,
        "af33": 30,
        "cs4": 32,
        "af41": 34,
        "af42": 36,
        "af43": 38,
        "cs5": 40,
        "va": 44,
        "ef": 46,
        "cs6": 48,
        "cs7": 56,
    },
    "ecn": {"not-ect": 0, "ect1": 1, "ect0": 2, "ce": 3},
    "devgroup": {"default": 0},
}
_PROTO_NUM = {
    "tcp": 6,
    "udp": 17,
    "icmp": 1,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "sctp": 132,
    "udplite": 136,
    "esp": 50,
    "ah": 51,
    "gre": 47,
    "dccp": 33,
    "igmp": 2,
    "ipip": 4,
    "all": 0,
}
# Set types -> the field family their elements are shaped for (before a rule names the field).
TYPE_KIND = {
    "ipv4_addr": ("ip.addr", "ip4"),
    "ipv6_addr": ("ip6.addr", "ip6"),
    "inet_service": ("th.port", "port"),
    "inet_proto": ("meta.l4proto", "proto"),
    "ifname": ("meta.ifname", "ifname"),
    "mark": ("meta.mark", "u32"),
    "ct_state": ("ct.state", "word"),
    "nf_proto": ("meta.nfproto", "word"),
}


class Opaque(Exception):
    """This expression cannot be expressed in the model (its text is the message)."""


def _ip4(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big") if text.count(".") == 3 else _bad(text)


def _ip6(text: str) -> int:
    return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")


def _bad(text: str) -> int:
    raise Opaque(str(text))


def addr(kind: str, text: Any) -> int:
    """An IPv4 (``kind`` "ip4") or IPv6 address as an integer."""
    if not isinstance(text, str):
        raise Opaque(str(text))
    try:
        return _ip4(text) if kind == "ip4" else _ip6(text)
    except OSError:
        raise Opaque(text) from None


def scalar(kind: str, value: Any) -> int:
    """A single integer for numeric kinds (port, proto, mark)."""
    if isinstance(value, bool):
        raise Opaque(str(value))
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if kind == "proto":
            if value in _PROTO_NUM:
                return _PROTO_NUM[value]
            try:
                return socket.getprotobyname(value)
            except OSError:
                raise Opaque(value) from None
        if kind == "port":
            if value.isdigit():
                return int(value)
            try:
                return socket.getservbyname(value)
            except OSError:
                raise Opaque(value) from None
        names = NAMED.get(kind)
        if names is not None and value in names:
            return names[value]
        if kind in MAX and kind not in ("ip4", "ip6"):
            try:
                n = int(value, 0)
            except ValueError:
                raise Opaque(value) from None
            if not 0 <= n <= MAX[kind]:
                raise Opaque(value)
            return n
    raise Opaque(str(value))


def _range(kind: str, value: Any) -> tuple:
    """One JSON value (plain, prefix, range, elem wrapper) -> (lo, hi)."""
    if isinstance(value, dict):
        if "elem" in value:
            return _range(kind, value["elem"].get("val"))
        if "prefix" in value:
            if kind not in ("ip4", "ip6"):
                raise Opaque(render_expr(value))
            bits = 32 if kind == "ip4" else 128
            plen = int(value["prefix"]["len"])
            base = addr(kind, value["prefix"]["addr"])
            host = (1 << (bits - plen)) - 1
            lo = base & ~host & MAX[kind]
            return (lo, lo | host)
        if "range" in value:
            lo_v, hi_v = value["range"]
            return (_range(kind, lo_v)[0], _range(kind, hi_v)[1])
        raise Opaque(render_expr(value))
    if kind in ("ip4", "ip6"):
        n = addr(kind, value)
        return (n, n)
    n = scalar(kind, value)
    return (n, n)


def value_item(kind: str, value: Any) -> Any:
    """One JSON value -> a model value item for a field of ``kind``."""
    if kind in ("ifname", "word"):
        if isinstance(value, dict) and "elem" in value:
            value = value["elem"].get("val")
        if isinstance(value, str):
            return value
        raise Opaque(render_expr(value))
    return _range(kind, value)


def value_items(kinds: Any, value: Any, allow_word_list: bool = True) -> tuple:
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
                    raise Opaque(item) from None
                out.append((n, n))
            else:
                out.append(value_item(kinds, item))
        return tuple(out)
    for item in items:
        if isinstance(kinds, tuple):
            if isinstance(item, dict) and "elem" in item:
                item = item["elem"].get("val")
            if not (isinstance(item, dict) and "concat" in item) or len(item["concat"]) != len(kinds):
                raise Opaque(render_expr(item))
            out.append(tuple(value_item(k, v) for k, v in zip(kinds, item["concat"])))
        else:
            out.append(value_item(kinds, item))
    return tuple(out)


def kind_of(field: str) -> Optional[str]:
    """The value kind of a model field (or of a set type's field family), None when unknown."""
    if field in FIELD_KIND:
        return FIELD_KIND[field]
    for name, kind in TYPE_KIND.values():
        if name == field:
            return kind
    return None

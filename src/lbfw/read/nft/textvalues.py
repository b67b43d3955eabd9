"""Values in nft's text syntax, checked as nft checks them -> the JSON values nft lists.

Pure. Addresses (strict dotted quads, IPv6 canonicalised as nft prints it), prefixes (host bits
cleared; a full-length one is a plain address), ranges (never negative), ports and service
names, protocol names and numbers, marks, the words of ct state / status / direction, nfproto,
pkttype and fib types, times (`4h`, `10800s`), set types. ``grammar.py`` and ``text.py`` use
them; ``Invalid`` is a value nft refuses, ``Unsupported`` one this reader leaves to libnftables.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any, Optional

__all__ = [
    "finish_set",
    "name_of",
    "split_colons",
    "string",
    "Invalid",
    "Unsupported",
    "TYPE_KINDS",
    "element_value",
    "number",
    "order",
    "port",
    "scalar",
    "seconds",
    "set_type_kinds",
    "ip4",
    "range_value",
]


class Unsupported(Exception):
    """A spelling this reader does not implement (libnftables must read the file)."""


class Invalid(Exception):
    """A value nft would refuse (the message says what is wrong)."""


_CT_STATES = frozenset(("invalid", "established", "related", "new", "untracked"))


_CT_STATUS = frozenset(("expected", "seen-reply", "assured", "confirmed", "snat", "dnat", "dying"))


_CT_DIRECTION = frozenset(("original", "reply"))


_NFPROTO = frozenset(("ipv4", "ipv6"))


_PKTTYPE = frozenset(("host", "unicast", "broadcast", "multicast", "other"))


_FIB_TYPES = frozenset(
    ("unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole", "unreachable", "prohibit")
)


# protocol names nft prints for inet_proto values (it prints the name where /etc/protocols has one)
_PROTO_NAMES = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "udp": 17,
    "dccp": 33,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "sctp": 132,
    "udplite": 136,
}


_PROTO_ALIASES = {"icmpv6": "ipv6-icmp"}


_PROTO_OF_NUMBER = {n: name for name, n in _PROTO_NAMES.items()}


_IP4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


_TIME_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


_TIME = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")


# set types -> value kinds
TYPE_KINDS = {
    "ipv4_addr": "ip4",
    "ipv6_addr": "ip6",
    "inet_service": "port",
    "inet_proto": "proto",
    "ifname": "ifname",
    "mark": "num",
    "ct_state": "flags",
}


def set_type_kinds(words: list) -> tuple:
    """`type A . B [: C]` words (after `type`) -> (json type, kinds tuple, map type or None)."""
    text = " ".join(words)
    key, _, data = text.partition(":")
    names = [w.strip() for w in key.split(" . ")]
    if any(n not in TYPE_KINDS for n in names) or any(" " in n for n in names):
        raise Unsupported(f"set type {text}")
    data = data.strip()
    if data and data != "verdict" and data not in TYPE_KINDS:
        raise Unsupported(f"map type {data}")
    kinds = tuple(TYPE_KINDS[n] for n in names)
    return (names[0] if len(names) == 1 else names), kinds, (data or None)


def number(tok: str) -> int:
    try:
        return int(tok, 0) if not tok.isdigit() else int(tok)
    except ValueError:
        raise Unsupported(tok) from None


def seconds(tok: str) -> int:
    """An nft time (`4h`, `10800s`, `1d2h`, `30`) -> seconds."""
    if tok.isdigit():
        return int(tok)
    m = _TIME.fullmatch(tok)
    if m is None or not any(m.groups()):
        raise Unsupported(f"time {tok}")
    d, h, mi, s = (int(g) if g else 0 for g in m.groups()[:4])
    return ((d * 24 + h) * 60 + mi) * 60 + s


def ip4(tok: str) -> str:
    if _IP4.fullmatch(tok) is None:
        raise Invalid(f"invalid IPv4 address {tok!r}")
    return tok


def _ip6(tok: str) -> str:
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, tok))
    except (OSError, ValueError):
        raise Invalid(f"invalid IPv6 address {tok!r}") from None


def _prefix(kind: str, tok: str) -> Any:
    base, _, plen = tok.partition("/")
    if not plen.isdigit():
        raise Invalid(f"invalid prefix {tok!r}")
    bits = 32 if kind == "ip4" else 128
    n = int(plen)
    if n > bits:
        raise Invalid(f"prefix length {n} is too long for {tok!r}")
    addr = ip4(base) if kind == "ip4" else _ip6(base)
    if n == bits:
        return addr
    net = ipaddress.ip_network(f"{addr}/{n}", strict=False)
    return {"prefix": {"addr": str(net.network_address), "len": n}}


def port(tok: str) -> int:
    if tok.isdigit():
        n = int(tok)
        if n > 0xFFFF:
            raise Invalid(f"port {tok} is out of range (0-65535)")
        return n
    if not re.fullmatch(r"[a-z][a-z0-9-]*", tok):
        raise Unsupported(tok)
    try:
        return socket.getservbyname(tok)
    except OSError:
        raise Invalid(f"unknown service name {tok!r}") from None


def _proto(tok: str) -> Any:
    if tok.isdigit():
        n = int(tok)
        if n > 255:
            raise Invalid(f"protocol {tok} is out of range (0-255)")
        return _PROTO_OF_NUMBER.get(n, n)
    tok = _PROTO_ALIASES.get(tok, tok)
    if tok not in _PROTO_NAMES:
        raise Unsupported(f"protocol {tok}")
    return tok


def scalar(kind: str, tok: str, ctx: Optional[str] = None) -> Any:
    """One plain value of ``kind`` (no set, prefix or range)."""
    if kind == "ip4":
        return ip4(tok)
    if kind == "ip6":
        return _ip6(tok)
    if kind == "port":
        return port(tok)
    if kind == "proto":
        return _proto(tok)
    if kind == "ifname":
        name = tok[1:-1] if tok.startswith('"') and tok.endswith('"') and len(tok) >= 2 else tok
        if not name or len(name) > 15 or '"' in name or ("*" in name and not name.endswith("*")):
            raise Unsupported(f"interface name {tok}")
        if name.endswith("*"):
            raise Unsupported(f"interface wildcard {tok}")
        return name
    if kind == "num":
        n = number(tok)
        if not 0 <= n <= 0xFFFFFFFF:
            raise Invalid(f"value {tok} is out of range")
        return n
    if kind in ("word", "flags"):
        allowed = _WORDS.get(ctx or "")
        if allowed is None or tok not in allowed:
            raise Unsupported(f"{ctx} {tok}")
        return tok
    raise Unsupported(kind)


_WORDS = {
    "ct.state": _CT_STATES,
    "ct.status": _CT_STATUS,
    "ct.direction": _CT_DIRECTION,
    "meta.nfproto": _NFPROTO,
    "meta.pkttype": _PKTTYPE,
    "fib.type": _FIB_TYPES,
}


def element_value(kind: str, tok: str, ctx: Optional[str] = None, interval: bool = True) -> Any:
    """One value token of ``kind`` as nft JSON: plain, prefix (`a/n`) or range (`a-b`)."""
    if kind in ("ip4", "ip6"):
        if "/" in tok:
            if not interval:
                raise Invalid(f"{tok}: a prefix needs an interval set (flags interval)")
            return _prefix(kind, tok)
        if "-" in tok and kind == "ip4":
            lo, _, hi = tok.partition("-")
            return range_value(kind, lo, hi, interval)
        return scalar(kind, tok)
    if kind in ("port", "num") and "-" in tok and tok[0].isdigit():
        lo, _, hi = tok.partition("-")
        return range_value(kind, lo, hi, interval)
    return scalar(kind, tok, ctx)


def range_value(kind: str, lo: str, hi: str, interval: bool) -> Any:
    if not interval:
        raise Invalid(f"{lo}-{hi}: a range needs an interval set (flags interval)")
    a, b = scalar(kind, lo), scalar(kind, hi)
    if kind in ("ip4", "ip6"):
        fa, fb = int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))
    else:
        fa, fb = int(a), int(b)
    if fa > fb:
        raise Invalid(f"range {lo}-{hi} is negative")
    return {"range": [a, b]}  # nft lists `80-80` as a range too


_WORD_ORDER = {
    "invalid": 1,
    "established": 2,
    "related": 4,
    "new": 8,
    "untracked": 64,
    "expected": 1,
    "seen-reply": 2,
    "assured": 4,
    "confirmed": 8,
    "snat": 16,
    "dnat": 32,
    "dying": 512,
}


def order(kinds: Any, value: Any) -> Any:
    """The sort key of one anonymous set element (its number, address or range start)."""
    if isinstance(value, dict) and "concat" in value:
        return tuple(order(k, v) for k, v in zip(kinds, value["concat"]))
    kind = kinds[0]
    if isinstance(value, dict):
        if "prefix" in value:
            value = value["prefix"]["addr"]
        elif "range" in value:
            value = value["range"][0]
    if kind in ("ip4", "ip6"):
        return int(ipaddress.ip_address(value))
    if kind == "proto":
        return _PROTO_NAMES.get(value, value) if isinstance(value, str) else value
    if isinstance(value, int):
        return value
    return _WORD_ORDER.get(value, 1 << 20)


def name_of(tok: str) -> str:
    """A table, chain or set name token (quoted or not) -> the name."""
    if tok.startswith('"'):
        return string(tok)
    if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_./\-]*|[A-Za-z0-9_./\-]+", tok) or tok[0].isdigit():
        raise Unsupported(f"name {tok}")
    return tok


def finish_set(body: dict, kinds: Optional[tuple], flags: list, elements: list) -> list:
    """Complete a set's JSON ``body`` once the file is read (flags as nft lists them, its
    elements from their tokens); returns a verdict map's jump and goto targets."""
    if kinds is None:
        raise Unsupported("a set without a type")
    # the kernel keeps `dynamic` implicit for a set with timeouts: nft lists only "timeout"
    shown = [f for f in ("constant", "interval", "timeout", "dynamic") if f in flags]
    if "timeout" in shown and "dynamic" in shown:
        shown.remove("dynamic")
    if "timeout" in shown and "dynamic" in flags and "size" not in body:
        body["size"] = 65535
    if shown:
        body["flags"] = shown
    body["_kinds"] = kinds
    if not elements:
        return []
    body["elem"] = _elements(elements, kinds, body.get("map"), "interval" in flags, "timeout" in flags)
    if body.get("map") != "verdict":
        return []
    return [v["target"] for _k, d in body["elem"] for v in d.values() if isinstance(v, dict)]


def _elements(toks: list, kinds: tuple, map_type: Optional[str], interval: bool, timeout: bool) -> list:
    """The tokens inside `elements = { ... }` -> JSON elements (values, or [key, verdict] pairs)."""
    out: list = []
    if len(kinds) == 1 and map_type is None and not timeout:
        kind = kinds[0]
        # the common big case: plain values separated by commas (a ban list of 1,000,000 addresses)
        for j in range(1, len(toks), 2):
            if toks[j] != ",":
                break
        else:
            return [element_value(kind, t, None, interval) for t in toks[::2]]
    i, n = 0, len(toks)
    while i < n:
        vals = [element_value(kinds[0], toks[i], None, interval)]
        i += 1
        for kind in kinds[1:]:
            if i + 1 >= n or toks[i] != ".":
                raise Unsupported("element")
            vals.append(element_value(kind, toks[i + 1], None, interval))
            i += 2
        key: Any = vals[0] if len(vals) == 1 else {"concat": vals}
        # an element's timeout, expiry and comment are checked but not kept: the model holds values
        while i < n and toks[i] in ("timeout", "expires", "comment"):
            if i + 1 >= n:
                raise Unsupported("element option")
            if toks[i] == "comment":
                string(toks[i + 1])
            else:
                seconds(toks[i + 1])
            i += 2
        if map_type is not None:
            if i >= n or toks[i] != ":":
                raise Unsupported("map element")
            i += 1
            if map_type != "verdict":
                raise Unsupported("data map")
            verb = toks[i] if i < n else ""
            if verb in ("accept", "drop", "return", "continue"):
                data: Any = {verb: None}
                i += 1
            elif verb in ("jump", "goto") and i + 1 < n:
                data = {verb: {"target": name_of(toks[i + 1])}}
                i += 2
            else:
                raise Unsupported("map verdict")
            out.append([key, data])
        else:
            out.append(key)
        if i < n:
            if toks[i] != ",":
                raise Unsupported(f"element separator {toks[i]}")
            i += 1
    return out


def split_colons(toks: list) -> list:
    """`0:` (a vmap key glued to its colon) -> `0`, `:`; IPv6 addresses keep theirs."""
    out = []
    for t in toks:
        if len(t) > 1 and t.endswith(":") and not t.endswith("::") and t[0] != '"':
            out.append(t[:-1])
            out.append(":")
        else:
            out.append(t)
    return out


def string(tok: str) -> str:
    if len(tok) < 2 or tok[0] != '"' or tok[-1] != '"':
        raise Unsupported(f"not a string: {tok}")
    return tok[1:-1]

"""nft rule statements as text -> the JSON `nft -j list ruleset` prints for them.

Pure. The part of nft's grammar lbfw reads itself (``text.py`` drives it): payload, meta, ct,
fib and numgen matches, concatenations, anonymous sets, verdict maps, verdicts, NAT, reject,
mark edits, set updates, counters, logs and comments, spelled as ``nft list ruleset`` prints
them. Values are checked as nft checks them (addresses, prefixes, ranges, ports, numbers):
a bad one raises ``Invalid`` (the file is wrong). Anything else raises ``Unsupported``: the
caller then lets libnftables read the file, so nft's own grammar stays the reference.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any, Optional

__all__ = ["Invalid", "Unsupported", "RuleGrammar", "element_value", "set_type_kinds", "TYPE_KINDS"]


class Unsupported(Exception):
    """A spelling this reader does not implement (libnftables must read the file)."""


class Invalid(Exception):
    """A value nft would refuse (the message says what is wrong)."""


# payload fields: protocol -> field -> value kind
_PAYLOAD = {
    "ip": {"saddr": "ip4", "daddr": "ip4", "protocol": "proto", "ttl": "num", "length": "num"},
    "ip6": {"saddr": "ip6", "daddr": "ip6", "nexthdr": "proto", "hoplimit": "num", "length": "num"},
    "tcp": {"sport": "port", "dport": "port"},
    "udp": {"sport": "port", "dport": "port"},
    "th": {"sport": "port", "dport": "port"},
    "sctp": {"sport": "port", "dport": "port"},
    "udplite": {"sport": "port", "dport": "port"},
    "dccp": {"sport": "port", "dport": "port"},
}
_META = {
    "iif": "ifname",
    "oif": "ifname",
    "iifname": "ifname",
    "oifname": "ifname",
    "l4proto": "proto",
    "nfproto": "word",
    "mark": "num",
    "skuid": "num",
    "skgid": "num",
    "pkttype": "word",
}
_BARE_META = frozenset(("iif", "oif", "iifname", "oifname", "mark", "skuid", "skgid"))
_CT = {"state": "flags", "status": "flags", "direction": "word", "mark": "num"}
_FIB_FLAGS = frozenset(("saddr", "daddr", "mark", "iif", "oif"))
_FIB_RESULTS = frozenset(("oif", "oifname", "type"))
_OPS = {"==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", ">": ">", "gt": ">", "<=": "<=",
        "le": "<=", ">=": ">=", "ge": ">="}
_VERDICT_WORDS = frozenset(("accept", "drop", "return", "continue"))
_CT_STATES = frozenset(("invalid", "established", "related", "new", "untracked"))
_CT_STATUS = frozenset(("expected", "seen-reply", "assured", "confirmed", "snat", "dnat", "dying"))
_CT_DIRECTION = frozenset(("original", "reply"))
_NFPROTO = frozenset(("ipv4", "ipv6"))
_PKTTYPE = frozenset(("host", "unicast", "broadcast", "multicast", "other"))
_FIB_TYPES = frozenset(
    ("unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole", "unreachable", "prohibit")
)
# protocol names nft prints for inet_proto values (it prints the name where /etc/protocols has one)
_PROTO_NAMES = {"icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "udp": 17, "dccp": 33, "gre": 47, "esp": 50, "ah": 51,
                "ipv6-icmp": 58, "sctp": 132, "udplite": 136}
_PROTO_ALIASES = {"icmpv6": "ipv6-icmp"}
_PROTO_OF_NUMBER = {n: name for name, n in _PROTO_NAMES.items()}
_REJECT_DEFAULT = {"ip": ("icmp", "port-unreachable"), "inet": ("icmp", "port-unreachable"),
                   "ip6": ("icmpv6", "port-unreachable")}
_ICMP_REJECT = frozenset(("net-unreachable", "host-unreachable", "prot-unreachable", "port-unreachable",
                          "net-prohibited", "host-prohibited", "admin-prohibited"))
_ICMPX_REJECT = frozenset(("no-route", "port-unreachable", "host-unreachable", "admin-prohibited"))
_NAT_FLAGS = frozenset(("random", "fully-random", "persistent"))
_IP4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_TIME_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_TIME = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")
# set types -> value kinds
TYPE_KINDS = {"ipv4_addr": "ip4", "ipv6_addr": "ip6", "inet_service": "port", "inet_proto": "proto",
              "ifname": "ifname", "mark": "num", "ct_state": "flags"}


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


def _number(tok: str) -> int:
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


def _ip4(tok: str) -> str:
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
    addr = _ip4(base) if kind == "ip4" else _ip6(base)
    if n == bits:
        return addr
    net = ipaddress.ip_network(f"{addr}/{n}", strict=False)
    return {"prefix": {"addr": str(net.network_address), "len": n}}


def _port(tok: str) -> int:
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


def _scalar(kind: str, tok: str, ctx: Optional[str] = None) -> Any:
    """One plain value of ``kind`` (no set, prefix or range)."""
    if kind == "ip4":
        return _ip4(tok)
    if kind == "ip6":
        return _ip6(tok)
    if kind == "port":
        return _port(tok)
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
        n = _number(tok)
        if not 0 <= n <= 0xFFFFFFFF:
            raise Invalid(f"value {tok} is out of range")
        return n
    if kind in ("word", "flags"):
        allowed = _WORDS.get(ctx or "")
        if allowed is None or tok not in allowed:
            raise Unsupported(f"{ctx} {tok}")
        return tok
    raise Unsupported(kind)


_WORDS = {"ct.state": _CT_STATES, "ct.status": _CT_STATUS, "ct.direction": _CT_DIRECTION,
          "meta.nfproto": _NFPROTO, "meta.pkttype": _PKTTYPE, "fib.type": _FIB_TYPES}


def element_value(kind: str, tok: str, ctx: Optional[str] = None, interval: bool = True) -> Any:
    """One value token of ``kind`` as nft JSON: plain, prefix (`a/n`) or range (`a-b`)."""
    if kind in ("ip4", "ip6"):
        if "/" in tok:
            if not interval:
                raise Invalid(f"{tok}: a prefix needs an interval set (flags interval)")
            return _prefix(kind, tok)
        if "-" in tok and kind == "ip4":
            lo, _, hi = tok.partition("-")
            return _range(kind, lo, hi, interval)
        return _scalar(kind, tok)
    if kind in ("port", "num") and "-" in tok and tok[0].isdigit():
        lo, _, hi = tok.partition("-")
        return _range(kind, lo, hi, interval)
    return _scalar(kind, tok, ctx)


def _range(kind: str, lo: str, hi: str, interval: bool) -> Any:
    if not interval:
        raise Invalid(f"{lo}-{hi}: a range needs an interval set (flags interval)")
    a, b = _scalar(kind, lo), _scalar(kind, hi)
    if kind in ("ip4", "ip6"):
        fa, fb = int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))
    else:
        fa, fb = int(a), int(b)
    if fa > fb:
        raise Invalid(f"range {lo}-{hi} is negative")
    if fa == fb:
        return a
    return {"range": [a, b]}


class RuleGrammar:
    """Parse the statements of one rule (tokens) of a table of ``family``.

    ``sets`` maps set names of the table to (kinds, map type or None); used to check `@name`.
    ``chains`` is filled by the caller before rules are checked (jump targets)."""

    def __init__(self, family: str, sets: dict) -> None:
        self.family = family
        self.sets = sets
        self.toks: list = []
        self.i = 0
        self.targets: list = []  # (verb, chain) this rule jumps or goes to

    # -- cursor

    def _peek(self, k: int = 0) -> Optional[str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def _next(self) -> str:
        if self.i >= len(self.toks):
            raise Unsupported("unexpected end of rule")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def _expect(self, tok: str) -> None:
        if self._next() != tok:
            raise Unsupported(f"expected {tok}")

    # -- rules

    def parse(self, toks: list) -> tuple:
        """Tokens of one rule -> (list of JSON statements, comment or None)."""
        self.toks, self.i, self.targets = toks, 0, []
        out: list = []
        comment = None
        while self.i < len(self.toks):
            tok = self._next()
            if tok == "comment":
                comment = _unquote(self._next())
                continue
            stmt = self._statement(tok)
            out.append(stmt)
        _refuse_dependencies(out)
        return out, comment

    def _statement(self, tok: str) -> dict:
        if tok in _VERDICT_WORDS:
            return {tok: None}
        if tok in ("jump", "goto"):
            target = _unquote(self._next())
            self.targets.append(target)
            return {tok: {"target": target}}
        if tok == "counter":
            packets = bytes_ = 0
            if self._peek() == "packets":
                self.i += 1
                packets = _number(self._next())
                self._expect("bytes")
                bytes_ = _number(self._next())
            return {"counter": {"packets": packets, "bytes": bytes_}}
        if tok == "log":
            return self._log()
        if tok == "reject":
            return self._reject()
        if tok == "masquerade":
            return self._masquerade()
        if tok in ("dnat", "snat"):
            return self._nat(tok)
        if tok == "redirect":
            self._expect("to")
            port = self._next()
            if not port.startswith(":"):
                raise Unsupported("redirect")
            return {"redirect": {"port": _port(port[1:])}}
        if tok == "notrack":
            return {"notrack": None}
        if tok in ("update", "add") and (self._peek() or "").startswith("@"):
            return self._set_update(tok)
        if tok == "mark" and self._peek() == "set":
            self.i += 1
            return self._mangle({"meta": {"key": "mark"}})
        if tok in ("meta", "ct") and self._peek() == "mark" and self._peek(1) == "set":
            self.i += 2
            return self._mangle({tok: {"key": "mark"}})
        self.i -= 1
        return self._match()

    def _log(self) -> dict:
        body: dict = {}
        while self._peek() in ("prefix", "level", "group"):
            key = self._next()
            val = self._next()
            body[key] = _unquote(val) if key != "group" else _number(val)
        return {"log": body or None}

    def _reject(self) -> dict:
        if self._peek() != "with":
            typ, expr = _REJECT_DEFAULT.get(self.family, (None, None))
            if typ is None:
                raise Unsupported(f"reject in {self.family}")
            return {"reject": {"type": typ, "expr": expr}}
        self.i += 1
        kind = self._next()
        if kind == "tcp":
            self._expect("reset")
            return {"reject": {"type": "tcp reset"}}
        if kind in ("icmp", "icmpv6", "icmpx"):
            if self._peek() == "type":  # nft -f takes `icmp type CODE`; nft lists `icmp CODE`
                self.i += 1
            code = self._next()
            allowed = _ICMPX_REJECT if kind == "icmpx" else _ICMP_REJECT
            if kind == "icmpv6" or code not in allowed:
                raise Unsupported(f"reject with {kind} type {code}")
            return {"reject": {"type": kind, "expr": code}}
        raise Unsupported(f"reject with {kind}")

    def _masquerade(self) -> dict:
        flags = []
        while self._peek() is not None and self._peek().rstrip(",") in _NAT_FLAGS:
            for f in self._next().split(","):
                if f:
                    flags.append(f)
            if self._peek() == ",":
                self.i += 1
        if self._peek() == "to":
            raise Unsupported("masquerade to")
        if not flags:
            return {"masquerade": None}
        return {"masquerade": {"flags": flags[0] if len(flags) == 1 else flags}}

    def _nat(self, verb: str) -> dict:
        family = None
        if self._peek() in ("ip", "ip6"):
            family = self._next()
        if self._peek() == "to":
            self.i += 1
        elif family is not None or self.family == "inet":
            raise Unsupported(f"{verb} without to")
        target = self._next()
        if self.family == "inet" and family is None:
            raise Unsupported(f"{verb} in inet without a family")
        kind = "ip6" if (family or self.family) == "ip6" else "ip4"
        body: dict = {}
        if kind == "ip4":
            addr, _, port = target.partition(":")
            if "-" in addr:
                lo, _, hi = addr.partition("-")
                body["addr"] = _range("ip4", lo, hi, True)
            else:
                body["addr"] = _ip4(addr)
            if port:
                body["port"] = _port(port)
        else:
            raise Unsupported(f"{verb} to an IPv6 address")
        if family is not None and self.family == "inet":
            body = {"family": family, **body}
        if self._peek() is not None and self._peek() in _NAT_FLAGS:
            raise Unsupported(f"{verb} flags")
        return {verb: body}

    def _set_update(self, op: str) -> dict:
        name = self._next()[1:]
        if name not in self.sets:
            raise Invalid(f"unknown set {name!r}")
        self._expect("{")
        key = self._key_expr()
        elem: Any = key
        if self._peek() == "timeout":
            self.i += 1
            elem = {"elem": {"val": key, "timeout": seconds(self._next())}}
        self._expect("}")
        return {"set": {"op": op, "elem": elem, "set": f"@{name}"}}

    def _mangle(self, key: dict) -> dict:
        tok = self._next()
        if tok in ("mark", "meta", "ct"):
            if tok != "mark":
                self._expect("mark")
            src = {"meta": {"key": "mark"}} if tok in ("mark", "meta") else {"ct": {"key": "mark"}}
            value: Any = src
            if self._peek() in ("and", "&", "or", "|", "xor", "^"):
                op = {"and": "&", "or": "|", "xor": "^"}.get(self._next(), self.toks[self.i - 1])
                value = {op: [value, _number(self._next())]}
            if self._peek() in ("and", "&", "or", "|", "xor", "^"):
                raise Unsupported("two bitwise operations (nft folds them into one)")
            return {"mangle": {"key": key, "value": value}}
        n = _number(tok)
        if not 0 <= n <= 0xFFFFFFFF:
            raise Invalid(f"mark {tok} is out of range")
        return {"mangle": {"key": key, "value": n}}

    # -- matches and key expressions

    def _single_key(self) -> tuple:
        """One key expression -> (JSON, kind, word context)."""
        tok = self._next()
        if tok in _PAYLOAD:
            fld = self._next()
            kind = _PAYLOAD[tok].get(fld)
            if kind is None:
                raise Unsupported(f"{tok} {fld}")
            return {"payload": {"protocol": tok, "field": fld}}, kind, None
        if tok == "meta":
            key = self._next()
            if key not in _META:
                raise Unsupported(f"meta {key}")
            return {"meta": {"key": key}}, _META[key], f"meta.{key}"
        if tok in _BARE_META:
            return {"meta": {"key": tok}}, _META[tok], f"meta.{tok}"
        if tok == "ct":
            key = self._next()
            if key not in _CT:
                raise Unsupported(f"ct {key}")
            return {"ct": {"key": key}}, _CT[key], f"ct.{key}"
        if tok == "fib":
            flags = [self._next()]
            while self._peek() == ".":
                self.i += 1
                flags.append(self._next())
            result = self._next()
            if any(f not in _FIB_FLAGS for f in flags) or result not in _FIB_RESULTS or result != "type":
                raise Unsupported("fib")
            return {"fib": {"result": result, "flags": flags}}, "word", "fib.type"
        if tok == "numgen":
            mode = self._next()
            self._expect("mod")
            mod = _number(self._next())
            if mode not in ("random", "inc") or mod <= 0:
                raise Unsupported("numgen")
            offset = 0
            if self._peek() == "offset":
                self.i += 1
                offset = _number(self._next())
            return {"numgen": {"mode": mode, "mod": mod, "offset": offset}}, "num", None
        raise Unsupported(tok)

    def _key_expr(self) -> Any:
        parts = [self._single_key()]
        while self._peek() == ".":
            self.i += 1
            parts.append(self._single_key())
        if len(parts) == 1:
            self._last_kinds: Any = parts[0][1:]
            return parts[0][0]
        self._last_kinds = tuple(p[1:] for p in parts)
        return {"concat": [p[0] for p in parts]}

    def _match(self) -> dict:
        left = self._key_expr()
        kinds = self._last_kinds
        concat = isinstance(left, dict) and "concat" in left
        if self._peek() in ("and", "&"):
            if concat or kinds[0] != "num" or "numgen" in left:
                raise Unsupported("bitwise and")
            self.i += 1
            left = {"&": [left, _number(self._next())]}
        if self._peek() == "vmap":
            self.i += 1
            return self._vmap(left, kinds, concat)
        tok = self._peek()
        if tok is None:
            raise Unsupported("a key without a value")
        op = None
        if tok in _OPS:
            op = _OPS[tok]
            self.i += 1
        elif tok == "!":
            raise Unsupported("!")
        if "numgen" in left:
            raise Unsupported("numgen match")
        right = self._value(kinds, concat, op is None or op in ("==", "!="))
        if op is None:
            flag = not concat and kinds[0] == "flags"
            op = "in" if flag and not (isinstance(right, dict) and "set" in right) else "=="
        elif op in ("<", ">", "<=", ">=") and (concat or isinstance(right, (dict, list))):
            raise Unsupported("comparison with a set")
        return {"match": {"op": op, "left": left, "right": right}}

    def _value(self, kinds: Any, concat: bool, sets_allowed: bool) -> Any:
        tok = self._peek()
        if tok is not None and tok.startswith("@"):
            self.i += 1
            name = tok[1:]
            if name not in self.sets:
                raise Invalid(f"unknown set {name!r}")
            if self.sets[name][1] is not None:
                raise Invalid(f"{name!r} is a map, not a set")
            return tok
        if tok == "{":
            if not sets_allowed:
                raise Unsupported("set in a comparison")
            self.i += 1
            items = []
            while True:
                if self._peek() == "}":
                    self.i += 1
                    break
                items.append(self._one_value(kinds, concat))
                sep = self._next()
                if sep == "}":
                    break
                if sep != ",":
                    raise Unsupported(f"in a set: {sep}")
            if not items:
                raise Invalid("empty set")
            if len(items) == 1 and not isinstance(items[0], list):
                return items[0]  # nft turns a one-element anonymous set into a plain comparison
            # the kernel lists an anonymous set's elements in value order
            return {"set": sorted(items, key=lambda v: _order(kinds, v))}
        value = self._one_value(kinds, concat)
        if not concat and kinds[0] == "flags" and self._peek() == ",":
            words = [value]
            while self._peek() == ",":
                self.i += 1
                words.append(self._one_value(kinds, concat))
            return words
        return value

    def _one_value(self, kinds: Any, concat: bool) -> Any:
        if concat:
            vals = [self._plain(kinds[0], self._next())]
            for kind in kinds[1:]:
                self._expect(".")
                vals.append(self._plain(kind, self._next()))
            return {"concat": vals}
        return self._plain(kinds, self._next())

    def _plain(self, kinds: Any, tok: str) -> Any:
        kind, ctx = kinds
        if tok.startswith("$"):
            raise Invalid(f"undefined variable {tok!r}")
        return element_value(kind, tok, ctx)

    def _vmap(self, left: Any, kinds: Any, concat: bool) -> dict:
        tok = self._next()
        if tok.startswith("@"):
            name = tok[1:]
            if name not in self.sets:
                raise Invalid(f"unknown map {name!r}")
            if self.sets[name][1] != "verdict":
                raise Invalid(f"{name!r} is not a verdict map")
            return {"vmap": {"key": left, "data": tok}}
        if tok != "{":
            raise Unsupported("vmap")
        pairs = []
        while True:
            key = self._one_value(kinds, concat)
            self._expect(":")
            verdict = self._verdict()
            pairs.append([key, verdict])
            sep = self._next()
            if sep == "}":
                break
            if sep != ",":
                raise Unsupported(f"in a vmap: {sep}")
        return {"vmap": {"key": left, "data": {"set": pairs}}}

    def _verdict(self) -> dict:
        tok = self._next()
        if tok in ("accept", "drop", "return", "continue"):
            return {tok: None}
        if tok in ("jump", "goto"):
            target = _unquote(self._next())
            self.targets.append(target)
            return {tok: {"target": target}}
        raise Unsupported(f"verdict {tok}")


_L3_OF_NFPROTO = {"ipv4": "ip", "ipv6": "ip6"}
_L4_PAYLOADS = frozenset(("tcp", "udp", "sctp", "dccp", "udplite"))


def _refuse_dependencies(stmts: list) -> None:
    """nft drops a protocol match a later header match implies when it lists a rule
    (`meta nfproto ipv4 ip saddr ...` lists as `ip saddr ...`, `meta l4proto tcp tcp dport 22`
    as `tcp dport 22`): such rules are left to libnftables rather than guessed at."""
    pending: set = set()
    for stmt in stmts:
        match = stmt.get("match")
        if not isinstance(match, dict):
            continue
        left = match["left"]
        parts = left["concat"] if isinstance(left, dict) and "concat" in left else [left]
        for part in parts:
            payload = part.get("payload") if isinstance(part, dict) else None
            if payload is not None and payload["protocol"] in pending:
                raise Unsupported("a protocol match the next header match implies")
        if match["op"] == "==" and isinstance(match["right"], str):
            meta = left.get("meta", {}).get("key") if isinstance(left, dict) else None
            payload = left.get("payload") if isinstance(left, dict) else None
            if meta == "nfproto":
                pending.add(_L3_OF_NFPROTO.get(match["right"], ""))
            elif meta == "l4proto" or (payload is not None and payload["field"] in ("protocol", "nexthdr")):
                if match["right"] in _L4_PAYLOADS:
                    pending.add(match["right"])


_WORD_ORDER = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64, "expected": 1,
               "seen-reply": 2, "assured": 4, "confirmed": 8, "snat": 16, "dnat": 32, "dying": 512}


def _order(kinds: Any, value: Any) -> Any:
    """The sort key of one anonymous set element (its number, address or range start)."""
    if isinstance(value, dict) and "concat" in value:
        return tuple(_order(k, v) for k, v in zip(kinds, value["concat"]))
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


def _unquote(tok: str) -> str:
    if len(tok) >= 2 and tok[0] == '"' and tok[-1] == '"':
        return tok[1:-1]
    if '"' in tok:
        raise Unsupported(tok)
    return tok

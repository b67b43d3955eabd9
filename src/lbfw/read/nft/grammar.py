"""nft rule statements as text -> the JSON `nft -j list ruleset` prints for them.

Pure. The part of nft's grammar lbfw reads itself (``text.py`` drives it): payload, meta, ct,
fib and numgen matches, concatenations, anonymous sets, verdict maps, verdicts, NAT, reject,
mark edits, set updates, counters, logs and comments, spelled as ``nft list ruleset`` prints
them. Values are checked as nft checks them (addresses, prefixes, ranges, ports, numbers):
a bad one raises ``Invalid`` (the file is wrong). Anything else raises ``Unsupported``: the
caller then lets libnftables read the file, so nft's own grammar stays the reference.
"""

from __future__ import annotations

from typing import Any, Optional

from .textvalues import Invalid, Unsupported, element_value, ip4, number, order, range_value, seconds
from .textvalues import port as port_value

__all__ = ["RuleGrammar"]


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
# fib with iif/oif is valid on some hooks only: left to libnftables
_FIB_FLAGS = frozenset(("saddr", "daddr", "mark"))
_FIB_RESULTS = frozenset(("oif", "oifname", "type"))
_OPS = {
    "==": "==",
    "eq": "==",
    "!=": "!=",
    "ne": "!=",
    "<": "<",
    "lt": "<",
    ">": ">",
    "gt": ">",
    "<=": "<=",
    "le": "<=",
    ">=": ">=",
    "ge": ">=",
}
_VERDICT_WORDS = frozenset(("accept", "drop", "return", "continue"))
_REJECT_DEFAULT = {
    "ip": ("icmp", "port-unreachable"),
    "inet": ("icmp", "port-unreachable"),
    "ip6": ("icmpv6", "port-unreachable"),
}
_ICMP_REJECT = frozenset(
    (
        "net-unreachable",
        "host-unreachable",
        "prot-unreachable",
        "port-unreachable",
        "net-prohibited",
        "host-prohibited",
        "admin-prohibited",
    )
)
_ICMPX_REJECT = frozenset(("no-route", "port-unreachable", "host-unreachable", "admin-prohibited"))
_NAT_FLAGS = frozenset(("random", "fully-random", "persistent"))


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
                packets = number(self._next())
                self._expect("bytes")
                bytes_ = number(self._next())
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
            to = self._next()
            if not to.startswith(":"):
                raise Unsupported("redirect")
            return {"redirect": {"port": port_value(to[1:])}}
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
            body[key] = _unquote(val) if key != "group" else number(val)
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
            # icmpx only in inet tables (nft: "abstracted ICMP unreachable not supported"), icmp not in ip6
            wrong_family = (kind == "icmpx" and self.family != "inet") or (kind == "icmp" and self.family == "ip6")
            if kind == "icmpv6" or code not in allowed or wrong_family:
                raise Unsupported(f"reject with {kind} type {code}")
            return {"reject": {"type": kind, "expr": code}}
        raise Unsupported(f"reject with {kind}")

    def _masquerade(self) -> dict:
        flags = []
        while self._peek() in _NAT_FLAGS:
            flags.append(self._next())
            if self._peek() == "," and self._peek(1) in _NAT_FLAGS:
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
            addr, _, to_port = target.partition(":")
            if "-" in addr:
                lo, _, hi = addr.partition("-")
                body["addr"] = range_value("ip4", lo, hi, True)
            else:
                body["addr"] = ip4(addr)
            if to_port:
                body["port"] = port_value(to_port)
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
                value = {op: [value, number(self._next())]}
            if self._peek() in ("and", "&", "or", "|", "xor", "^"):
                raise Unsupported("two bitwise operations (nft folds them into one)")
            return {"mangle": {"key": key, "value": value}}
        n = number(tok)
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
            mod = number(self._next())
            if mode not in ("random", "inc") or mod <= 0:
                raise Unsupported("numgen")
            offset = 0
            if self._peek() == "offset":
                self.i += 1
                offset = number(self._next())
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
            left = {"&": [left, number(self._next())]}
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
            return {"set": sorted(items, key=lambda v: order(kinds, v))}
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
            elif (meta == "l4proto" or (payload is not None and payload["field"] in ("protocol", "nexthdr"))) and match[
                "right"
            ] in _L4_PAYLOADS:
                pending.add(match["right"])


def _unquote(tok: str) -> str:
    if len(tok) >= 2 and tok[0] == '"' and tok[-1] == '"':
        return tok[1:-1]
    if '"' in tok:
        raise Unsupported(tok)
    return tok

"""Deferred lines: the rule shape proven well-formed when read, and the lazy rule list that
builds such lines when first asked for (``DeferredRules``, a ``lbfw.model.LazyRules``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from socket import AF_INET as _AF_INET
from socket import inet_pton as _pton
from typing import Optional

from ...model import Chain, LazyRules, Rule
from .values import _CACHE_LIMIT, _ip6, _net

_from_bytes = int.from_bytes
_COMMENT_HEAD = ' -m comment --comment "'
_COMMENT_HEAD_LEN = len(_COMMENT_HEAD)
_COMMENT_AFTER = ("", " ")

#
# A kube-proxy node's dump is mostly per-service and per-endpoint chains (KUBE-SVC-*,
# KUBE-SEP-*) that no loopback flow ever enters. Building their 100,000+ Rules is most of a
# big audit's time, so a rule line is only *checked* when read, and built when its chain is
# first asked for its rules (``Chain.rules``). Only lines of this plain shape are left for
# later, because for them the check is a proof: every IPv4 address is a dotted quad with
# octets <= 255 and a prefix <= 32 (IPv6: what _ip6 reads, checked when the line is read,
# and a prefix <= 128), every port is one number 0..65535, the comment holds no quote or
# backslash, `-m tcp` follows `-p tcp`, and the target is a chain declared by then or one
# of the targets below with the options it takes. Building such a line cannot raise, so a
# bad line is still reported when the file is read (any line outside the shape is built at
# once, as before), and the Rule built later is the one the line would have given then.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_PREFIX = r"(?:/(?:3[0-2]|[12]?[0-9]))?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9][0-9]|6[0-4][0-9][0-9][0-9]|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"


def _simple_rule(address: str, dnat_to: str, reject_with: str) -> re.Pattern:
    """The deferred shape (what follows `-A CHAIN`), with one family's spelling of addresses."""
    return re.compile(
        rf"(?: (?P<sn>! )?-s (?P<s>{address}))?"
        rf"(?: (?P<dn>! )?-d (?P<d>{address}))?"
        r"(?: -p (?P<p>tcp|udp|sctp))?"
        r'(?: -m comment --comment "[^"\\]*")?'
        rf"(?: -m (?P=p)(?: (?P<portn>! )?--dport (?P<port>{_PORT}))?)?"  # no range: a regex cannot see min > max
        r"(?: -m statistic --mode random --probability (?:0\.[0-9]{1,11}|1\.0{1,11}))?"
        rf" -j (?:DNAT --to-destination {dnat_to}:{_PORT}|REJECT --reject-with {reject_with}"
        r"|(?P<t>[A-Za-z0-9_.-]{1,28}))"
    )


# Every match field a line of that shape can give (the engine's and the checks' business: an
# owner, mark or state match is never in a deferred line, so looking for one needs no build).
DEFERRED_FIELDS = frozenset(
    ("ip.saddr", "ip.daddr", "ip6.saddr", "ip6.daddr", "meta.l4proto", "th.dport", "statistic.random")
)

_SIMPLE_RULE = _simple_rule(_DOTTED + _PREFIX, _DOTTED, "icmp-port-unreachable")
# ip6tables-save's spelling of the same shape; the addresses are checked with _ip6 as read
_HEX6 = r"[0-9A-Fa-f:.]{2,45}"
_PREFIX6 = r"(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?"
_SIMPLE_RULE6 = _simple_rule(_HEX6 + _PREFIX6, rf"\[(?P<to>{_HEX6})\]", "icmp6-port-unreachable")


def _ip6_addresses_read(m, seen: dict) -> bool:
    """Every address of a _SIMPLE_RULE6 match is one _ip6 reads (else the line is read at once,
    and its error raised then). ``seen`` remembers the answers: kube-proxy names each pod and
    service address in two or three lines, and _ip6 (ipaddress) is the slow part."""
    for name in ("s", "d", "to"):
        value = m.group(name)
        if value is not None:
            address = value.partition("/")[0]
            ok = seen.get(address)
            if ok is None:
                try:
                    _ip6(address)
                    ok = True
                except ValueError:
                    ok = False
                if len(seen) < _CACHE_LIMIT:
                    seen[address] = ok
            if not ok:
                return False
    return True


# targets a deferred line may name without a chain of that name (built exactly as at once)
_DEFERRABLE_TARGETS = frozenset(("ACCEPT", "DROP", "RETURN", "MASQUERADE"))
_DEFERRED_OWN = frozenset(("DNAT", "REJECT"))  # spelled out in _SIMPLE_RULE with their options


def _cut_comment(plain: str) -> tuple:
    """(PLAIN without its `-m comment --comment "..."`, the comment), or (None, None) when the
    quoting is anything but that one plain comment (the general path then reads the line).
    Kube-proxy writes one per rule; found with str.find, as _COMMENT_RE would match it: no
    quote before it, no backslash inside, a space or the end after it."""
    start = plain.find(_COMMENT_HEAD)
    end = plain.find('"', start + _COMMENT_HEAD_LEN) if start >= 0 else -1
    if (
        end >= 0
        and '"' not in plain[:start]
        and plain[end + 1 : end + 2] in _COMMENT_AFTER
        and '"' not in plain[end + 1 :]
        and "\\" not in (body := plain[start + _COMMENT_HEAD_LEN : end])
    ):
        return plain[:start] + plain[end + 1 :], body
    return None, None


def unbuilt_exact_keys(entry: tuple) -> dict:
    """The engine's index keys of a deferred line, without building it: {field: value} for
    each positive `-s A`, `-d A` (one address) and `--dport N`, in the rule's order; the
    same dict ``lbfw.analyze.engine._exact_keys`` gives for the built rule (a test holds
    them equal on every deferred line of the corpus). IPv6 entries carry a third item."""
    line = entry[1]
    v6 = len(entry) > 2
    m = (_SIMPLE_RULE6 if v6 else _SIMPLE_RULE).fullmatch(line, line.find(" ", 3))
    assert m is not None  # the line was deferred because it matched
    keys = {}
    fields = (
        (("s", "sn", "ip6.saddr"), ("d", "dn", "ip6.daddr"))
        if v6
        else (("s", "sn", "ip.saddr"), ("d", "dn", "ip.daddr"))
    )
    for name, neg, field in fields:
        value = m.group(name)
        if value is not None and m.group(neg) is None:
            addr, _, prefix = value.partition("/")
            if v6:
                if not prefix or prefix == "128":
                    keys[field] = _ip6(addr)
            elif not prefix or prefix == "32":
                keys[field] = _from_bytes(_pton(_AF_INET, addr), "big")
    port = m.group("port")
    if port is not None and m.group("portn") is None:
        keys["th.dport"] = int(port)
    return keys


_LOOPBACK = {"ip": (0x7F000000, 0x7FFFFFFF), "ip6": (1, 1)}


def port_line_sees_loopback(m, family: str) -> bool:
    """For a deferred line with a `--dport` (``m`` its _SIMPLE_RULE(6) match): False when a
    positive `-s`/`-d` lies outside 127.0.0.0/8 (IPv6: is not ::1), so no loopback packet can
    match it."""
    lo, hi = _LOOPBACK[family]
    for name, neg in (("s", "sn"), ("d", "dn")):
        value = m.group(name)
        if value is not None and m.group(neg) is None:
            net = _net(value, family)
            if net is not None and (net[1] < lo or hi < net[0]):
                return False
    return True


class DeferredRules(LazyRules):
    """A chain's rules while some are deferred lines (see above): ``entries`` holds, per
    position, the built Rule or the line's (lineno, line) tuple ((lineno, line, 6) for IPv6),
    and ``build(chain, entry, position)`` makes the Rule of an entry exactly as reading it at
    once would have. ``ports``: some deferred line names a `--dport` a loopback packet may meet
    (decided as the lines were read: ``port_line_sees_loopback``)."""

    __slots__ = ("entries", "chain", "build", "unbuilt", "ports")

    def __init__(self, chain: Chain, build: Callable, entries: Optional[list] = None) -> None:
        self.entries: list = [] if entries is None else entries
        self.chain = chain
        self.build = build
        self.unbuilt = 0
        self.ports = False

    def defer(self, entry: tuple) -> None:
        """Queue a deferred line behind whatever the chain holds."""
        self.entries.append(entry)
        self.unbuilt += 1

    def build_all(self) -> list:
        """Build every deferred line (all before any is stored: should one raise, nothing has
        changed) and return the entries, all Rules now."""
        if self.unbuilt:
            build, chain = self.build, self.chain
            self.entries[:] = [
                entry if entry.__class__ is not tuple else build(chain, entry, position)
                for position, entry in enumerate(self.entries)
            ]
            self.unbuilt = 0
        return self.entries

    # ------------------------------------------------------------------ LazyRules

    def unbuilt_count(self) -> int:
        return self.unbuilt

    def built_at(self, position: int) -> Optional[Rule]:
        entry = self.entries[position]
        return None if entry.__class__ is tuple else entry

    def index_keys(self, position: int) -> dict:
        entry = self.entries[position]
        if entry.__class__ is not tuple:
            raise ValueError(f"position {position} is built: index its Rule")
        return unbuilt_exact_keys(entry)

    def may_name_loopback_port(self) -> bool:
        return self.ports and self.unbuilt > 0

    def unbuilt_may_carry(self, fields: frozenset[str]) -> bool:
        return self.unbuilt > 0 and not fields.isdisjoint(DEFERRED_FIELDS)

    def built_rules(self) -> list:
        return [entry for entry in self.entries if entry.__class__ is not tuple]

    # ------------------------------------------------------------------ the list a consumer sees

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):
        if index.__class__ is slice:
            return self.build_all()[index]
        entry = self.entries[index]
        if entry.__class__ is tuple:
            position = index if index >= 0 else index + len(self.entries)
            entry = self.entries[position] = self.build(self.chain, entry, position)
            self.unbuilt -= 1
        return entry

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.build_all())

    def __setitem__(self, index, value) -> None:
        self.build_all()[index] = value

    def __delitem__(self, index) -> None:
        del self.build_all()[index]

    def insert(self, index: int, value: Rule) -> None:
        self.entries.insert(index, value)

    def append(self, value: Rule) -> None:
        self.entries.append(value)

    def clear(self) -> None:
        self.entries.clear()
        self.unbuilt = 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyRules):
            other = list(other)
        if not isinstance(other, list):
            return NotImplemented
        return self.build_all() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self.build_all())

    def __reduce__(self) -> tuple:
        # pickled (or copied) as the plain list it reads as: the builder belongs to the reader
        return (list, (self.build_all(),))

"""Matches compiled into small three-valued predicates: ``pred(pkt) -> True | False | None``.

None means *unknown*: the model kept the match opaque, or the packet's value is a range
(the client's ephemeral port) that the rule splits. Compilation happens once per rule;
evaluation is a few comparisons, so that a 140,000-rule dump stays cheap.

Kernel facts these predicates follow (measured in a private namespace, see DOMAIN.md):
- A packet with no input interface (OUTPUT, POSTROUTING) has the empty name: `iifname != "eth0"`
  (nft) and `! -i eth0` (iptables, in a user chain called from OUTPUT) are both *true* there.
- A field the packet does not carry (an IPv4 address on an IPv6 packet in an inet table, a port
  on ICMP, tcp flags on UDP) makes the match false whatever its negation: nft's payload load
  breaks the rule before the comparison, and iptables only allows those matches with -p.
- The reverse-path tests pass for a packet that came in on lo: iptables' `-m rpfilter` on any
  hook (xt_rpfilter: rpfilter_is_loopback), nft's `fib ... oif` lookup on PREROUTING
  (nft_fib4_eval / nft_fib6_eval: nft_fib_is_loopback). Elsewhere they need routes: unknown.
- `-m recent` lists start empty: only a `--set` rule fills them (its match is true). Checking a
  list no rule fills is false; a filled one depends on past traffic: unknown.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Optional, Union

from ..model import Match, NamedSet
from .state import Pkt

TCP = 6
UDP = 17
PORT_PROTOS = frozenset((6, 17, 33, 132, 136))  # tcp udp dccp sctp udplite: carry ports

Pred = Callable[[Pkt], Optional[bool]]
# Before negation a predicate may also answer NA (the packet does not carry the field).
Answer = Union[bool, None, "_NotApplicable"]
RawPred = Callable[[Pkt], Answer]

# Field -> (packet attribute holding a (lo, hi) range, family it needs or None, needs ports)
RANGE_FIELDS: dict[str, tuple[str, Optional[str], bool]] = {
    "ip.saddr": ("saddr", "ip", False),
    "ip.daddr": ("daddr", "ip", False),
    "ip6.saddr": ("saddr", "ip6", False),
    "ip6.daddr": ("daddr", "ip6", False),
    "th.sport": ("sport", None, True),
    "th.dport": ("dport", None, True),
    "tcp.sport": ("sport", None, True),
    "tcp.dport": ("dport", None, True),
    "udp.sport": ("sport", None, True),
    "udp.dport": ("dport", None, True),
    "meta.l4proto": ("l4proto", None, False),
    "meta.mark": ("mark", None, False),
}
# protocol a tcp.*/udp.* field implies (th.* accepts any port-carrying protocol)
FIELD_PROTO = {"tcp.sport": TCP, "tcp.dport": TCP, "udp.sport": UDP, "udp.dport": UDP}

STRING_FIELDS = (
    "meta.iifname",
    "meta.oifname",
    "meta.iif",
    "meta.oif",
    "ct.state",
    "ct.status",
    "ct.direction",
    "meta.nfproto",
    "fib.saddr.type",
    "fib.daddr.type",
)


# --------------------------------------------------------------------------- range sets


def merge_ranges(values: Iterable[tuple[Any, Any]]) -> tuple[list[int], list[int]]:
    """Sorted, disjoint, merged (lo, hi) intervals as two parallel lists (los, his)."""
    items = sorted((int(lo), int(hi)) for lo, hi in values)
    los: list[int] = []
    his: list[int] = []
    for lo, hi in items:
        if his and lo <= his[-1] + 1:
            if hi > his[-1]:
                his[-1] = hi
        else:
            los.append(lo)
            his.append(hi)
    return los, his


def range_in(los: list[int], his: list[int], lo: int, hi: int) -> Optional[bool]:
    """Is every value of [lo, hi] in the merged set (True), none (False), or some (None)?"""
    i = bisect_right(los, lo) - 1
    if i >= 0 and his[i] >= hi:
        return True
    j = bisect_right(los, hi) - 1
    if j >= 0 and his[j] >= lo:
        return None
    return False


def range_item(item: tuple[int, int], lo: int, hi: int) -> Optional[bool]:
    """One (ilo, ihi) item against a packet range."""
    ilo, ihi = item
    if ilo <= lo and hi <= ihi:
        return True
    if ihi < lo or hi < ilo:
        return False
    return None


# --------------------------------------------------------------------------- interfaces


def iface_matches(pattern: str, name: str) -> bool:
    """`eth*` (nft) / `eth+` (iptables, normalised to `*` by the readers) is a prefix match."""
    if pattern.endswith("*") or pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def addr_type(family: str, addr: int) -> str:
    """The kernel's address type for fib/addrtype matches: all of 127/8 and ::1 are local."""
    if family == "ip":
        if addr >> 24 == 127:
            return "local"
        if addr == 0xFFFFFFFF:
            return "broadcast"
        if addr >> 28 == 0xE:
            return "multicast"
        return "unicast"
    if addr == 1:
        return "local"
    if addr >> 120 == 0xFF:
        return "multicast"
    return "unicast"


# --------------------------------------------------------------------------- per-field value access


def field_value(pkt: Pkt, field: str) -> Any:
    """The packet's value for ``field``: a (lo, hi) range for numeric fields, a string (or a
    frozenset for ct.status) otherwise. Returns ``NA`` when the packet does not carry the field,
    and ``None`` for a field the engine does not know."""
    spec = RANGE_FIELDS.get(field)
    if spec is not None:
        attr, fam, needs_ports = spec
        if fam is not None and pkt.family != fam:
            return NA
        if needs_ports:
            want = FIELD_PROTO.get(field)
            if pkt.l4proto[0] not in PORT_PROTOS or (want is not None and pkt.l4proto[0] != want):
                return NA
        return getattr(pkt, attr)
    if field in ("meta.iifname", "meta.iif"):
        return pkt.iif or ""
    if field in ("meta.oifname", "meta.oif"):
        return pkt.oif or ""
    if field == "ct.state":
        return pkt.ct_state
    if field == "ct.status":
        return pkt.ct_status
    if field == "ct.direction":
        return pkt.ct_direction if pkt.ct_direction is not None else NA
    if field == "meta.nfproto":
        return "ipv4" if pkt.family == "ip" else "ipv6"
    if field == "fib.saddr.type":
        return addr_type(pkt.family, pkt.saddr[0])
    if field == "fib.daddr.type":
        return addr_type(pkt.family, pkt.daddr[0])
    if field == "tcp.flags":
        return pkt.tcp_flags if pkt.l4proto[0] == TCP and pkt.tcp_flags is not None else NA
    from .fields import NUMERIC  # header fields of issue 11 (fields.py builds on this module)

    numeric = NUMERIC.get(field)
    if numeric is not None:
        family, get = numeric
        if family is not None and pkt.family != family:
            return NA
        value = get(pkt)
        return value if value is NA or value is None else (value, value)
    return None


class _NotApplicable(enum.Enum):
    """Marker: the packet lacks the field (the rule cannot match, negated or not). An enum of one
    member so that `r is NA` narrows a predicate's answer for mypy at no cost on the hot path."""

    NA = "NA"

    def __repr__(self) -> str:
        return "NA"

    def __str__(self) -> str:
        return "NA"


NA = _NotApplicable.NA


def item_matches(field: str, item: Any, value: Any) -> Optional[bool]:
    """One value item of ``field`` against the packet's value (not NA, not None)."""
    if field in RANGE_FIELDS or (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], int)
        and field not in ("ct.state", "tcp.flags")
    ):
        if isinstance(item, tuple):
            return range_item(item, value[0], value[1])
        return range_item((int(item), int(item)), value[0], value[1])
    if field in ("meta.iifname", "meta.oifname", "meta.iif", "meta.oif"):
        return iface_matches(str(item), value)
    if field == "ct.state":
        return _ct_state_item(str(item), value)
    if field == "ct.status":
        member: bool = str(item) in value
        return member
    if field == "tcp.flags":
        if isinstance(item, tuple):
            mask, comp = item
            hit: bool = (value & mask) == comp
            return hit
        same: bool = value == item
        return same
    found: bool = str(item) == value
    return found


def _ct_state_item(item: str, value: tuple[str, frozenset[str]]) -> bool:
    # iptables' --ctstate SNAT/DNAT are virtual states: the connection's NAT status bits.
    state, status = value
    if item in ("snat", "dnat"):
        return item in status
    return item == state


# --------------------------------------------------------------------------- compilation


def compile_match(
    match: Match, sets: Mapping[str, NamedSet], recent_lists: frozenset[str] = frozenset()
) -> tuple[Pred, str]:
    """Compile one model Match (with the table's named sets for lookups) into a predicate.

    ``recent_lists``: the `-m recent` list names some rule of the ruleset sets (only a `recent`
    match reads it). Returns (pred, text) where text names the match for `unknown` reports. A
    value of a shape the engine does not expect makes the match unknown, never an error."""
    try:
        return _compile(match, sets, recent_lists)
    except (TypeError, ValueError, IndexError, AttributeError):
        return _unknown_pred, match.text or _describe(match)


def _unknown_pred(pkt: Pkt) -> None:
    return None


def _compile(match: Match, sets: Mapping[str, NamedSet], recent_lists: frozenset[str]) -> tuple[Pred, str]:
    text = match.text or _describe(match)
    if match.opaque:
        return (lambda pkt: None), text
    values = match.values
    if not values and match.set_name:
        named = sets.get(match.set_name) if sets else None
        if named is None or not named.known:
            return (lambda pkt: None), text
        values = tuple(named.elements)
    field = match.field
    negate = match.negate
    if isinstance(field, tuple):
        return _compile_concat(field, values, negate), text
    if field == "ct.state":
        return _compile_ct_state(values, negate), text
    if field == "meta.mark" and match.mask is not None:
        return _compile_mark(values, match.mask, negate), text
    if field == "th.port":
        # multiport --ports: either port; a negated one holds only when neither does
        sport = _compile_range("th.sport", values, False)
        dport = _compile_range("th.dport", values, False)

        def either(pkt: Pkt) -> Optional[bool]:
            a = sport(pkt)
            if a is True:
                return True
            b = dport(pkt)
            if b is True:
                return True
            return None if (a is None or b is None) else False

        return _finish_either(either, negate, sport, pkt_field_absent=True), text
    spec = RANGE_FIELDS.get(field)
    if spec is not None:
        return _compile_range(field, values, negate), text
    if field in STRING_FIELDS or field == "tcp.flags":
        return _compile_items(field, values, negate), text
    if field == "rpfilter":
        return _compile_rpfilter(negate), text
    if field == "fib.rpf":
        return _compile_fib_rpf(values, negate), text
    if field == "recent":
        pred = _compile_recent(values, negate, recent_lists, match.text or "")
        if pred(None) is None:
            text = f"{text}: depends on the addresses earlier traffic put on the list"
        return pred, text
    from .fields import compile_field  # fields.py builds on this module's helpers

    compiled = compile_field(match, values, negate)
    if compiled is not None:
        return compiled
    return (lambda pkt: None), text


def _describe(match: Match) -> str:
    field = match.field if isinstance(match.field, str) else " . ".join(match.field)
    neg = "!= " if match.negate else ""
    return f"{field} {neg}{match.values!r}"[:120]


def apply_negation(pred: RawPred, negate: bool) -> Pred:
    """Apply negation; NA (field absent) becomes False either way."""
    if negate:

        def run(pkt: Pkt) -> Optional[bool]:
            r = pred(pkt)
            if r is NA:
                return False
            if r is None:
                return None
            return not r
    else:

        def run(pkt: Pkt) -> Optional[bool]:
            r = pred(pkt)
            return False if r is NA else r

    return run


def _finish_either(pred: Pred, negate: bool, probe: Pred, pkt_field_absent: bool) -> Pred:
    """Negation for th.port: a packet without ports never matches (probe says False for it)."""
    if not negate:
        return pred

    def run(pkt: Pkt) -> Optional[bool]:
        r = pred(pkt)
        if r is None:
            return None
        if r is False and probe(pkt) is False and field_value(pkt, "th.sport") is NA:
            return False
        return not r

    return run


def _compile_range(field: str, values: Iterable[Any], negate: bool) -> Pred:
    spec = RANGE_FIELDS[field]
    attr, fam, needs_ports = spec
    want = FIELD_PROTO.get(field)
    items = [v if isinstance(v, tuple) else (int(v), int(v)) for v in values]
    if len(items) <= 4:
        items_t = tuple((int(a), int(b)) for a, b in items)

        def look(lo: int, hi: int) -> Optional[bool]:
            result: Optional[bool] = False
            for ilo, ihi in items_t:
                if ilo <= lo and hi <= ihi:
                    return True
                if not (ihi < lo or hi < ilo):
                    result = None
            return result
    else:
        los, his = merge_ranges(items)

        def look(lo: int, hi: int) -> Optional[bool]:
            return range_in(los, his, lo, hi)

    def pred(pkt: Pkt) -> Answer:
        if fam is not None and pkt.family != fam:
            return NA
        if needs_ports:
            proto = pkt.l4proto[0]
            if proto not in PORT_PROTOS or (want is not None and proto != want):
                return NA
        lo, hi = getattr(pkt, attr)
        return look(lo, hi)

    return apply_negation(pred, negate)


def _compile_mark(values: Iterable[Any], mask: int, negate: bool) -> Pred:
    items = tuple(v if isinstance(v, tuple) else (int(v), int(v)) for v in values)

    def pred(pkt: Pkt) -> Optional[bool]:
        lo, hi = pkt.mark
        if lo != hi:
            return None  # a statement set it to a value lbfw cannot compute
        m = lo & mask
        return any(ilo <= m <= ihi for ilo, ihi in items)

    return apply_negation(pred, negate)


def _compile_ct_state(values: Iterable[Any], negate: bool) -> Pred:
    wanted = frozenset(str(v) for v in values)
    nat_bits = wanted & {"snat", "dnat"}

    def pred(pkt: Pkt) -> bool:
        if pkt.ct_state in wanted:
            return True
        return bool(nat_bits and nat_bits & pkt.ct_status)

    return apply_negation(pred, negate)


def _compile_items(field: str, values: Iterable[Any], negate: bool) -> Pred:
    items = tuple(values)
    if field in ("meta.iifname", "meta.iif", "meta.oifname", "meta.oif") and not any(
        str(v).endswith(("*", "+")) for v in items
    ):
        names = frozenset(str(v) for v in items)
        inbound = field in ("meta.iifname", "meta.iif")

        def by_name(pkt: Pkt) -> bool:
            return ((pkt.iif if inbound else pkt.oif) or "") in names

        return apply_negation(by_name, negate)

    def pred(pkt: Pkt) -> Answer:
        value = field_value(pkt, field)
        if value is NA or value is None:
            return value
        result: Optional[bool] = False
        for item in items:
            r = item_matches(field, item, value)
            if r:
                return True
            if r is None:
                result = None
        return result

    return apply_negation(pred, negate)


def _compile_rpfilter(negate: bool) -> Pred:
    """`-m rpfilter [--invert]`: true for a packet that came in on lo, whatever --loose,
    --validmark or --accept-local say; elsewhere it depends on routes lbfw does not know."""
    on_lo = not negate

    def pred(pkt: Pkt) -> Optional[bool]:
        return on_lo if pkt.iif == "lo" else None

    return pred


def _compile_fib_rpf(values: Sequence[Any], negate: bool) -> Pred:
    """nft `fib saddr [. mark] . iif oif missing|exists` (firewalld's and the nft wiki's
    reverse-path filter): the route exists on PREROUTING for a packet that came in on lo."""
    (wants_route,) = values
    if not isinstance(wants_route, bool):
        raise TypeError(f"fib.rpf value {wants_route!r}")
    on_lo = wants_route != negate

    def pred(pkt: Pkt) -> Optional[bool]:
        return on_lo if pkt.hook == "prerouting" and pkt.iif == "lo" else None

    return pred


# Options under which a look-up depends on more than "a --set rule put this source on the list"
_RECENT_UNFOLLOWED = ("--rdest", "--mask", "--hitcount", "--rttl", "--reap")
RecentKey = tuple[str, str, str, int]


def _compile_recent(
    values: Sequence[Any], negate: bool, recent_lists: frozenset[str], text: str = ""
) -> Callable[[Optional[Pkt]], Optional[bool]]:
    """`-m recent --name N --set|--rcheck|--update|--remove`: a set is true and puts the packet's
    source on the list for the rest of the exchange (in the run's state), a look-up finds what a set
    put there; otherwise a look-up of a list no rule sets is false, of a list some rule sets unknown
    (it depends on past traffic). Called with None, the predicate gives its answer for an empty run."""
    ((name, command),) = values
    followed = not any(option in text for option in _RECENT_UNFOLLOWED)
    if command not in ("set", "rcheck", "update", "remove"):
        raise ValueError(f"recent command {command!r}")
    result: Optional[bool] = (not negate) if command == "set" else (negate if name not in recent_lists else None)

    def key(pkt: Optional[Pkt]) -> Optional[RecentKey]:
        if pkt is None or not followed or pkt.counters is None or pkt.saddr[0] != pkt.saddr[1]:
            return None
        return ("recent", name, pkt.family, pkt.saddr[0])

    if command == "set":

        def pred(pkt: Optional[Pkt]) -> Optional[bool]:
            k = key(pkt)
            if k is not None:
                pkt.counters[k] = True  # type: ignore[union-attr,index]  # a key means pkt and its counters exist
            return result

        return pred

    def look_up(pkt: Optional[Pkt]) -> Optional[bool]:
        k = key(pkt)
        if k is not None and k in pkt.counters:  # type: ignore[union-attr,operator]  # as in pred above
            if command == "remove":
                del pkt.counters[k]  # type: ignore[union-attr]  # as in pred above
            return not negate
        return result

    return look_up


def _compile_concat(fields: Sequence[str], values: Iterable[Any], negate: bool) -> Pred:
    """nft concatenations: the packet matches when one element matches on every component."""
    fields = tuple(fields)
    elements = tuple(values)

    def pred(pkt: Pkt) -> Answer:
        pvals = []
        for f in fields:
            v: object = field_value(pkt, f) if f != "ct.state" else (pkt.ct_state, pkt.ct_status)
            if v is NA:
                return NA
            if v is None:
                return None
            pvals.append(v)
        return element_lookup(fields, elements, pvals)

    return apply_negation(pred, negate)


def element_lookup(fields: Sequence[str], elements: Iterable[Any], pvals: Sequence[Any]) -> Optional[bool]:
    """Three-valued: does some element (a tuple, one item per field) match the packet values?"""
    result: Optional[bool] = False
    for element in elements:
        r = element_matches(fields, element, pvals)
        if r:
            return True
        if r is None:
            result = None
    return result


def element_matches(fields: Sequence[str], element: Sequence[Any], pvals: Sequence[Any]) -> Optional[bool]:
    """Three-valued: does one element (one item per field) match the packet values?"""
    out: Optional[bool] = True
    for f, item, v in zip(fields, element, pvals):
        r: Optional[bool] = _ct_state_item(str(item), v) if f == "ct.state" else item_matches(f, item, v)
        if r is False:
            return False
        if r is None:
            out = None
    return out


def single_value(pkt: Pkt, field: str) -> Any:
    """The packet value of a single field as item_matches expects it (ct.state gets its pair)."""
    if field == "ct.state":
        return (pkt.ct_state, pkt.ct_status)
    return field_value(pkt, field)


__all__ = [
    "compile_match",
    "element_matches",
    "field_value",
    "single_value",
    "item_matches",
    "NA",
    "addr_type",
    "merge_ranges",
    "range_in",
    "iface_matches",
    "TCP",
    "UDP",
]

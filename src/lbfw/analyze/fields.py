"""Predicates for the header, socket and runtime fields of issue 11's contract (model.FIELDS).

The packet side is analyze/packet.py (what the kernel puts in each loopback packet); this module
compares a Match with it. Three-valued like matchers.py: True, False, None (unknown), and NA for a
field the packet does not carry (false whatever the negation: nft's load breaks the rule).

Decided with a caveat (the verdict is what a first connection meets; FlowResult.caveats says the
assumption in words): `limit`/`hashlimit` (under the rate), `quota` (under the quota), connlimit
(this connection is the only one), statistic nth / numgen inc (counters start at zero). Left
unknown with the runtime condition in words: time, cpu, random sampling, ipset contents, recent
lists filled by traffic, the server's user.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..model import Match
from .matchers import NA, Pred, apply_negation
from .packet import PAYLOAD_CAVEAT, SERVER_CAVEAT

ICMP, ICMPV6, TCP = 1, 58, 6
OUTBOUND = ("output", "postrouting")

TCP_OPTION_KINDS = {"eol": 0, "nop": 1, "noop": 1, "maxseg": 2, "mss": 2, "window": 3, "wscale": 3,
                    "sack-permitted": 4, "sack-perm": 4, "sack": 5, "timestamp": 8}

RUNTIME_WORDS = {
    # xt_time / nft meta hour|day|time compare the packet's timestamp with the clock
    "time": "depends on the time of day (the packet's timestamp against the clock)",
    "hour": "depends on the time of day (the packet's timestamp against the clock)",
    "day": "depends on the day of the week (the packet's timestamp against the calendar)",
    "cpu": "depends on which processor handles the packet (the CPU's number at run time)",
    "nfqueue": "depends on the program reading the queue",
    "ipset": "depends on the contents of the ipset, which the ruleset does not show",
    "recent": "depends on the addresses traffic has put on the recent list",
    "random": "depends on random sampling",
}


def _dev_group(dev):
    if dev is None:
        return NA
    return 0 if dev == "lo" else None


def _note(pkt, caveat: str) -> None:
    caveats = pkt.caveats
    if caveats is not None and caveat not in caveats:
        caveats.append(caveat)


def _length(pkt):
    if pkt.length is not None:
        return pkt.length
    if pkt.length_range is None:
        return None
    _note(pkt, PAYLOAD_CAVEAT)
    return pkt.length_range         # a range: decided when the rule's ranges hold all of it or none


def _ip6_payload(pkt):
    value = _length(pkt)
    if value is None:
        return None
    if isinstance(value, tuple):
        return (value[0] - 40, value[1] - 40)
    return value - 40


def _mss(pkt):
    if pkt.l4proto[0] != TCP or pkt.tcp_flags is None:
        return NA
    return NA if pkt.mss is None else pkt.mss


def _ctmark(pkt):
    conn = pkt.conn
    if conn is None or not pkt.attached or pkt.untracked or pkt.ct_state == "invalid":
        return NA
    lo, hi = conn.mark
    return lo if lo == hi else None


def _owner(attr: str):
    def get(pkt):
        if pkt.hook in OUTBOUND:                # every packet of a flow has a socket there
            if pkt.client_side:
                return getattr(pkt, attr)
            server = pkt.server() if pkt.server is not None else None
            if server is None:
                return None
            _note(pkt, SERVER_CAVEAT)
            return getattr(server, attr)
        if pkt.ct_state == "new":
            return NA                           # no socket is attached to a new inbound packet
        return None                             # early demux may attach the receiving socket
    return get


def _icmp(proto: int, family: str):
    def get(pkt):
        if pkt.family != family or pkt.l4proto[0] != proto:
            return NA
        return None                             # a walk_packet ICMP probe carries no type
    return get


# field -> (family it needs or None, value getter: int | NA | None)
NUMERIC: dict = {
    "ip.ttl": ("ip", lambda pkt: pkt.ttl),
    "ip6.hoplimit": ("ip6", lambda pkt: pkt.ttl),
    "ip.length": (None, _length),           # ip6tables -m length: the kernel adds the 40-byte header
    "ip6.length": ("ip6", _ip6_payload),
    "meta.length": (None, _length),
    "ip.dscp": ("ip", lambda pkt: 0),
    "ip.ecn": ("ip", lambda pkt: 0),
    "ip.tos": (None, lambda pkt: 0),        # ip6tables -m tos: the traffic class
    "ip6.dscp": ("ip6", lambda pkt: 0),
    "ip6.ecn": ("ip6", lambda pkt: 0),
    "meta.iifgroup": (None, lambda pkt: _dev_group(pkt.iif)),
    "meta.oifgroup": (None, lambda pkt: _dev_group(pkt.oif)),
    "tcp.option.mss": (None, _mss),
    "ct.mark": (None, _ctmark),
    "meta.skuid": (None, _owner("uid")),
    "meta.skgid": (None, _owner("gid")),
    "icmp.type": (None, _icmp(ICMP, "ip")),
    "icmp.code": (None, _icmp(ICMP, "ip")),
    "icmpv6.type": (None, _icmp(ICMPV6, "ip6")),
    "icmpv6.code": (None, _icmp(ICMPV6, "ip6")),
}
OWNER_FIELDS = frozenset(("meta.skuid", "meta.skgid", "meta.socket"))
CAVEAT_FIELDS = frozenset(("limit", "quota", "connlimit", "statistic.nth"))


def compile_field(match: Match, values, negate: bool) -> Optional[tuple]:
    """(pred, text) for a field of this module, or None when ``match.field`` is not one."""
    field = match.field
    text = match.text or field
    spec = NUMERIC.get(field)
    if spec is not None:
        return _numeric(spec, values, match.mask, negate), text
    build = _WORDS.get(field)
    if build is None:
        return None
    return build(values, negate, text)


def _numeric(spec, values, mask, negate: bool) -> Pred:
    family, get = spec
    items = tuple(v if isinstance(v, tuple) else (int(v), int(v)) for v in values)
    if not items:
        raise ValueError("no values")

    def pred(pkt):
        if family is not None and pkt.family != family:
            return NA
        value = get(pkt)
        if value is NA or value is None:
            return value
        if isinstance(value, tuple):            # a range of values the packet may carry
            if mask is not None:
                return None
            low, high = value
            if any(lo <= low and high <= hi for lo, hi in items):
                return True
            if all(high < lo or hi < low for lo, hi in items):
                return False
            return None
        if mask is not None:
            value &= mask
        return any(lo <= value <= hi for lo, hi in items)
    return apply_negation(pred, negate)


def _constant(result) -> Callable:
    def build(values, negate, text):
        return apply_negation(lambda pkt: result, negate), text
    return build


def _pkttype(values, negate, text):
    # locally generated unicast: PACKET_HOST on output, and eth_type_trans on lo says host too
    hit = "host" in {str(v).lower() for v in values}
    return apply_negation(lambda pkt: hit, negate), text


def _iftype(inbound: bool):
    def build(values, negate, text):
        wanted = frozenset(str(v).lower() for v in values)

        def pred(pkt):
            dev = pkt.iif if inbound else pkt.oif
            if dev is None:
                return NA
            return "loopback" in wanted if dev == "lo" else None
        return apply_negation(pred, negate), text
    return build


def _helper(values, negate, text):
    def pred(pkt):
        if pkt.conn is None or not pkt.attached or pkt.untracked or pkt.ct_state == "invalid":
            return NA
        return False                              # loopback flows get no helper assigned
    return apply_negation(pred, negate), text


def _fragment(values, negate, text):
    def pred(pkt):
        return NA if pkt.family != "ip" else False   # loopback TCP/UDP sets DF: never a fragment
    return apply_negation(pred, negate), text


def _socket(values, negate, text):
    def pred(pkt):
        if pkt.hook in OUTBOUND:
            return True
        return NA if pkt.ct_state == "new" else None
    return apply_negation(pred, negate), text


def _tcp_option(values, negate, text):
    kinds = frozenset(TCP_OPTION_KINDS[v] if isinstance(v, str) else int(v) for v in values)

    def pred(pkt):
        if pkt.l4proto[0] != TCP or pkt.tcp_flags is None:
            return NA
        return bool(kinds & pkt.tcp_options)
    return apply_negation(pred, negate), text


def _connlimit(values, negate, text):
    ((kind, limit),) = values
    limit = int(limit)
    # a first connection: conntrack counts this one only
    hit = 1 > limit if kind == "above" else 1 <= limit
    if kind not in ("above", "upto"):
        raise ValueError(f"connlimit {kind!r}")
    caveat = f"{text}: assumes no other connection of this client is open"
    return _with_caveat(hit, negate, caveat), text


def _limit(values, negate, text):
    # the reader says "over the rate" (nft `limit rate over`, --hashlimit-above) with negate
    ((kind, _written),) = values
    caveat = f"{text}: assumes the rate stays under the limit (a first connection does)"
    return _with_caveat(True, negate, caveat), text


def _quota(values, negate, text):
    ((kind, size),) = values
    over = kind == "over"
    caveat = f"{text}: assumes the quota is not used up yet"
    size = int(size)

    def pred(pkt):
        if pkt.caveats is not None and caveat not in pkt.caveats:
            pkt.caveats.append(caveat)
        under = pkt.length is None or pkt.length <= size
        return (not under) if over else under
    return apply_negation(pred, negate), text


def _with_caveat(hit: bool, negate: bool, caveat: str) -> Pred:
    result = hit != negate

    def pred(pkt):
        caveats = pkt.caveats
        if caveats is not None and caveat not in caveats:
            caveats.append(caveat)
        return result
    return pred


def _nth(values, negate, text):
    ((every, packet),) = values
    every, packet = int(every), int(packet)
    if every < 1:
        raise ValueError("statistic every < 1")
    key = object()          # one counter per rule: compile_rule does not share this predicate
    caveat = f"{text}: assumes the rule's packet counter starts at zero (a ruleset just loaded)"

    def pred(pkt):
        counters = pkt.counters
        if counters is None:
            return None
        seen = counters.get(key, 0)
        counters[key] = seen + 1
        if pkt.caveats is not None and caveat not in pkt.caveats:
            pkt.caveats.append(caveat)
        # xt_statistic and nft numgen inc: the k-th packet (from 0) matches when k % every == packet
        return seen % every == packet
    return apply_negation(pred, negate), text


def _runtime(kind_of: Optional[str]):
    def build(values, negate, text):
        if kind_of is not None:
            kind = kind_of
        else:
            ((kind, _written),) = values
        words = RUNTIME_WORDS.get(str(kind), f"depends on {kind} at run time")
        return (lambda pkt: None), f"{text}: {words}"
    return build


_WORDS: dict = {
    "meta.pkttype": _pkttype,
    "meta.iiftype": _iftype(True),
    "meta.oiftype": _iftype(False),
    "ct.helper": _helper,
    "physdev": _constant(False),       # xt_physdev on an unbridged packet: a positive option fails
    "ip.fragment": _fragment,
    "ip.morefragments": _fragment,
    "meta.socket": _socket,
    "tcp.option": _tcp_option,
    "connlimit": _connlimit,
    "limit": _limit,
    "quota": _quota,
    "statistic.nth": _nth,
    "statistic.random": _runtime("random"),
    "runtime": _runtime(None),
}

UNSHARED_FIELDS = frozenset(("statistic.nth",))   # per-rule state: never served from the match cache

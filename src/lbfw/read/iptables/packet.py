"""Header-field and per-option module matches -> Matches with the model's fields (icmp types,
ttl / hop limit, length, dscp / ecn / tos, pkttype, devgroup, helper, tcpmss, tcp options,
physdev). Pure; a value iptables-restore rejects raises ``_Bad``."""

from __future__ import annotations

from collections.abc import Callable

from ...model import Match
from .values import _Bad, _strtoui, _value_mask

# `iptables -p icmp -h` / `ip6tables -p icmpv6 -h` names -> (type, lowest code, highest code), as
# iptables-save 1.8.9 prints them back (measured: tests/data/iptables_fields.json)
ICMP_TYPES = {
    "echo-reply": (0, 0, 255),
    "pong": (0, 0, 255),
    "destination-unreachable": (3, 0, 255),
    "network-unreachable": (3, 0, 0),
    "host-unreachable": (3, 1, 1),
    "protocol-unreachable": (3, 2, 2),
    "port-unreachable": (3, 3, 3),
    "fragmentation-needed": (3, 4, 4),
    "source-route-failed": (3, 5, 5),
    "network-unknown": (3, 6, 6),
    "host-unknown": (3, 7, 7),
    "network-prohibited": (3, 9, 9),
    "host-prohibited": (3, 10, 10),
    "tos-network-unreachable": (3, 11, 11),
    "tos-host-unreachable": (3, 12, 12),
    "communication-prohibited": (3, 13, 13),
    "host-precedence-violation": (3, 14, 14),
    "precedence-cutoff": (3, 15, 15),
    "source-quench": (4, 0, 255),
    "redirect": (5, 0, 255),
    "network-redirect": (5, 0, 0),
    "host-redirect": (5, 1, 1),
    "tos-network-redirect": (5, 2, 2),
    "tos-host-redirect": (5, 3, 3),
    "echo-request": (8, 0, 255),
    "ping": (8, 0, 255),
    "router-advertisement": (9, 0, 255),
    "router-solicitation": (10, 0, 255),
    "time-exceeded": (11, 0, 255),
    "ttl-exceeded": (11, 0, 255),
    "ttl-zero-during-transit": (11, 0, 0),
    "ttl-zero-during-reassembly": (11, 1, 1),
    "parameter-problem": (12, 0, 255),
    "ip-header-bad": (12, 0, 0),
    "required-option-missing": (12, 1, 1),
    "timestamp-request": (13, 0, 255),
    "timestamp-reply": (14, 0, 255),
    "address-mask-request": (17, 0, 255),
    "address-mask-reply": (18, 0, 255),
}
ICMP6_TYPES = {
    "destination-unreachable": (1, 0, 255),
    "no-route": (1, 0, 0),
    "communication-prohibited": (1, 1, 1),
    "beyond-scope": (1, 2, 2),
    "address-unreachable": (1, 3, 3),
    "port-unreachable": (1, 4, 4),
    "failed-policy": (1, 5, 5),
    "reject-route": (1, 6, 6),
    "packet-too-big": (2, 0, 255),
    "time-exceeded": (3, 0, 255),
    "ttl-exceeded": (3, 0, 255),
    "ttl-zero-during-transit": (3, 0, 0),
    "ttl-zero-during-reassembly": (3, 1, 1),
    "parameter-problem": (4, 0, 255),
    "bad-header": (4, 0, 0),
    "unknown-header-type": (4, 1, 1),
    "unknown-option": (4, 2, 2),
    "echo-request": (128, 0, 255),
    "ping": (128, 0, 255),
    "echo-reply": (129, 0, 255),
    "pong": (129, 0, 255),
    "router-solicitation": (133, 0, 255),
    "router-advertisement": (134, 0, 255),
    "neighbour-solicitation": (135, 0, 255),
    "neighbor-solicitation": (135, 0, 255),
    "neighbour-advertisement": (136, 0, 255),
    "neighbor-advertisement": (136, 0, 255),
    "redirect": (137, 0, 255),
}
# -m dscp --dscp-class (libxt_dscp's class table)
DSCP_CLASSES = {
    "cs0": 0,
    "cs1": 8,
    "cs2": 16,
    "cs3": 24,
    "cs4": 32,
    "cs5": 40,
    "cs6": 48,
    "cs7": 56,
    "af11": 10,
    "af12": 12,
    "af13": 14,
    "af21": 18,
    "af22": 20,
    "af23": 22,
    "af31": 26,
    "af32": 28,
    "af33": 30,
    "af41": 34,
    "af42": 36,
    "af43": 38,
    "ef": 46,
    "be": 0,
}
# -m tos symbolic values: (value, mask) as iptables-save prints them back (0x10/0x3f)
TOS_NAMES = {
    "minimize-delay": 0x10,
    "maximize-throughput": 0x08,
    "maximize-reliability": 0x04,
    "minimize-cost": 0x02,
    "normal-service": 0x00,
}
# -m pkttype words -> the model's meta.pkttype words (nft's names); iptables saves host as unicast
PKTTYPES = {
    "unicast": "host",
    "host": "host",
    "broadcast": "broadcast",
    "multicast": "multicast",
    "otherhost": "other",
    "outgoing": "outgoing",
    "loopback": "loopback",
}
_ECN_TCP = {"--ecn-tcp-cwr": 0x80, "--ecn-tcp-ece": 0x40}


def _icmp(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    """`--icmp-type T[/C]` / `--icmpv6-type`: icmp.type and, for one code, icmp.code (negated with
    a code: one concatenation, since `!` negates type and code together). `any`: no match."""
    prefix = "icmpv6" if opt == "--icmpv6-type" else "icmp"
    lowered = value.lower()
    if lowered == "any" and prefix == "icmp":
        return (Match(field="icmp.type", values=((0, 255),), negate=True, text=text),) if neg else ()
    names = ICMP6_TYPES if prefix == "icmpv6" else ICMP_TYPES
    if lowered in names:
        icmp_type, lo, hi = names[lowered]
    else:
        type_text, slash, code_text = lowered.partition("/")
        try:
            icmp_type = _strtoui(type_text, 255)
            lo = hi = _strtoui(code_text, 255) if slash else -1
        except ValueError:
            raise _Bad(f"{opt}: unknown ICMP type {value!r}") from None
        if not slash:
            if icmp_type == 255 and prefix == "icmp":  # iptables saves type 255 as `any`
                return _icmp(opt, "any", neg, text, family)
            lo, hi = 0, 255
    types = ((icmp_type, icmp_type),)
    if (lo, hi) == (0, 255):
        return (Match(field=f"{prefix}.type", values=types, negate=neg, text=text),)
    if neg:
        return (
            Match(
                field=(f"{prefix}.type", f"{prefix}.code"),
                values=(((icmp_type, icmp_type), (lo, hi)),),
                negate=True,
                text=text,
            ),
        )
    return (
        Match(field=f"{prefix}.type", values=types, text=text),
        Match(field=f"{prefix}.code", values=((lo, hi),), text=text),
    )


def _hop(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    """-m ttl --ttl-eq/lt/gt, -m hl --hl-eq/lt/gt -> ip.ttl / ip6.hoplimit ranges."""
    try:
        n = _strtoui(value, 255)
    except ValueError:
        raise _Bad(f"{opt}: {value!r} is not a number 0-255") from None
    how = opt.rpartition("-")[2]
    ranges = (
        ((n, n),)
        if how == "eq"
        else (((0, n - 1),) if n > 0 else ())
        if how == "lt"
        else (((n + 1, 255),) if n < 255 else ())
    )
    return (Match(field="ip.ttl" if opt.startswith("--ttl") else "ip6.hoplimit", values=ranges, negate=neg, text=text),)


def _length(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    """-m length --length A[:B]: the layer-3 length (the kernel adds the 40-byte header for IPv6)."""
    lo_text, colon, hi_text = value.partition(":")
    try:
        lo = _strtoui(lo_text, 0xFFFF) if lo_text else 0
        hi = (_strtoui(hi_text, 0xFFFF) if hi_text else 0xFFFF) if colon else lo
    except ValueError:
        raise _Bad(f"{opt}: bad length {value!r}") from None
    return (Match(field="ip.length", values=((lo, hi),), negate=neg, text=text),)


def _dscp(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    prefix = "ip6" if family == "ip6" else "ip"
    if opt == "--dscp-class":
        n = DSCP_CLASSES.get(value.lower())
        if n is None:
            raise _Bad(f"{opt}: unknown DSCP class {value!r}")
    else:
        try:
            n = _strtoui(value, 63)
        except ValueError:
            raise _Bad(f"{opt}: {value!r} is not a DSCP value 0-63") from None
    return (Match(field=f"{prefix}.dscp", values=((n, n),), negate=neg, text=text),)


def _ecn(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    """--ecn-ip-ect N -> ip.ecn; --ecn-tcp-cwr / --ecn-tcp-ece are TCP flags."""
    if opt in _ECN_TCP:
        bit = _ECN_TCP[opt]
        return (Match(field="tcp.flags", values=((bit, bit),), negate=neg, text=text.rstrip()),)
    try:
        n = _strtoui(value, 3)
    except ValueError:
        raise _Bad(f"{opt}: {value!r} is not an ECN value 0-3") from None
    return (Match(field=f"{'ip6' if family == 'ip6' else 'ip'}.ecn", values=((n, n),), negate=neg, text=text),)


def _tos(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    """--tos V[/M] or a name (mask 0x3f) -> ip.tos with Match.mask (the traffic class in IPv6)."""
    named = TOS_NAMES.get(value.lower())
    if named is not None:
        tos, mask = named, 0x3F
    else:
        try:
            tos, mask = _value_mask(value, 0xFF)
            if tos > 0xFF or mask > 0xFF:
                raise ValueError(value)
        except ValueError:
            raise _Bad(f"{opt}: bad TOS value {value!r}") from None
    return (
        Match(
            field="ip.tos",
            values=((tos & mask, tos & mask),),
            mask=None if mask == 0xFF else mask,
            negate=neg,
            text=text,
        ),
    )


def _pkttype(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    word = PKTTYPES.get(value.lower())
    if word is None:
        raise _Bad(f"{opt}: unknown packet type {value!r}")
    return (Match(field="meta.pkttype", values=(word,), negate=neg, text=text),)


def _devgroup(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    field = "meta.iifgroup" if opt == "--src-group" else "meta.oifgroup"
    try:
        group, mask = _value_mask(value)
    except ValueError:
        # a name from /etc/iproute2/group, resolved where the rule was loaded
        return (Match(field=field, negate=neg, text=text, opaque=True),)
    return (
        Match(
            field=field,
            values=((group & mask, group & mask),),
            mask=None if mask == 0xFFFFFFFF else mask,
            negate=neg,
            text=text,
        ),
    )


def _helper(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    return (Match(field="ct.helper", values=(value,), negate=neg, text=text),)


def _mss(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    lo_text, colon, hi_text = value.partition(":")
    try:
        lo = _strtoui(lo_text, 0xFFFF) if lo_text else 0
        hi = (_strtoui(hi_text, 0xFFFF) if hi_text else 0xFFFF) if colon else lo
    except ValueError:
        raise _Bad(f"{opt}: bad MSS {value!r}") from None
    return (Match(field="tcp.option.mss", values=((lo, hi),), negate=neg, text=text),)


def _tcp_option(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    try:
        kind = _strtoui(value, 255)
    except ValueError:
        raise _Bad(f"{opt}: {value!r} is not a TCP option number") from None
    return (Match(field="tcp.option", values=(kind,), negate=neg, text=text),)


def _physdev(opt: str, value: str, neg: bool, text: str, family: str) -> tuple:
    return (Match(field="physdev", values=((opt, value or None),), negate=neg, text=text.rstrip()),)


# kind (options.MODULE_OPTIONS) -> builder(opt, value, negate, text, family) -> tuple of Matches
PACKET_KINDS: dict[str, Callable[[str, str, bool, str, str], tuple]] = {
    "icmptype": _icmp,
    "hop": _hop,
    "length": _length,
    "dscp": _dscp,
    "ecn": _ecn,
    "tos": _tos,
    "pkttype": _pkttype,
    "devgroup": _devgroup,
    "helper": _helper,
    "mss": _mss,
    "tcpoption": _tcp_option,
    "physdev": _physdev,
}

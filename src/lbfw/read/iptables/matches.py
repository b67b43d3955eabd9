"""Option values -> Matches: what each option the reader understands means in the model."""

from __future__ import annotations

import socket
from socket import AF_INET as _AF_INET
from socket import inet_pton as _pton
from typing import Optional

from ...model import Match
from .fast import _ANY, _match
from .options import CT_STATES, CT_STATUS, PROTOCOLS
from .packet import PACKET_KINDS
from .state import ParserState
from .values import (
    _CACHE_LIMIT,
    _HOSTNAME_RE,
    _Bad,
    _ip4,
    _ip6,
    _net,
    _port_range,
    _strtoui,
    _tcp_flags,
    _value_mask,
)

_from_bytes = int.from_bytes


class MatchBuilder(ParserState):
    """The parser's match half (a mixin of ``_Parser``): reads ``family``, ``saddr``, ``daddr``,
    ``family_word``, ``full`` and ``addrs`` (``ParserState``)."""

    def build_match(self, kind: str, opt: str, value: str, neg: bool, proto: Optional[str]) -> tuple:
        """Build the Match(es) for one option; raises _Bad for values iptables rejects."""
        text = f"! {opt} {value}" if neg else f"{opt} {value}"
        if kind == "saddr" or kind == "daddr":
            m = self.addr_match(self.saddr if kind == "saddr" else self.daddr, opt, value, neg, text)
            if not neg and len(m.values) == 1 and m.values[0] == (0, self.full):
                return ()  # every address: the kernel keeps no match
            return (m,)
        if kind == "iif" or kind == "oif":
            if not value or len(value) > 15:
                raise _Bad(f"{opt}: bad interface name {value!r}")
            name = value[:-1] + "*" if value.endswith("+") else value
            return (
                Match(field="meta.iifname" if kind == "iif" else "meta.oifname", values=(name,), negate=neg, text=text),
            )
        if kind == "proto":
            lowered = value.lower()
            if lowered in ("all", "0"):
                if neg:
                    return (Match(field="meta.l4proto", values=((0, 255),), negate=True, text=text),)
                return ()
            if lowered[:1].isdigit():
                try:
                    number = _strtoui(lowered, 255)
                except ValueError:
                    raise _Bad(f"{opt}: unknown protocol {value!r}") from None
            elif lowered in PROTOCOLS:
                number = PROTOCOLS[lowered]
            else:
                try:
                    number = socket.getprotobyname(lowered)
                except OSError:
                    raise _Bad(f"{opt}: unknown protocol {value!r}") from None
            return (Match(field="meta.l4proto", values=((number, number),), negate=neg, text=text),)
        if kind == "port" or kind == "ports":
            field = {
                "--sport": "th.sport",
                "--source-port": "th.sport",
                "--dport": "th.dport",
                "--destination-port": "th.dport",
                "--sports": "th.sport",
                "--source-ports": "th.sport",
                "--dports": "th.dport",
                "--destination-ports": "th.dport",
                "--ports": "th.port",
            }[opt]
            items = value.split(",") if kind == "ports" else (value,)
            try:
                # how numbers and service names read depends on the match (see _port)
                if kind == "port" and proto == "udp":
                    service_proto = None
                else:
                    service_proto = proto if proto in ("tcp", "udp", "sctp", "dccp", "udplite") else "tcp"
                ranges = tuple(_port_range(item, service_proto) for item in items)
            except ValueError as err:
                raise _Bad(f"{opt}: bad port {err.args[0]!r}") from None
            return (Match(field=field, values=ranges, negate=neg, text=text),)
        if kind == "syn":
            return (Match(field="tcp.flags", values=((0x17, 0x02),), negate=neg, text=text.rstrip()),)
        if kind == "tcpflags":
            mask_text, _, comp_text = value.partition(" ")
            try:
                mask, comp = _tcp_flags(mask_text), _tcp_flags(comp_text)
            except ValueError as err:
                raise _Bad(f"{opt}: unknown TCP flag {err.args[0]!r}") from None
            return (Match(field="tcp.flags", values=((mask, comp),), negate=neg, text=text),)
        if kind == "state":
            states = []
            status = []
            for word in value.upper().split(","):
                if word in CT_STATES:
                    states.append(CT_STATES[word])
                elif word in ("SNAT", "DNAT") and opt == "--ctstate":
                    status.append(CT_STATUS[word])
                else:
                    raise _Bad(f"{opt}: unknown state {word!r}")
            if states and status:
                if not neg:
                    # state in X OR status in Y: no conjunction of matches says that
                    return (Match(field="ct.state", negate=neg, text=text, opaque=True),)
                # not (A or B) == not A and not B
                return (
                    Match(field="ct.state", values=tuple(states), negate=True, text=text),
                    Match(field="ct.status", values=tuple(status), negate=True, text=text),
                )
            if status:
                return (Match(field="ct.status", values=tuple(status), negate=neg, text=text),)
            return (Match(field="ct.state", values=tuple(states), negate=neg, text=text),)
        if kind == "ctstatus":
            words = value.upper().split(",")
            if all(w in CT_STATUS for w in words):
                return (Match(field="ct.status", values=tuple(CT_STATUS[w] for w in words), negate=neg, text=text),)
            return (Match(field="ct.status", negate=neg, text=text, opaque=True),)
        if kind == "ctdir":
            word = value.upper()
            if word not in ("ORIGINAL", "REPLY"):
                raise _Bad(f"{opt}: expected ORIGINAL or REPLY, not {value!r}")
            return (Match(field="ct.direction", values=(word.lower(),), negate=neg, text=text),)
        if kind == "srctype" or kind == "dsttype":
            field = "fib.saddr.type" if kind == "srctype" else "fib.daddr.type"
            return (Match(field=field, values=tuple(w.lower() for w in value.split(",")), negate=neg, text=text),)
        if kind == "limitiface":
            return (Match(field="addrtype.limit-iface", text=text, opaque=True),)
        if kind == "range":
            field = self.saddr if opt == "--src-range" else self.daddr
            lo_text, dash, hi_text = value.partition("-")
            try:
                parse = _ip6 if self.family == "ip6" else _ip4
                lo = parse(lo_text)
                hi = parse(hi_text) if dash else lo
            except ValueError:
                raise _Bad(f"{opt}: {value!r} is not {self.family_word} address range") from None
            if lo > hi:
                return (Match(field=field, negate=neg, text=text, opaque=True),)
            return (Match(field=field, values=((lo, hi),), negate=neg, text=text),)
        if kind == "mark" or kind == "ctmark":
            try:
                mark, mask = _value_mask(value)
            except ValueError:
                raise _Bad(f"{opt}: bad mark {value!r}") from None
            field = "meta.mark" if kind == "mark" else "ct.mark"
            return (
                Match(
                    field=field,
                    values=((mark & mask, mark & mask),),
                    mask=None if mask == 0xFFFFFFFF else mask,
                    negate=neg,
                    text=text,
                ),
            )
        if kind == "matchset":
            name, _, dirs = value.partition(" ")
            dir_list = dirs.split(",")
            fields = tuple(self.saddr if d == "src" else self.daddr for d in dir_list)
            return (
                Match(
                    field=fields[0] if len(fields) == 1 else fields, negate=neg, text=text, set_name=name, opaque=True
                ),
            )
        packet = PACKET_KINDS.get(kind)
        if packet is not None:
            return packet(opt, value, neg, text, self.family)
        # everything else: kept, undecided
        module_text = opt.lstrip("-")
        return (Match(field=f"opt.{module_text}", negate=neg, text=text.rstrip(), opaque=True),)

    def cached_address(self, opt: str, value: str, neg: bool):
        """``address``, looked up first in ``self.addrs`` (blocklists repeat addresses less
        than their tails, but dumps still name the same ones again and again)."""
        cache = self.addrs[(opt, neg)]
        m = cache.get(value)
        if m is None:
            m = self.address(opt, value, neg)
            if len(cache) < _CACHE_LIMIT:
                cache[value] = m
        return m

    def address(self, opt: str, value: str, neg: bool):
        """The Match for `-s VALUE` / `-d VALUE` (the hot path; errors as InputError), or _ANY
        for a match of every address (`-s 0.0.0.0/0`), which the kernel drops as well."""
        field = self.saddr if opt == "-s" else self.daddr
        text = f"! {opt} {value}" if neg else f"{opt} {value}"
        if self.family == "ip" and "," not in value:
            addr_text, slash, mask_text = value.partition("/")
            if not slash or mask_text == "32":
                try:
                    a = _from_bytes(_pton(_AF_INET, addr_text), "big")
                except OSError:
                    pass  # not plain dotted-quad: the careful path says why
                else:
                    return _match(field, ((a, a),), neg, text)
        if value[:1] == "-":
            raise self.bad(f"{opt} needs an argument")
        try:
            m = self.addr_match(field, opt, value, neg, text)
            if not neg and len(m.values) == 1 and m.values[0] == (0, self.full):
                return _ANY
            return m
        except _Bad as err:
            raise self.bad(err) from None

    def addr_match(self, field: str, opt: str, value: str, neg: bool, text: str) -> Match:
        items = value.split(",")
        if len(items) > 1 and neg:
            raise _Bad(f"{opt}: '!' is not allowed with more than one address")
        ranges = []
        for item in items:
            try:
                rng = _net(item, self.family)
            except ValueError:
                address = item.partition("/")[0]
                if _HOSTNAME_RE.match(address) and not address.replace(".", "").isdigit():
                    # iptables resolves names when the rule is loaded; lbfw does not guess
                    return Match(field=field, negate=neg, text=text, opaque=True)
                hint = None
                if self.family == "ip" and ":" in address:
                    hint = "IPv6 in an iptables file: is it an ip6tables-save dump? (--input-format ip6tables-save)"
                elif self.family == "ip6" and address.count(".") == 3 and ":" not in address:
                    hint = "IPv4 in an ip6tables file: is it an iptables-save dump? (--input-format iptables-save)"
                raise _Bad(f"{opt}: {item!r} is not {self.family_word} address", hint) from None
            if rng is None:
                return Match(field=field, negate=neg, text=text, opaque=True)
            ranges.append(rng)
        return Match(field=field, values=tuple(ranges), negate=neg, text=text)

"""Reader for iptables-save / ip6tables-save text (files and the live `*-save` output).

Every iptables version's spelling is accepted: `! -s X` and the old `-s ! X`, dotted netmasks
(`/255.255.255.0`), bare addresses, host bits (`127.0.0.1/8` is 127.0.0.0/8 to the kernel),
`[pkts:bytes]` and `-c p b` counters, quoted comments with escaped quotes, trailing spaces.

Speed matters (real dumps reach 140,000 rules): a line is split with plain ``str.split``, and
only a line holding a ``"`` goes through the quote-aware splitter. Model objects are
immutable, so they are shared: each distinct address is parsed once, and the rest of a rule
after its leading `-s`/`-d` (what repeats in big dumps: `-j DROP` after a new address) is
parsed once per distinct text; inside that, each (module context, option, value) once.

Anything the model cannot express becomes an opaque ``Match`` with its text, and any target
lbfw does not know becomes ``Action("unknown")``: never an error, never dropped. Errors are
reserved for what iptables-restore itself would reject (see ``parse``).
"""

from __future__ import annotations

import gc
import ipaddress
from functools import partial
from dataclasses import fields as _dc_fields
import re
import socket
from socket import AF_INET as _AF_INET, inet_pton as _pton
from typing import Optional

from ..errors import InputError
from ..suppression import ignored_ids
from ..model import (
    NON_ENDING_TARGETS,
    _CHAIN_RULES,
    BACKEND_FILE,
    IPTABLES_CHAIN_TYPE,
    IPTABLES_HOOK_OF_CHAIN,
    IPTABLES_PRIORITY,
    SYNTAX_IPTABLES,
    Action,
    Chain,
    Match,
    Origin,
    Rule,
    Table,
)

__all__ = ["parse", "split_quoted", "BUILTIN_CHAINS"]

# The built-in chains each table has (iptables-restore rejects a policy on anything else).
BUILTIN_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

PROTOCOLS = {
    "all": 0, "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6": 41,
    "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "icmp6": 58,
    "ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132, "mh": 135, "ipv6-mh": 135,
    "udplite": 136, "dccp": 33,
}
# The match module a protocol loads implicitly (`-p tcp --dport 22` needs no `-m tcp`).
PROTO_MODULE = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "udplite": "udplite", "dccp": "dccp",
                "icmp": "icmp", "icmpv6": "icmp6", "ipv6-icmp": "icmp6", "icmp6": "icmp6",
                "6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "icmp6"}

TCP_FLAGS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32,
             "ALL": 63, "NONE": 0, "ECE": 64, "CWR": 128}

CT_STATES = {"NEW": "new", "ESTABLISHED": "established", "RELATED": "related",
             "INVALID": "invalid", "UNTRACKED": "untracked"}
CT_STATUS = {"SNAT": "snat", "DNAT": "dnat", "CONFIRMED": "confirmed", "SEEN_REPLY": "seen-reply",
             "ASSURED": "assured", "EXPECTED": "expected"}

VERDICT_TARGETS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject", "RETURN": "return"}

# Options whose single argument may itself start with "-" (so it is always taken).
ONE_ARG_ALWAYS = frozenset(("--comment", "--log-prefix", "--string", "--hex-string", "--u32",
                            "--nflog-prefix", "--ulog-prefix", "--helper"))

# Options that take the match loop back from target options (a hand-written `-j X -s Y`).
RESUME_MATCH = frozenset(("-s", "--source", "--src", "-d", "--destination", "--dst", "-p",
                          "--protocol", "-i", "--in-interface", "-o", "--out-interface", "-m",
                          "--match", "-c", "--set-counters", "-f", "--fragment", "-4", "-6",
                          "--ipv4", "--ipv6"))

# Modules that add nothing by being loaded (their options, if any, are handled one by one).
# A module outside this set that carries no option at all still filters (rpfilter, socket):
# it becomes an opaque match.
QUIET_MODULES = frozenset(("tcp", "udp", "udplite", "sctp", "dccp", "icmp", "icmp6", "comment",
                           "limit", "multiport", "state", "conntrack", "addrtype", "iprange", "mark",
                           "connmark", "set", "mac", "owner", "hashlimit", "recent", "connlimit",
                           "physdev", "time", "string", "u32", "length", "ttl", "hl", "pkttype",
                           "tos", "dscp", "ecn", "helper", "policy", "quota", "statistic",
                           "connbytes", "devgroup", "cgroup", "realm", "esp", "ah", "frag", "ipv6header",
                           "rt", "mh", "dst", "hbh", "tcpmss", "cpu", "nfacct", "bpf", "ipvs",
                           "cluster", "condition", "osf", "geoip", "account", "connlabel", "ipcomp",
                           "rateest"))

_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.S)
_UNESCAPE = re.compile(r"\\(.)", re.S)
_COMMENT_RE = re.compile(r' -m comment --comment "([^"\\]*)"(?= |$)')
_COMMENT_HEAD = ' -m comment --comment "'
_COMMENT_HEAD_LEN = len(_COMMENT_HEAD)
_COMMENT_AFTER = ("", " ")
_COUNTER_RE = re.compile(r"^\[\d+:\d+\]$")
_HOSTNAME_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")

_EMPTY: dict = {}

# Frozen dataclasses set each field through object.__setattr__: 3.3 us for a Match on a slow
# machine. Rules with unique addresses (fail2ban, blocklists: 140,000 of them) need one new
# Match and Origin each, so these build the very same objects through the slot descriptors
# (1.3 us). They are equal, hash and print exactly like ones made by the constructor.
_new = object.__new__
_m_field, _m_values, _m_negate, _m_text = Match.field.__set__, Match.values.__set__, \
    Match.negate.__set__, Match.text.__set__
_m_set_name, _m_mask, _m_opaque = Match.set_name.__set__, Match.mask.__set__, Match.opaque.__set__
_o_source, _o_line, _o_handle, _o_index = Origin.source.__set__, Origin.line.__set__, \
    Origin.handle.__set__, Origin.index.__set__


def _match(field: str, values: tuple, negate: bool, text: str) -> Match:
    """Match(field, values, negate, text) for a decidable match, built fast (see above)."""
    m = _new(Match)
    _m_field(m, field)
    _m_values(m, values)
    _m_negate(m, negate)
    _m_text(m, text)
    _m_set_name(m, None)
    _m_mask(m, None)
    _m_opaque(m, False)
    return m


def _file_origin(source: str, line: int) -> Origin:
    """Origin(source, line=line), built fast (see above)."""
    o = _new(Origin)
    _o_source(o, source)
    _o_line(o, line)
    _o_handle(o, None)
    _o_index(o, None)
    return o


_a_kind, _a_target, _a_args, _a_to_addr, _a_to_port = Action.kind.__set__, Action.target.__set__, \
    Action.args.__set__, Action.to_addr.__set__, Action.to_port.__set__
_a_vmap_field, _a_vmap, _a_set_name, _a_set_mark = Action.vmap_field.__set__, Action.vmap.__set__, \
    Action.set_name.__set__, Action.set_mark.__set__


def _action(kind: str, target: str, args: str, to_addr: Optional[int] = None,
            to_port: Optional[int] = None) -> Action:
    """Action(kind, target=, args=, to_addr=, to_port=), built fast (kube-proxy: one new
    jump per endpoint chain and one DNAT per endpoint, 3.2 us -> 1.3 us each)."""
    a = _new(Action)
    _a_kind(a, kind)
    _a_target(a, target)
    _a_args(a, args)
    _a_to_addr(a, to_addr)
    _a_to_port(a, to_port)
    _a_vmap_field(a, None)
    _a_vmap(a, ())
    _a_set_name(a, None)
    _a_set_mark(a, None)
    return a


# Should the model gain a field, the shortcuts above would leave it unset: use the constructors.
if tuple(f.name for f in _dc_fields(Action)) != ("kind", "target", "args", "to_addr", "to_port", "vmap_field",
                                                  "vmap", "set_name", "set_mark"):
    def _action(kind: str, target: str, args: str, to_addr: Optional[int] = None,   # noqa: F811
                to_port: Optional[int] = None) -> Action:
        return Action(kind, target=target, args=args, to_addr=to_addr, to_port=to_port)
if tuple(f.name for f in _dc_fields(Match)) != ("field", "values", "negate", "text", "set_name", "mask",
                                                 "opaque"):
    def _match(field: str, values: tuple, negate: bool, text: str) -> Match:   # noqa: F811
        return Match(field, values, negate, text)
if tuple(f.name for f in _dc_fields(Origin)) != ("source", "line", "handle", "index"):
    def _file_origin(source: str, line: int) -> Origin:                          # noqa: F811
        return Origin(source, line=line)


_c_name, _c_rules, _c_hook, _c_priority, _c_type, _c_policy, _c_origin, _c_handle, _c_pending, \
    _c_build = (Chain.__dict__[f.name].__set__ if f.name != "rules" else _CHAIN_RULES.__set__
                for f in _dc_fields(Chain))


def _user_chain(name: str, origin: Origin, pending: Optional[list]) -> Chain:
    """Chain(name=name, origin=origin) with ``_pending`` set, built fast: a kube-proxy dump
    declares a user chain for every service and endpoint (50,000 at 140,000 rules)."""
    c = _new(Chain)
    _c_name(c, name)
    _c_rules(c, [])
    _c_hook(c, None)
    _c_priority(c, None)
    _c_type(c, None)
    _c_policy(c, None)
    _c_origin(c, origin)
    _c_handle(c, None)
    _c_pending(c, pending)
    _c_build(c, None)
    return c


if tuple(f.name for f in _dc_fields(Chain)) != ("name", "rules", "hook", "priority", "type", "policy", "origin",
                                                 "handle", "_pending", "_build"):
    def _user_chain(name: str, origin: Origin, pending: Optional[list]) -> Chain:   # noqa: F811
        chain = Chain(name=name, origin=origin)
        chain._pending = pending
        return chain


_CONTINUE = Action("continue")
_ANY = object()          # an address match of every address: no match at all

_from_bytes = int.from_bytes
_HEX = frozenset("0123456789abcdefABCDEF")
_LEADING = frozenset(("-s ", "-d ", "! -"))   # how a rule text starting with an address begins
_CACHE_LIMIT = 200_000       # entries per cache: enough for any real dump, bounded for odd ones
_ALL4 = (1 << 32) - 1
_ALL6 = (1 << 128) - 1


class _Bad(Exception):
    """A value iptables-restore would reject; turned into InputError with path and line."""

    def __init__(self, message: str, hint: Optional[str] = None):
        super().__init__(message)
        self.hint = hint


# --------------------------------------------------------------------------- small pure helpers

def split_quoted(line: str) -> list:
    """Split a line the way iptables-restore does: whitespace separates, `"..."` groups (a
    quote may open inside a word: `ab"c d"` is `abc d`; the closing quote ends the word), and
    inside quotes a backslash escapes the next character. Raises _Bad on an open quote."""
    out = []
    pos = 0
    while True:
        q = line.find('"', pos)
        if q < 0:
            out.extend(line[pos:].split())
            return out
        segment = line[pos:q]
        words = segment.split()
        prefix = words.pop() if words and not segment[-1].isspace() else ""
        out.extend(words)
        quoted = _QUOTED.match(line, q)
        if quoted is None:
            raise _Bad("unterminated quote")
        body = quoted.group(1)
        if "\\" in body:
            body = _UNESCAPE.sub(r"\1", body)
        out.append(prefix + body)
        pos = quoted.end()


def _quote(tok: str) -> str:
    if tok and " " not in tok and "\t" not in tok and '"' not in tok and "\\" not in tok:
        return tok
    return '"' + tok.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _strtoui(text: str, limit: int) -> int:
    """An unsigned number as xtables reads it (strtoul, base 0): `0x1f` is hex, `010` is
    octal 8 (and `08` is no number at all), `10` is decimal. ValueError past ``limit``."""
    if text[:2] in ("0x", "0X"):
        value = int(text[2:], 16) if text[2:] and all(c in _HEX for c in text[2:]) else -1
    elif text[:1] == "0" and len(text) > 1:
        value = int(text[1:], 8) if all(c in "01234567" for c in text[1:]) else -1
    else:
        value = int(text) if text.isdigit() and text.isascii() else -1
    if not 0 <= value <= limit:
        raise ValueError(text)
    return value


def _ip4(text: str, mask: bool = False) -> int:
    """An IPv4 address as iptables reads it (xtables' numeric parser): up to four parts,
    each decimal, hex or octal, missing ones filled with zeros from the right (`10` is
    10.0.0.0, `127.1` is 127.1.0.0, not inet_aton's 127.0.0.1). A mask needs all four."""
    try:
        # inet_pton takes exactly four decimal parts without leading zeros: read alike
        return _from_bytes(_pton(_AF_INET, text), "big")
    except (OSError, ValueError):
        pass
    parts = text.split(".")
    if len(parts) > 4 or (mask and len(parts) != 4):
        raise ValueError(text)
    value = 0
    for part in parts:
        value = (value << 8) | _strtoui(part, 255)
    return value << (8 * (4 - len(parts)))


def _ip4_or_resolved(text: str) -> int:
    """_ip4, then what iptables falls back to for a name: getaddrinfo, which reads numeric
    spellings the way inet_aton does (`127.256` is 127.0.1.0). Names stay unresolved."""
    try:
        return _ip4(text)
    except ValueError:
        pass
    if text and text[0].isdigit() and not text.endswith("."):
        try:
            return _from_bytes(socket.inet_aton(text), "big")
        except OSError:
            pass
    raise ValueError(text)


def _ip6(text: str) -> int:
    """An IPv6 address as ip6tables reads it (inet_pton; a `%scope` is dropped, as ip6tables
    does: `fe80::1%lo` is saved as fe80::1/128)."""
    return int(ipaddress.IPv6Address(text.partition("%")[0]))


def _net(text: str, family: str) -> tuple:
    """One address or network as iptables reads it -> (lo, hi), or None when the mask is not
    contiguous (the kernel compares addr & mask, which no single range expresses).
    Raises ValueError when it is not an address of ``family``."""
    v6 = family == "ip6"
    bits = 128 if v6 else 32
    full = _ALL6 if v6 else _ALL4
    addr_text, slash, mask_text = text.rpartition("/")
    if not slash:
        addr_text, mask_text = mask_text, ""
    addr = _ip6(addr_text) if v6 else _ip4_or_resolved(addr_text)
    if not slash:
        return (addr, addr)
    if (":" if v6 else ".") not in mask_text:
        plen = _strtoui(mask_text, bits)
        mask = (full << (bits - plen)) & full
    else:
        mask = _ip6(mask_text) if v6 else _ip4(mask_text, mask=True)
        inverted = ~mask & full
        if inverted & (inverted + 1):          # not of the form 1...10...0
            return None
    lo = addr & mask
    return (lo, lo | (~mask & full))


def _port(text: str, proto: Optional[str]) -> int:
    """A port as iptables 1.8 reads it, which depends on the match (each seen in a namespace):

    - tcp, sctp, multiport (``proto`` "tcp", "sctp" ...): a number in base 0 (`022` is 18,
      `0x16` is 22) or a service of that protocol (`-p udp -m multiport --dports ssh` fails);
    - udp's `--sport`/`--dport` (``proto`` None): a decimal number (`022` is 22, `0x50` is
      refused) or a service of any protocol (`-p udp --dport ssh` is 22, ssh being tcp only).
    """
    if proto is None:
        if text.isdigit() and text.isascii():
            value = int(text)
            if value > 65535:
                raise ValueError(text)
            return value
    elif text[:1].isdigit():
        return _strtoui(text, 65535)
    try:
        return socket.getservbyname(text) if proto is None else socket.getservbyname(text, proto)
    except OSError:
        raise ValueError(text) from None


def _port_range(text: str, proto: Optional[str]) -> tuple:
    """`a`, `a:b`, `:b`, `a:` -> (lo, hi); see _port for ``proto``."""
    lo_text, colon, hi_text = text.partition(":")
    if not colon:
        value = _port(text, proto)
        return (value, value)
    lo = _port(lo_text, proto) if lo_text else 0
    hi = _port(hi_text, proto) if hi_text else 65535
    if lo > hi:
        raise ValueError(f"{text} (min > max)")
    return (lo, hi)


def _int(text: str) -> int:
    """A 32-bit value (marks) in base 0, as xtables' strtoul reads it (`010` is 8)."""
    return _strtoui(text, 0xFFFFFFFF)


def _value_mask(text: str, full: int = 0xFFFFFFFF) -> tuple:
    value_text, slash, mask_text = text.partition("/")
    return _int(value_text), (_int(mask_text) if slash else full)


def _tcp_flags(text: str) -> int:
    value = 0
    for name in text.upper().split(","):
        if name not in TCP_FLAGS:
            raise ValueError(name)
        value |= TCP_FLAGS[name]
    return value


# --------------------------------------------------------------------------- deferred lines
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
        rf"(?: -m (?P=p)(?: (?P<portn>! )?--dport (?P<port>{_PORT}))?)?"   # no range: a regex cannot see min > max
        r"(?: -m statistic --mode random --probability (?:0\.[0-9]{1,11}|1\.0{1,11}))?"
        rf" -j (?:DNAT --to-destination {dnat_to}:{_PORT}|REJECT --reject-with {reject_with}"
        r"|(?P<t>[A-Za-z0-9_.-]{1,28}))")


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
    if end >= 0 and '"' not in plain[:start] and plain[end + 1:end + 2] in _COMMENT_AFTER \
            and '"' not in plain[end + 1:] \
            and "\\" not in (body := plain[start + _COMMENT_HEAD_LEN:end]):
        return plain[:start] + plain[end + 1:], body
    return None, None


def unbuilt_exact_keys(entry: tuple) -> dict:
    """The engine's index keys of a deferred line, without building it: {field: value} for
    each positive `-s A`, `-d A` (one address) and `--dport N`, in the rule's order; the
    same dict ``lbfw.analyze.engine._exact_keys`` gives for the built rule (a test holds
    them equal on every deferred line of the corpus). IPv6 entries carry a third item."""
    line = entry[1]
    v6 = len(entry) > 2
    m = (_SIMPLE_RULE6 if v6 else _SIMPLE_RULE).fullmatch(line, line.find(" ", 3))
    keys = {}
    fields = (("s", "sn", "ip6.saddr"), ("d", "dn", "ip6.daddr")) if v6 else \
        (("s", "sn", "ip.saddr"), ("d", "dn", "ip.daddr"))
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


def _port_line_sees_loopback(m, family: str) -> bool:
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


def unbuilt_may(chain) -> bool:
    """False when no line this reader left unbuilt in ``chain`` names a port that a loopback
    packet (127.0.0.0/8, ::1) can meet; True: build the chain and look. Decided when the
    lines were read: a chain holding such a `--dport` line has ``_build.ports`` set."""
    return getattr(chain._build, "ports", True)


# --------------------------------------------------------------------------- the parser

class _Parser:
    """One pass over the text; ``tables`` is the result."""

    def __init__(self, source: str, family: str, backend: str, lazy: bool = True):
        self.source = source
        # lines of the proven shape (see _SIMPLE_RULE) are built when first asked for
        self.lazy = lazy
        self.deferred_targets: set = set()   # non-chain targets deferred lines of this table name
        self.build = None                    # Chain._build for the open table's chains
        self.position = None                 # live index of the deferred line being built
        self.family = family
        self.backend = backend
        self.live = backend != BACKEND_FILE
        self.saddr = "ip6.saddr" if family == "ip6" else "ip.saddr"
        self.daddr = "ip6.daddr" if family == "ip6" else "ip.daddr"
        self.family_word = "an IPv6" if family == "ip6" else "an IPv4"
        self.full = _ALL6 if family == "ip6" else _ALL4
        self.tables: list = []
        self.fast: dict = {}          # (module context, option, value) -> tuple of Matches
        # (-s | -d, negated) -> {value: Match}
        self.addrs: dict = {(opt, neg): {} for opt in ("-s", "-d") for neg in (False, True)}
        self.tails: dict = {}         # what follows the leading addresses -> tail()'s result
        self.jumps: dict = {}         # (chain, goto) -> Action
        self.rests: dict = {}         # plain_rule's text after the addresses -> parsed
        self.protos: dict = {}        # (-p value, negated) -> (matches, implied module)
        self.contexts: dict = {}      # (context, -m module) -> the context after it
        self.actions: dict = {}       # (target, args) -> Action, for targets that are no chain
        self.table: Optional[Table] = None
        self.table_line = 0
        self.lineno = 0
        # rules whose -j target was neither a chain nor a known target when read: resolved
        # at COMMIT, when every chain of the table is known
        self.unresolved: list = []
        self.warnings: list = []      # what was read but is not as it looks (SourceInfo.warnings)

    # ------------------------------------------------------------------ errors and origins

    def bad(self, message, line: Optional[int] = None) -> InputError:
        """InputError at this line (``message`` a str, or a _Bad with its hint)."""
        hint = getattr(message, "hint", None)
        return InputError(str(message), path=self.source, line=line if line is not None else self.lineno,
                          hint=hint)

    # ------------------------------------------------------------------ the line loop

    def run(self, text: str) -> list:
        pending_ignore = frozenset()
        v6 = self.family == "ip6"
        ip6_seen: dict = {}
        simple = (_SIMPLE_RULE6 if v6 else _SIMPLE_RULE).fullmatch
        deferrable = _DEFERRABLE_TARGETS
        # the open table's chains when lines may be deferred (kept in step at `*` and COMMIT)
        chains = _EMPTY
        for lineno, raw in enumerate(text.split("\n"), 1):
            line = raw.strip()
            if not line:
                pending_ignore = frozenset()
                continue
            first = line[0]
            if first == "-" and line[:3] == "-A " and not pending_ignore:
                sp = line.find(" ", 3)
                chain = chains.get(line[3:sp])
                if chain is not None and chain._pending is not None:
                    m = simple(line, sp)
                    if m is not None and (not v6 or _ip6_addresses_read(m, ip6_seen)):
                        target = m.group("t")
                        if target is None or target in chains:
                            if target is None:
                                self.deferred_targets.update(_DEFERRED_OWN)
                        elif target in deferrable:
                            self.deferred_targets.add(target)
                        else:
                            target = False
                        if target is not False:
                            chain._pending.append((lineno, line, 6) if v6 else (lineno, line))
                            # a chain with a deferred `--dport` line a loopback packet may
                            # meet is marked (unbuilt_may)
                            if m.group("port") is not None and _port_line_sees_loopback(m, self.family):
                                chain._build = self.build_ports
                            elif chain._build is None:
                                chain._build = self.build
                            continue
            self.lineno = lineno
            if first == "-" or first == "[":
                chain = None
                own_comment = None
                plain = line
                if first == "[":
                    # `iptables-save -c`: [packets:bytes] before the rule, nothing to the model
                    end = line.find("] ")
                    if end > 0 and _COUNTER_RE.match(line[:end + 1]):
                        plain = line[end + 2:].lstrip()
                if plain[:3] == "-A " and self.table is not None:
                    # the usual line, kept short: the general path is rule_line
                    if '"' in plain:
                        plain, own_comment = _cut_comment(plain)
                    if plain is not None:
                        parts = plain.split(None, 2)
                        if len(parts) > 1:
                            chain = self.table.chains.get(parts[1])
                if chain is not None:
                    rule = self.plain_rule(parts[2] if len(parts) > 2 else "", line, chain, pending_ignore,
                                           own_comment)
                    if rule is not None:
                        self.add(chain, rule)
                else:
                    self.rule_line(line, pending_ignore)
                if pending_ignore:
                    pending_ignore = frozenset()
            elif first == "#":
                pending_ignore = ignored_ids(line) if "lbfw" in line.lower() else frozenset()
            elif first == ":":
                self.chain_line(line)
                pending_ignore = frozenset()
            elif first == "*":
                self.table_open(line)
                pending_ignore = frozenset()
                chains = self.table.chains if self.lazy else _EMPTY
            elif line == "COMMIT":
                self.commit()
                pending_ignore = frozenset()
                chains = _EMPTY
            else:
                raise self.bad(f"not an iptables-save line (expected *table, :chain, -A rule, COMMIT "
                               f"or # comment): {line[:60]!r}")
        if self.table is not None:
            raise self.bad(f"table '{self.table.name}' has no COMMIT (iptables-restore would reject "
                           f"the whole table)", line=self.table_line)
        return self.tables

    def table_open(self, line: str) -> None:
        name = line[1:].strip()
        if self.table is not None:
            raise self.bad(f"'*{name}' starts a table while '{self.table.name}' (line "
                           f"{self.table_line}) has no COMMIT")
        if name not in BUILTIN_CHAINS:
            raise self.bad(f"unknown table '{name}' (raw, mangle, nat, filter or security)")
        self.table = Table(family=self.family, name=name, backend=self.backend, syntax=SYNTAX_IPTABLES,
                           source=self.source, origin=self.origin(None))
        self.table_line = self.lineno
        self.deferred_targets = set()
        self.build = partial(self.build_deferred, self.table)
        self.build.ports = False
        self.build_ports = partial(self.build_deferred, self.table)
        self.build_ports.ports = True

    def commit(self) -> None:
        table = self.table
        if table is None:
            raise self.bad("COMMIT outside any table")
        for rule, name, goto, chain_name in self.unresolved:
            if name in table.chains:
                rule.action = Action("goto" if goto else "jump", target=name)
            elif goto:
                raise self.bad(f"-g {name}: no chain '{name}' in table {table.name}", line=rule.origin.line)
        self.unresolved = []
        for chain in table.chains.values():
            if chain._pending is not None and chain._build is None:
                chain.rules           # nothing deferred: the pending Rules become the list
        for k, earlier in enumerate(self.tables):
            if earlier.name == table.name:
                # iptables-restore flushes a table when its section starts: the last one wins
                self.tables[k] = table
                self.warnings.append(f"line {self.table_line}: table {table.name} again: it replaces the "
                                     f"earlier section, as iptables-restore does")
                break
        else:
            self.tables.append(table)
        self.table = None

    def origin(self, index: Optional[int]) -> Origin:
        if self.live:
            return Origin(self.source, index=index)
        return _file_origin(self.source, self.lineno)

    def chain_line(self, line: str) -> None:
        table = self.table
        if table is None:
            raise self.bad("chain declared outside any table (add a '*filter' line above it)")
        parts = line[1:].split()
        if len(parts) == 3 and parts[1] == "-":
            # the usual `:NAME - [0:0]` of a new user chain, kept short
            name = parts[0]
            if name not in table.chains and name not in self.deferred_targets and name not in \
                    BUILTIN_CHAINS[table.name] and name not in VERDICT_TARGETS and name[0] != "-" \
                    and len(name) <= 28:
                table.chains[name] = _user_chain(name, self.origin(None), [] if self.lazy else None)
                return
        if not parts:
            raise self.bad("':' without a chain name")
        name = parts[0]
        policy = parts[1] if len(parts) > 1 else "-"
        if name in table.chains and table.chains[name].rule_count:
            raise self.bad(f"chain '{name}' declared again after it got rules")
        self.declare(name, policy)

    def declare(self, name: str, policy: str) -> Chain:
        table = self.table
        if name in BUILTIN_CHAINS[table.name]:
            hook = IPTABLES_HOOK_OF_CHAIN[name]
            prio = IPTABLES_PRIORITY[table.name]
            if isinstance(prio, dict):
                prio = prio[hook]
            upper = policy.upper()
            if upper == "-":
                upper = "ACCEPT"
            if upper not in ("ACCEPT", "DROP"):
                raise self.bad(f"chain {name}: policy must be ACCEPT or DROP, not '{policy}'")
            chain = Chain(name=name, hook=hook, priority=prio, type=IPTABLES_CHAIN_TYPE[table.name],
                          policy=upper.lower(), origin=self.origin(None))
        else:
            if policy != "-":
                raise self.bad(f"chain '{name}' is not a built-in chain of table {table.name}: it "
                               f"cannot have a policy ('{policy}'); write ':{name} - [0:0]'")
            if name in VERDICT_TARGETS or name.startswith("-") or len(name) > 28:
                raise self.bad(f"invalid chain name '{name}'")
            chain = Chain(name=name, origin=self.origin(None))
        existing = table.chains.get(name)
        if existing is not None:
            existing.policy = chain.policy
            return existing
        if name in self.deferred_targets:
            # deferred lines named a target of this name before it was a chain: build them
            # now, as they read when written
            self.build_table_now()
        if self.lazy:
            chain._pending = []
        table.chains[name] = chain
        return chain

    def add(self, chain: Chain, rule: Rule) -> None:
        """Append a built rule, after whatever the chain holds unbuilt."""
        pending = chain._pending
        if pending is not None:
            pending.append(rule)
        else:
            chain.rules.append(rule)

    def build_table_now(self) -> None:
        """Build every deferred line of the open table (its chains are about to change)."""
        for chain in self.table.chains.values():
            if chain._pending is not None and chain._build is not None:
                built = chain.rules          # builds them
                chain.rules = []
                chain._pending = built       # still reading: later lines queue up behind them

    def build_deferred(self, table: Table, chain: Chain, entry: tuple, position: int) -> Rule:
        """Chain._build: the Rule of a deferred line (at 0-based ``position`` in ``chain``),
        exactly as reading it at once would have made it."""
        saved = self.table, self.lineno, self.position
        self.table = table
        self.lineno, line = entry[0], entry[1]
        self.position = position + 1
        try:
            plain = line
            own_comment = None
            if '"' in plain:
                plain, own_comment = _cut_comment(plain)
            parts = plain.split(None, 2)
            return self.plain_rule(parts[2], line, chain, frozenset(), own_comment)
        finally:
            self.table, self.lineno, self.position = saved

    def chain_for_rule(self, name: str) -> Chain:
        table = self.table
        chain = table.chains.get(name)
        if chain is not None:
            return chain
        if name in BUILTIN_CHAINS[table.name]:
            # built-in chains exist in the kernel as soon as the table does
            return self.declare(name, "-")
        raise self.bad(f"chain '{name}' is used but never declared in table {table.name} "
                       f"(iptables-restore rejects it; add ':{name} - [0:0]')")

    # ------------------------------------------------------------------ rules

    def rule_line(self, line: str, ignore_above: frozenset) -> None:
        table = self.table
        if table is None:
            raise self.bad("rule outside any table (add a '*filter' line and a COMMIT)")
        if '"' in line:
            try:
                tokens = split_quoted(line)
            except _Bad as err:
                raise self.bad(err) from None
        else:
            tokens = line.split()
        if tokens[0][0] == "[":
            if not _COUNTER_RE.match(tokens[0]):
                raise self.bad(f"bad counters {tokens[0]!r} (expected [packets:bytes])")
            del tokens[0]
            if not tokens:
                raise self.bad("counters without a rule")
        cmd = tokens[0]
        n = len(tokens)
        if cmd == "-A" or cmd == "--append" or cmd == "-I" or cmd == "--insert":
            if n < 2:
                raise self.bad(f"{cmd} needs a chain name")
            chain = self.chain_for_rule(tokens[1])
            start = 2
            position = None
            if cmd in ("-I", "--insert"):
                position = 1
                if n > 2 and tokens[2].isdigit():
                    position = int(tokens[2])
                    start = 3
            rule = self.build_rule(tokens, start, line, chain, ignore_above)
            if rule is None:
                return
            if position is None:
                self.add(chain, rule)
            else:
                if position < 1 or position > len(chain.rules) + 1:
                    raise self.bad(f"{cmd} {chain.name} {position}: index out of range")
                chain.rules.insert(position - 1, rule)
            if self.live:
                # positions shift on insert: renumber the chain (1-based, as `iptables -R` counts)
                if position is None:
                    rule.origin = Origin(self.source, index=chain.rule_count)
                else:
                    for i, r in enumerate(chain.rules, 1):
                        r.origin = Origin(self.source, index=i)
            return
        if cmd in ("-N", "--new-chain"):
            if n != 2:
                raise self.bad(f"{cmd} takes exactly one chain name")
            self.declare(tokens[1], "-")
            return
        if cmd in ("-P", "--policy"):
            if n != 3 or tokens[1] not in BUILTIN_CHAINS[table.name]:
                raise self.bad(f"{cmd} needs a built-in chain of table {table.name} and ACCEPT or DROP")
            self.declare(tokens[1], tokens[2])
            return
        if cmd in ("-F", "--flush"):
            names = tokens[1:] or list(table.chains)
            for name in names:
                self.chain_for_rule(name).rules.clear()
            return
        if cmd in ("-X", "--delete-chain"):
            self.build_table_now()      # deferred jumps must not see their chain gone
            for name in tokens[1:] or [c.name for c in table.chains.values() if not c.is_base]:
                chain = table.chains.get(name)
                if chain is None or chain.is_base:
                    raise self.bad(f"{cmd} {name}: no such user-defined chain")
                del table.chains[name]
            return
        if cmd in ("-Z", "--zero"):
            return
        raise self.bad(f"unsupported command {cmd!r} (expected -A CHAIN ...)")

    def plain_rule(self, rest: str, line: str, chain: Chain, ignore_above: frozenset,
                   own_comment: Optional[str] = None):
        """The Rule for an unquoted `-A CHAIN REST` line (None: a rule for the other family).

        Speed: iptables-save writes `-s`/`-d` first, and what follows them repeats across
        rules far more than the addresses do (blocklists: a new address, the same `-j DROP`).
        So leading addresses are peeled off REST here, each looked up in ``self.addrs``, and
        the rest of the text is parsed once by ``tail`` and then found in ``self.tails``:
        most lines are never split into all their tokens."""
        lead = None
        while rest[:3] in _LEADING:
            neg = rest[0] == "!"
            parts = (rest[2:] if neg else rest).split(None, 2)
            if len(parts) < 2 or parts[0] not in ("-s", "-d") or parts[1] == "!":
                break
            m = self.cached_address(parts[0], parts[1], neg)
            if m is _ANY:
                pass
            elif lead is None:
                lead = [m]
            else:
                lead.append(m)
            rest = parts[2] if len(parts) > 2 else ""
        parsed = self.rests.get(rest)
        if parsed is not None:
            return self.finish(lead, parsed, own_comment, line, chain, ignore_above)
        # The target often differs where the matches repeat (kube-proxy: one chain per
        # endpoint), so `-j TARGET ARGS` at the end is split off when it plainly is the end.
        target = None
        if rest[:3] == "-j " or rest[:3] == "-g ":
            head, target_text, goto = "", rest[3:], rest[1] == "g"
            target = target_text.split()
        else:
            p = rest.find(" -j ")
            goto = p < 0
            if goto:
                p = rest.find(" -g ")
            if p >= 0:
                head, target_text = rest[:p], rest[p + 4:]
                target = target_text.split()
        if target and RESUME_MATCH.isdisjoint(target) and "!" not in target and " -j " not in target_text \
                and " -g " not in target_text:
            parsed = self.tails.get(head)
            if parsed is None:
                parsed = self.tail(head.split(), 0)
                if len(self.tails) < _CACHE_LIMIT:
                    self.tails[head] = parsed
            parsed = (parsed[0], target[0], goto, tuple(target[1:]), parsed[4])
            if len(self.rests) < _CACHE_LIMIT:
                self.rests[rest] = parsed
        else:
            parsed = self.tail(rest.split(), 0)
            if len(self.rests) < _CACHE_LIMIT:
                self.rests[rest] = parsed
        return self.finish(lead, parsed, own_comment, line, chain, ignore_above)

    def build_rule(self, tokens: list, i: int, line: str, chain: Chain, ignore_above: frozenset):
        """The Rule for the tokens after `-A CHAIN` (quoted lines, counters, `-I`), with the
        same caches as ``plain_rule``; None when `-4`/`-6` says it is for the other family."""
        n = len(tokens)
        lead = None
        neg = False
        while i < n:
            tok = tokens[i]
            if tok == "!" and i + 1 < n and (tokens[i + 1] == "-s" or tokens[i + 1] == "-d"):
                neg = True
                i += 1
                continue
            if (tok == "-s" or tok == "-d") and i + 1 < n and tokens[i + 1] != "!":
                m = self.cached_address(tok, tokens[i + 1], neg)
                i += 2
                if m is _ANY:
                    pass
                elif lead is None:
                    lead = [m]
                else:
                    lead.append(m)
                neg = False
                continue
            if neg:
                i -= 1             # "!" before something else: the tail reads it
            break
        own_comment = None
        if '"' in line and "--comment" in tokens:
            # comments are as unique as addresses (and change nothing): keep them out of the key
            j = tokens.index("--comment")
            if j >= i + 2 and j + 1 < n and tokens[j - 1] == "comment" and tokens[j - 2] in ("-m", "--match") \
                    and tokens[j - 3] != "!":
                own_comment = tokens[j + 1]
                tokens = tokens[:j - 2] + tokens[j + 2:]
        key = tuple(tokens[i:])
        parsed = self.tails.get(key)
        if parsed is None:
            parsed = self.tail(tokens, i)
            if len(self.tails) < _CACHE_LIMIT:
                self.tails[key] = parsed
        return self.finish(lead, parsed, own_comment, line, chain, ignore_above)

    def finish(self, lead: Optional[list], parsed: tuple, own_comment: Optional[str], line: str,
               chain: Chain, ignore_above: frozenset):
        """The Rule from its leading address matches and its parsed tail."""
        matches, target, goto, target_args, comment = parsed
        if matches is None:
            self.warnings.append(f"line {self.lineno}: rule marked for the other IP family (-4/-6): "
                                 f"skipped, as iptables-restore does")
            return None
        if own_comment is not None:
            comment = own_comment if comment is None else f"{own_comment} {comment}"
        if lead is not None:
            if matches:
                lead.extend(matches)
            matches = tuple(lead)
        if comment is None or "lbfw" not in comment.lower():
            ignore = ignore_above
        else:
            ignore = ignored_ids(comment) | ignore_above
        if self.live:
            origin = Origin(self.source, index=self.position or chain.rule_count + 1)
        else:
            origin = _file_origin(self.source, self.lineno)
        rule = Rule(matches, _CONTINUE, line, origin, comment, ignore)
        if target is not None:
            if target in self.table.chains:
                action = self.jumps.get((target, goto)) if not target_args else None
                if action is None:
                    action = self.action(target, goto, target_args, chain, rule)
                    if not target_args:
                        self.jumps[(target, goto)] = action
            else:
                action = None if goto else self.actions.get((target, target_args))
                if action is None:
                    action = self.action(target, goto, target_args, chain, rule)
            rule.action = action
        return rule

    def tail(self, tokens: list, i: int) -> tuple:
        """Parse tokens[i:] -> (matches tuple, target, goto, target args, comment); matches
        None when the rule is for the other family (`-4`/`-6`). Depends on nothing but the
        tokens and the family, so its result may be reused for an identical tail."""
        n = len(tokens)
        fast = self.fast
        contexts = self.contexts
        protos = self.protos
        addrs = self.addrs
        matches = []
        neg = False
        loaded = []                # match modules loaded so far, in order (-m and -p's)
        proto = None               # the -p protocol's implied module name
        ctx = ""                   # proto + loaded modules: part of the fast cache key
        comment = None
        target = None
        goto = False
        target_args = ()
        group = None               # (index in matches, module count) of the open opaque match
        while i < n:
            tok = tokens[i]
            i += 1
            if (tok == "-s" or tok == "-d") and i < n and tokens[i] != "!":
                # addresses are the one option whose values are mostly unique: own path
                value = tokens[i]
                i += 1
                cache = addrs[(tok, neg)]
                m = cache.get(value)
                if m is None:
                    m = cache[value] = self.address(tok, value, neg)
                if m is not _ANY:
                    matches.append(m)
                neg = False
                continue
            if tok == "-j" or tok == "-g" or tok == "--jump" or tok == "--goto":
                if i >= n:
                    raise self.bad(f"{tok} needs a target")
                if neg:
                    raise self.bad(f"'!' cannot negate {tok}")
                if target is not None:
                    raise self.bad("more than one target (-j/-g)")
                target = tokens[i]
                goto = tok == "-g" or tok == "--goto"
                i += 1
                # the target's options run to the end (or to a match option, written by hand)
                j = i
                while j < n and tokens[j] not in RESUME_MATCH and not (
                        tokens[j] == "!" and j + 1 < n and tokens[j + 1] in RESUME_MATCH):
                    j += 1
                target_args = tuple(tokens[i:j])
                i = j
                continue
            if i < n and not neg:
                hit = fast.get((ctx, tok, tokens[i]))
                if hit is not None:
                    i += 1
                    if hit:
                        matches.extend(hit)
                    continue
            if tok == "-m" or tok == "--match":
                if i >= n:
                    raise self.bad(f"{tok} needs a module name")
                if neg:
                    raise self.bad(f"'!' cannot negate {tok} {tokens[i]}")
                module = tokens[i]
                i += 1
                loaded.append(module)
                key = (ctx, module)
                following = contexts.get(key)
                if following is None:
                    following = contexts[key] = f"{ctx}|{module}"
                ctx = following
                if module not in QUIET_MODULES:
                    # a module that filters without options (rpfilter, socket, ...): opaque
                    # unless options follow, which then carry the meaning
                    if i >= n or not tokens[i].startswith("--") or tokens[i] in RESUME_MATCH:
                        matches.append(Match(field=f"m.{module}", text=f"-m {module}", opaque=True))
                continue
            if tok == "-p" and i < n and tokens[i] != "!":
                key = (tokens[i], neg)
                known_proto = protos.get(key)
                if known_proto is None:
                    try:
                        known_proto = protos[key] = (self.build_match("proto", tok, tokens[i], neg, None),
                                                     PROTO_MODULE.get(tokens[i].lower()))
                    except _Bad as err:
                        raise self.bad(err) from None
                i += 1
                if known_proto[0]:
                    matches.extend(known_proto[0])
                proto = known_proto[1]
                ctx = f"{proto}{ctx[ctx.index('|'):]}" if ctx else f"{proto}|"
                neg = False
                continue
            if tok == "!":
                if neg:
                    raise self.bad("'!' given twice")
                neg = True
                continue
            if tok[0] != "-" or len(tok) < 2:
                raise self.bad(f"unexpected {tok!r} (an option was expected)")
            if tok == "-c" or tok == "--set-counters":
                if i + 1 >= n:
                    raise self.bad(f"{tok} needs packet and byte counters")
                i += 2
                continue
            if tok in ("-4", "--ipv4", "-6", "--ipv6"):
                if (tok in ("-4", "--ipv4")) != (self.family == "ip"):
                    return (None, None, False, (), None)
                continue
            if tok == "-f" or tok == "--fragment":
                matches.append(Match(field="ip.frag", negate=neg, text=("! -f" if neg else "-f"), opaque=True))
                neg = False
                continue

            # every other option takes arguments
            known = _OPTIONS.get(tok)
            handler = None
            owner = loaded[-1] if loaded else proto     # the module an option belongs to
            if known is None:
                for module in reversed(loaded):
                    handler = _MODULE_OPTIONS.get(module, _EMPTY).get(tok)
                    if handler is not None:
                        owner = module
                        break
                if handler is None and proto is not None:
                    handler = _MODULE_OPTIONS.get(proto, _EMPTY).get(tok)
                    if handler is not None:
                        owner = proto
            nargs = 1
            if known is not None:
                kind = known
            elif handler is not None:
                kind, nargs = handler
            else:
                kind, nargs = "opaque", -1
            old_neg = False
            if nargs == -1:
                # unknown option: its arguments are the tokens up to the next option
                if i < n and tokens[i] == "!" and i + 1 < n and not tokens[i + 1].startswith("-"):
                    neg = not neg
                    i += 1
                j = i
                while j < n and not tokens[j].startswith("-") and tokens[j] != "!":
                    j += 1
                value = " ".join([_quote(a) for a in tokens[i:j]])
                i = j
            else:
                if i < n and tokens[i] == "!" and nargs > 0:
                    # the old spelling `-s ! X`
                    if neg:
                        raise self.bad(f"{tok}: '!' given twice")
                    neg = old_neg = True
                    i += 1
                if i + nargs > n:
                    raise self.bad(f"{tok} needs an argument")
                if nargs == 1:
                    value = tokens[i]
                    if value[:1] == "-" and tok not in ONE_ARG_ALWAYS and (
                            value.startswith("--") or value in RESUME_MATCH or value in _OPTIONS
                            or value in ("-j", "-g")):
                        raise self.bad(f"{tok} needs an argument")
                    i += 1
                elif nargs == 0:
                    value = ""
                else:
                    value = " ".join(tokens[i:i + nargs])
                    i += nargs

            if kind == "comment":
                comment = value if comment is None else f"{comment} {value}"
                neg = False
                continue
            if kind == "proto":
                proto = PROTO_MODULE.get(value.lower())
                ctx = f"{proto}|{'|'.join(loaded)}"
            if kind == "opaque":
                # options lbfw cannot decide: one opaque match per module, with all its text
                piece = (f"! {tok} {value}" if neg else f"{tok} {value}").rstrip()
                here = (owner, len(loaded))
                if group is not None and group[1] == here:
                    old = matches[group[0]]
                    matches[group[0]] = Match(field=old.field, text=f"{old.text} {piece}", opaque=True)
                else:
                    if owner in loaded:
                        piece = f"-m {owner} {piece}"
                    matches.append(Match(field=f"m.{owner}" if owner else f"opt.{tok.lstrip('-')}",
                                         text=piece, opaque=True))
                    group = (len(matches) - 1, here)
                neg = False
                continue
            if kind == "neutral":
                built = ()
            else:
                try:
                    built = self.build_match(kind, tok, value, neg, proto)
                except _Bad as err:
                    raise self.bad(err) from None
            if nargs == 1 and not neg and not old_neg and kind != "proto":
                fast[(ctx, tok, value)] = built
            if built:
                matches.extend(built)
            neg = False
        if neg:
            raise self.bad("'!' at the end of the rule, negating nothing")

        if loaded and "addrtype" in loaded and any(m.field == "addrtype.limit-iface" for m in matches):
            # --limit-iface-in/out: the type is looked up on one interface only: not modelled
            matches = [Match(field=m.field, values=m.values, negate=m.negate, text=m.text, opaque=True)
                       if isinstance(m.field, str) and m.field.startswith("fib.") else m for m in matches]
        return (tuple(matches), target, goto, target_args, comment)

    # ------------------------------------------------------------------ matches

    def build_match(self, kind: str, opt: str, value: str, neg: bool, proto: Optional[str]) -> tuple:
        """Build the Match(es) for one option; raises _Bad for values iptables rejects."""
        text = f"! {opt} {value}" if neg else f"{opt} {value}"
        if kind == "saddr" or kind == "daddr":
            m = self.addr_match(self.saddr if kind == "saddr" else self.daddr, opt, value, neg, text)
            if not neg and len(m.values) == 1 and m.values[0] == (0, self.full):
                return ()                     # every address: the kernel keeps no match
            return (m,)
        if kind == "iif" or kind == "oif":
            if not value or len(value) > 15:
                raise _Bad(f"{opt}: bad interface name {value!r}")
            name = value[:-1] + "*" if value.endswith("+") else value
            return (Match(field="meta.iifname" if kind == "iif" else "meta.oifname", values=(name,),
                          negate=neg, text=text),)
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
            field = {"--sport": "th.sport", "--source-port": "th.sport", "--dport": "th.dport",
                     "--destination-port": "th.dport", "--sports": "th.sport", "--source-ports": "th.sport",
                     "--dports": "th.dport", "--destination-ports": "th.dport", "--ports": "th.port"}[opt]
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
                return (Match(field="ct.state", values=tuple(states), negate=True, text=text),
                        Match(field="ct.status", values=tuple(status), negate=True, text=text))
            if status:
                return (Match(field="ct.status", values=tuple(status), negate=neg, text=text),)
            return (Match(field="ct.state", values=tuple(states), negate=neg, text=text),)
        if kind == "ctstatus":
            words = value.upper().split(",")
            if all(w in CT_STATUS for w in words):
                return (Match(field="ct.status", values=tuple(CT_STATUS[w] for w in words), negate=neg,
                              text=text),)
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
            return (Match(field=field, values=((mark & mask, mark & mask),),
                          mask=None if mask == 0xFFFFFFFF else mask, negate=neg, text=text,
                          opaque=kind == "ctmark"),)
        if kind == "matchset":
            name, _, dirs = value.partition(" ")
            dir_list = dirs.split(",")
            fields = tuple(self.saddr if d == "src" else self.daddr for d in dir_list)
            return (Match(field=fields[0] if len(fields) == 1 else fields, negate=neg, text=text,
                          set_name=name, opaque=True),)
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
                    pass                      # not plain dotted-quad: the careful path says why
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

    # ------------------------------------------------------------------ targets

    def action(self, name: str, goto: bool, args: tuple, chain: Chain, rule: Rule) -> Action:
        """The Action for `-j NAME ARGS` (or `-g NAME`) in ``chain``."""
        if name in self.table.chains:
            return _action("goto" if goto else "jump", name, " ".join(args))
        if goto:
            self.unresolved.append((rule, name, True, chain.name))
            return Action("unknown", target=name)
        key = (name, args)
        action = self.actions.get(key)
        if action is None:
            action = self.target_action(name, args, chain, rule)
            if action.kind != "unknown" and name != "NETMAP" and len(self.actions) < _CACHE_LIMIT:
                self.actions[key] = action
        return action

    def target_action(self, name: str, args: tuple, chain: Chain, rule: Rule) -> Action:
        arg_text = " ".join([_quote(a) for a in args])
        kind = VERDICT_TARGETS.get(name)
        if kind is not None:
            if args and name != "REJECT":
                raise self.bad(f"-j {name} takes no options, got {arg_text!r}", line=rule.origin.line)
            return _action(kind, name, arg_text)
        if name in NON_ENDING_TARGETS:
            return _action("continue", name, arg_text)
        if name == "MARK":
            return Action("continue", target=name, args=arg_text, set_mark=self.mark_target(args))
        if name == "DNAT":
            addr, port = self.nat_to(args, "--to-destination")
            return _action("dnat", name, arg_text, addr, port)
        if name == "REDIRECT":
            _, port = self.nat_to(args, "--to-ports", ports_only=True)
            return Action("redirect", target=name, args=arg_text, to_port=port)
        if name == "SNAT":
            addr, port = self.nat_to(args, "--to-source")
            return _action("snat", name, arg_text, addr, port)
        if name == "MASQUERADE":
            return _action("masquerade", name, arg_text)
        if name == "NETMAP":
            # NETMAP rewrites the source in POSTROUTING/INPUT, the destination elsewhere: the
            # new destination depends on the packet, which the model does not say
            if chain.hook in ("postrouting", "input"):
                return Action("snat", target=name, args=arg_text)
            return Action("unknown", target=name, args=arg_text)
        if name == "NOTRACK":
            return Action("notrack", target=name, args=arg_text)
        if name == "CT":
            kind = "notrack" if "--notrack" in args else "continue"
            return Action(kind, target=name, args=arg_text)
        if name in ("NFQUEUE", "QUEUE"):
            return Action("queue", target=name, args=arg_text)
        # Maybe a chain declared further down (hand-written files): resolved at COMMIT.
        self.unresolved.append((rule, name, False, chain.name))
        return Action("unknown", target=name, args=arg_text)

    def mark_target(self, args: tuple) -> Optional[tuple]:
        """MARK's effect as (value, mask): mark = (mark & ~mask) | value; None when not that."""
        for i, opt in enumerate(args[:-1]):
            try:
                if opt in ("--set-mark", "--set-xmark"):
                    value, mask = _value_mask(args[i + 1])
                    if opt == "--set-mark":
                        return (value, mask | value)      # iptables makes it --set-xmark v/(m|v)
                    if value & ~mask & 0xFFFFFFFF:
                        return None              # real XOR outside the mask: not a plain set
                    return (value, mask)
                if opt == "--or-mark":
                    value = _int(args[i + 1])
                    return (value, value)
                if opt == "--and-mark":
                    value = _int(args[i + 1])
                    return (0, ~value & 0xFFFFFFFF)
            except ValueError:
                raise self.bad(f"MARK {opt}: bad mark {args[i + 1]!r}") from None
        return None

    def nat_to(self, args: tuple, opt: str, ports_only: bool = False) -> tuple:
        """(first address, first port) of a NAT target's --to-* option; None where absent."""
        try:
            value = args[args.index(opt) + 1]
        except (ValueError, IndexError):
            return None, None
        addr = port = None
        try:
            if ports_only:
                port = int(value.partition("-")[0])
                if not 0 <= port <= 65535:
                    raise self.bad(f"{opt}: port {port} is not valid (0-65535)")
                return None, port
            if self.family == "ip6":
                if value.startswith("["):
                    addr_text, _, rest = value[1:].partition("]")
                    port_text = rest[1:] if rest.startswith(":") else ""
                else:
                    addr_text, port_text = value, ""
                addr = _ip6(addr_text.partition("-")[0]) if addr_text else None
            else:
                addr_text, _, port_text = value.partition(":")
                addr = _ip4(addr_text.partition("-")[0]) if addr_text else None
            if port_text:
                port = int(port_text.partition("-")[0])
        except ValueError:
            raise self.bad(f"{opt}: {value!r} is not {self.family_word} address[:port]") from None
        if port is not None and not 0 <= port <= 65535:
            # iptables-restore 1.8.9, measured: "Port `65536' not valid" (0 is taken)
            raise self.bad(f"{opt}: port {port} is not valid (0-65535)")
        return addr, port


# Options every rule understands (not tied to a module): option -> kind.
_OPTIONS = {
    "-s": "saddr", "--source": "saddr", "--src": "saddr",
    "-d": "daddr", "--destination": "daddr", "--dst": "daddr",
    "-i": "iif", "--in-interface": "iif",
    "-o": "oif", "--out-interface": "oif",
    "-p": "proto", "--protocol": "proto",
}

_PORTS = {"--sport": ("port", 1), "--source-port": ("port", 1), "--dport": ("port", 1),
          "--destination-port": ("port", 1)}
# Module options lbfw understands: module -> option -> (kind, number of arguments).
# Options of a loaded module not listed here are kept opaque with their arguments.
_MODULE_OPTIONS = {
    "tcp": {**_PORTS, "--syn": ("syn", 0), "--tcp-flags": ("tcpflags", 2), "--tcp-option": ("opaque", 1)},
    "udp": dict(_PORTS),
    "udplite": dict(_PORTS),
    "sctp": dict(_PORTS),
    "dccp": dict(_PORTS),
    "icmp": {"--icmp-type": ("opaque", 1)},
    "icmp6": {"--icmpv6-type": ("opaque", 1)},
    "multiport": {"--sports": ("ports", 1), "--source-ports": ("ports", 1), "--dports": ("ports", 1),
                  "--destination-ports": ("ports", 1), "--ports": ("ports", 1)},
    "state": {"--state": ("state", 1)},
    "conntrack": {"--ctstate": ("state", 1), "--ctstatus": ("ctstatus", 1), "--ctdir": ("ctdir", 1)},
    "addrtype": {"--src-type": ("srctype", 1), "--dst-type": ("dsttype", 1),
                 "--limit-iface-in": ("limitiface", 0), "--limit-iface-out": ("limitiface", 0)},
    "iprange": {"--src-range": ("range", 1), "--dst-range": ("range", 1)},
    "mark": {"--mark": ("mark", 1)},
    "connmark": {"--mark": ("ctmark", 1)},
    "set": {"--match-set": ("matchset", 2), "--set": ("matchset", 2)},
    "comment": {"--comment": ("comment", 1)},
    "limit": {"--limit": ("neutral", 1), "--limit-burst": ("neutral", 1)},
    "mac": {"--mac-source": ("opaque", 1)},
    "string": {"--string": ("opaque", 1), "--hex-string": ("opaque", 1)},
    "u32": {"--u32": ("opaque", 1)},
}


# --------------------------------------------------------------------------- public entry point

def parse(text: str, source: str, family: Optional[str] = None, backend: str = BACKEND_FILE,
          warnings: Optional[list] = None, lazy: bool = True) -> list:
    """Parse iptables-save (``family`` "ip") or ip6tables-save ("ip6") text into Tables.

    ``family`` None detects it from the text (header comment, IPv6 addresses, ipv6-icmp).
    ``source`` is the path as given (or "live:legacy" / "live:iptables-nft" with that
    ``backend``): files get ``Origin(source, line=N)``, live rules ``Origin(source, index=N)``.

    ``warnings``, if given, receives notes on what is read differently from how it looks (a
    table given twice: the last wins; a `-6` rule in an iptables file: skipped).

    Raises InputError(path=source, line=N) for what iptables-restore rejects: a rule or chain
    outside any table, a chain used but never declared, a table without COMMIT, an option
    missing its argument, an address that is not one, a line of no known kind.

    ``lazy``: rule lines of a shape proven well-formed (``_SIMPLE_RULE``) are checked now and
    built when their chain's ``rules`` is first read; False builds every rule now. Both give
    equal models and the same errors.
    """
    if family is None:
        from .detect import detect_format
        try:
            family = "ip6" if detect_format(text) == "ip6tables-save" else "ip"
        except InputError:
            family = "ip"
    if family not in ("ip", "ip6"):
        raise ValueError(f"family must be 'ip' or 'ip6', not {family!r}")
    # Hundreds of thousands of new objects, none of them garbage: the cyclic collector would
    # walk them again and again (a third of the time on large dumps) for nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        parser = _Parser(source, family, backend, lazy)
        tables = parser.run(text)
        if warnings is not None:
            warnings.extend(parser.warnings)
        return tables
    finally:
        if was_enabled:
            gc.enable()

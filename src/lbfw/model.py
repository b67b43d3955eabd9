"""The one model every reader produces and everything after it consumes.

Plain data, no I/O. A ruleset is a list of tables; a table holds chains and named
sets; a chain holds rules; a rule is a tuple of matches and one action. Every rule
knows where it came from (`Origin`).

Matches are normalised so the engine never asks which backend wrote them:

    Match(field="ip.saddr", values=((0x7F000001, 0x7F000001),))   # -s 127.0.0.1
    Match(field="meta.iifname", values=("lo",))                     # -i lo / iif "lo"
    Match(field=("ip.saddr", "th.dport"), values=(((a, a), (22, 22)),))  # concatenation

Field names and the shape of their values (``FIELDS`` below is the reference):

=================  =========================================================
field              values
=================  =========================================================
ip.saddr ip.daddr  (lo, hi) integer ranges of IPv4 addresses
ip6.saddr ip6.daddr (lo, hi) integer ranges of IPv6 addresses
meta.nfproto       "ipv4" | "ipv6"
meta.l4proto       (lo, hi) ranges of IP protocol numbers (tcp = 6, udp = 17)
th.sport th.dport  (lo, hi) port ranges (a rule with `--dport` also carries
                   its meta.l4proto match)
th.port            (lo, hi) port ranges either port may be in (multiport --ports)
meta.iifname       interface names; a trailing "*" is a prefix wildcard
meta.oifname       (iptables `eth+` and nft `"eth*"` both become "eth*")
ct.state           "new" "established" "related" "invalid" "untracked"
ct.status          "snat" "dnat" "confirmed" "seen-reply" "assured" "expected"
ct.direction       "original" | "reply"
fib.saddr.type     address types, lower case: "local" "unicast" "broadcast"
fib.daddr.type     "multicast" "blackhole" "unreachable" "prohibit" ...
fib.rpf            (exists,): True when the rule asks that the reverse-path
                   lookup finds a route, False that it finds none
meta.mark          (lo, hi) ranges (after applying a mask: see Match.mask)
tcp.flags          ((mask, comp),): true when flags & mask == comp (fin 0x01
                   syn 0x02 rst 0x04 psh 0x08 ack 0x10 urg 0x20 ecn 0x40
                   cwr 0x80); false for a packet that is not TCP
rpfilter           () : iptables -m rpfilter (negate: --invert)
recent             ((list name, command),): iptables -m recent, command
                   "set" | "rcheck" | "update" | "remove"
icmp.type          (lo, hi) ranges of ICMP types / codes (icmp.code); icmpv6.type
icmp.code          and icmpv6.code alike (`--icmp-type any`: no such match)
ip.ttl             (lo, hi) ranges of the IPv4 TTL; ip6.hoplimit of the hop limit
ip.length          (lo, hi) layer-3 length (IP header + payload); ip6.length is
                   the IPv6 payload length, meta.length the nft `meta length`
ip.dscp ip.ecn     (lo, hi) ranges (dscp 0-63, ecn 0-3); ip6.dscp ip6.ecn alike
ip.tos             (lo, hi) of tos & Match.mask
ip.fragment        (True,): the packet is a non-first fragment
ip.morefragments   (True,): the IPv4 more-fragments bit is set
meta.pkttype       "host" "broadcast" "multicast" "other"
meta.iiftype       interface types as nft names them: "loopback" "ether" ...
meta.oiftype
meta.iifgroup      (lo, hi) ranges of the device group (& Match.mask)
meta.oifgroup
ct.helper          helper names ("ftp", ...)
physdev            ((option, argument or None),): any -m physdev option
connlimit          (("above" | "upto", N),): iptables connlimit, nft ct count
statistic.nth      ((every, packet),): statistic --mode nth, nft numgen inc
statistic.random   (probability,): statistic --mode random, nft numgen random
meta.skuid         (lo, hi) ranges of the socket owner's uid / gid (meta.skgid);
meta.skgid         a name that does not resolve: values=() and opaque=True
meta.socket        (True,): the packet belongs to a local socket
ct.mark            (lo, hi) ranges of the conntrack mark (& Match.mask)
tcp.option.mss     (lo, hi) ranges of the TCP MSS option
tcp.option         (kind,): the TCP option of that kind is present
limit              (("limit" | "hashlimit", text),): a rate (negate: over it)
quota              (("quota" | "over", N),): a byte quota ("over": past it;
                   iptables `! --quota N`, nft `quota over`); N in bytes
runtime            ((kind, text),): time, cpu, ...: decided only at run time
=================  =========================================================

Actions that change marks (``Action.set_mark`` ``set_ctmark`` ``copy_mark``
``mark_unknown``) are described on ``Action``; packet and conntrack marks start at 0.

A match the model cannot express is kept with ``opaque=True`` and its text: the
engine treats it as *unknown*, never as true or false. Neutral matches (comment,
counter, log, limit, ...) are not matches at all: they are kept in the rule text.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import MutableSequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

# --------------------------------------------------------------------------- constants

BACKEND_LEGACY = "legacy"
BACKEND_IPTABLES_NFT = "iptables-nft"
BACKEND_NFTABLES = "nftables"
BACKEND_FILE = "file"
BACKENDS = (BACKEND_LEGACY, BACKEND_IPTABLES_NFT, BACKEND_NFTABLES, BACKEND_FILE)

SYNTAX_IPTABLES = "iptables"
SYNTAX_NFT = "nft"

HOOKS = ("prerouting", "input", "forward", "output", "postrouting", "ingress", "egress")

# The priorities iptables' built-in chains register at (same for legacy and iptables-nft).
IPTABLES_PRIORITY: dict[str, Union[int, dict[str, int]]] = {
    "raw": -300,
    "mangle": -150,
    "nat": {"prerouting": -100, "output": -100, "input": 100, "postrouting": 100},
    "filter": 0,
    "security": 50,
}
IPTABLES_CHAIN_TYPE = {"raw": "filter", "mangle": "route", "nat": "nat", "filter": "filter", "security": "filter"}
IPTABLES_HOOK_OF_CHAIN = {
    "PREROUTING": "prerouting",
    "INPUT": "input",
    "FORWARD": "forward",
    "OUTPUT": "output",
    "POSTROUTING": "postrouting",
}

# Verdicts that end evaluation of the packet in this base chain (or altogether).
TERMINAL_ACCEPT = "accept"
TERMINAL_DROP = "drop"
TERMINAL_REJECT = "reject"

ACTION_KINDS = (
    "accept",  # ends this base chain, packet continues to the next base chain / hook
    "drop",  # ends the packet
    "reject",  # ends the packet (with an ICMP/RST)
    "jump",  # target = chain name
    "goto",  # target = chain name
    "return",
    "continue",  # non-terminating target or no verdict (LOG, MARK, counter, ...)
    "dnat",  # to_addr / to_port
    "redirect",  # to_port (destination becomes the primary address of the in-interface / 127.0.0.1)
    "snat",
    "masquerade",
    "notrack",  # raw -j CT --notrack / -j NOTRACK / nft notrack
    "queue",  # NFQUEUE: decided by userspace -> unknown
    "vmap",  # nft verdict map: see Action.vmap
    "unknown",  # a target the model cannot follow: the engine reports unknown
)


# iptables targets that never end a packet's walk through its chain (they log, count, mark,
# rewrite a header field lbfw does not follow ...): a rule with one is a "continue". The reader
# builds such rules as "continue" and the engine treats an unresolved target of this name alike.
NON_ENDING_TARGETS = frozenset(
    (
        "LOG",
        "NFLOG",
        "ULOG",
        "TRACE",
        "CONNMARK",
        "TCPMSS",
        "CLASSIFY",
        "DSCP",
        "TOS",
        "TTL",
        "HL",
        "CHECKSUM",
        "AUDIT",
        "SET",
        "CONNSECMARK",
        "SECMARK",
        "ECN",
        "TCPOPTSTRIP",
        "IDLETIMER",
        "LED",
        "RATEEST",
        "TEE",
        "NFACCT",
        "HMARK",
        "NETMAP_LOG",
        "COUNTER",
        "SYNPROXY_LOG",
        "TPROXY_LOG",
        "CONNMARK_SAVE",
    )
)


# Every field a reader may emit in a Match that is not opaque -> what its values are (the
# module docstring's table, in full). Opaque matches keep a descriptive field of their own
# ("m.owner", "opt.icmp-type", ...) that nothing decides on.
FIELDS = {
    "ip.saddr": "(lo, hi) integer ranges of IPv4 source addresses",
    "ip.daddr": "(lo, hi) integer ranges of IPv4 destination addresses",
    "ip6.saddr": "(lo, hi) integer ranges of IPv6 source addresses",
    "ip6.daddr": "(lo, hi) integer ranges of IPv6 destination addresses",
    "meta.nfproto": '"ipv4" | "ipv6"',
    "meta.l4proto": "(lo, hi) ranges of IP protocol numbers (tcp = 6, udp = 17)",
    "th.sport": "(lo, hi) source port ranges (the rule also carries its meta.l4proto match)",
    "th.dport": "(lo, hi) destination port ranges (the rule also carries its meta.l4proto match)",
    "th.port": "(lo, hi) port ranges either the source or the destination port may be in",
    "meta.iifname": 'input interface names; a trailing "*" is a prefix wildcard',
    "meta.oifname": 'output interface names; a trailing "*" is a prefix wildcard',
    "ct.state": '"new" "established" "related" "invalid" "untracked"',
    "ct.status": '"snat" "dnat" "confirmed" "seen-reply" "assured" "expected"',
    "ct.direction": '"original" | "reply"',
    "fib.saddr.type": 'address types of the source, lower case: "local" "unicast" "broadcast" ...',
    "fib.daddr.type": 'address types of the destination, lower case: "local" "multicast" ...',
    "fib.rpf": "(exists,): True when the reverse-path lookup must find a route, False when none",
    "meta.mark": "(lo, hi) ranges of the packet mark (after applying Match.mask)",
    "tcp.flags": "((mask, comp),): true when flags & mask == comp; false for a packet that is not TCP",
    "rpfilter": "(): iptables -m rpfilter (negate: --invert); true for a packet that came in on lo",
    "recent": '((list name, command),): iptables -m recent; command "set" "rcheck" "update" "remove"',
    "icmp.type": "(lo, hi) ranges of ICMP types (iptables --icmp-type any: no icmp.type match at all)",
    "icmp.code": "(lo, hi) ranges of ICMP codes (iptables `! --icmp-type T/C`: one negated concatenation "
    "(icmp.type, icmp.code), since `!` negates type and code together)",
    "icmpv6.type": "(lo, hi) ranges of ICMPv6 types",
    "icmpv6.code": "(lo, hi) ranges of ICMPv6 codes",
    "ip.ttl": "(lo, hi) ranges of the IPv4 TTL",
    "ip6.hoplimit": "(lo, hi) ranges of the IPv6 hop limit",
    "ip.length": "(lo, hi) ranges of the layer-3 length (IP header + payload; iptables -m length, nft ip length; "
    "ip6tables -m length too: the kernel adds the 40-byte IPv6 header)",
    "ip6.length": "(lo, hi) ranges of the IPv6 payload length (nft ip6 length)",
    "meta.length": "(lo, hi) ranges of the packet length as nft meta length sees it",
    "ip.dscp": "(lo, hi) ranges of the DSCP (0-63), IPv4",
    "ip.ecn": "(lo, hi) ranges of the ECN bits (0-3), IPv4",
    "ip6.dscp": "(lo, hi) ranges of the DSCP (0-63), IPv6",
    "ip6.ecn": "(lo, hi) ranges of the ECN bits (0-3), IPv6",
    "ip.tos": "(lo, hi) ranges of the TOS byte & Match.mask (iptables -m tos; in ip6tables the traffic class)",
    "ip.fragment": "(True,): the packet is a non-first fragment (iptables -f, nft ip frag-off & 0x1fff != 0)",
    "ip.morefragments": "(True,): the IPv4 more-fragments bit is set (nft ip frag-off & 0x2000 != 0)",
    "meta.pkttype": '"host" "broadcast" "multicast" "other"; iptables also "outgoing" "loopback" (never met: '
    "xt_pkttype reports a loopback packet as host/multicast/broadcast)",
    "meta.iiftype": 'input interface types as nft names them: "loopback" "ether" ...',
    "meta.oiftype": 'output interface types as nft names them: "loopback" "ether" ...',
    "meta.iifgroup": "(lo, hi) ranges of the input device group (& Match.mask)",
    "meta.oifgroup": "(lo, hi) ranges of the output device group (& Match.mask)",
    "ct.helper": 'conntrack helper names ("ftp", ...)',
    "physdev": "((option, argument or None),): one -m physdev option; a negated option is its own Match",
    "connlimit": '(("above" | "upto", N),): iptables -m connlimit, nft ct count [over]',
    "statistic.nth": "((every, packet),): iptables statistic --mode nth, nft numgen inc mod N",
    "statistic.random": "(probability,): iptables statistic --mode random, nft numgen random mod N",
    "meta.skuid": "(lo, hi) ranges of the socket owner's uid; a name that does not resolve: values=(), opaque",
    "meta.skgid": "(lo, hi) ranges of the socket owner's gid; a name that does not resolve: values=(), opaque",
    "meta.socket": "(True,): the packet belongs to a local socket (owner --socket-exists)",
    "ct.mark": "(lo, hi) ranges of the conntrack mark (after applying Match.mask)",
    "tcp.option.mss": "(lo, hi) ranges of the TCP MSS option",
    "tcp.option": "(kind,): a TCP option of that kind is present",
    "limit": '(("limit" | "hashlimit", text),): under the rate (negate: over it); a runtime condition',
    "quota": '(("quota" | "over", N),): under the byte quota first; a runtime condition',
    "runtime": "((kind, text),): time, cpu, ...: decided only at run time, always unknown",
}


# --------------------------------------------------------------------------- where things came from


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a rule (or chain, or set) came from.

    Files: ``source`` is the path as the user gave it and ``line`` is 1-based.
    Live: ``source`` is "live:legacy", "live:iptables-nft" or "live:nftables";
    nft rules carry ``handle``, iptables rules carry ``index`` (1-based position in
    their chain, as `iptables -R CHAIN N` counts).
    """

    source: str
    line: Optional[int] = None
    handle: Optional[int] = None
    index: Optional[int] = None

    def where(self) -> str:
        """`PATH:LINE` for files, `live:backend handle N` / `#N` for the kernel."""
        if self.line is not None:
            return f"{self.source}:{self.line}"
        if self.handle is not None:
            return f"{self.source} handle {self.handle}"
        if self.index is not None:
            return f"{self.source} #{self.index}"
        return self.source


# --------------------------------------------------------------------------- matches and actions

Range = tuple[int, int]  # (lo, hi) inclusive integers


@dataclass(frozen=True, slots=True)
class Match:
    """One condition of a rule. See the module docstring for fields and values.

    ``field`` is a string, or a tuple of strings for an nft concatenation (then each
    value is a tuple with one item per field). ``negate`` inverts the whole match.
    ``set_name`` names the nft named set (or ipset) the values came from, if any.
    ``mask`` applies to meta.mark / ct.mark (value & mask compared to the ranges).
    ``opaque=True``: the engine cannot decide it; ``text`` says what it was.
    """

    field: Union[str, tuple[str, ...]]
    values: tuple[Any, ...] = ()
    negate: bool = False
    text: str = ""
    set_name: Optional[str] = None
    mask: Optional[int] = None
    opaque: bool = False


@dataclass(frozen=True, slots=True)
class VmapEntry:
    """One element of an nft verdict map: a value (shaped like Match.values items) -> action."""

    value: Any
    action: Action


@dataclass(frozen=True, slots=True)
class Action:
    """What a rule does when all its matches hold.

    kind: one of ACTION_KINDS. ``target`` is the chain for jump/goto and the
    iptables target name otherwise ("LOG", "MARK", "DOCKER", ...). ``args`` is the
    target's option text as written. For dnat/redirect, ``to_addr`` (int or None,
    family as the table) and ``to_port`` (int or None) say where the packet goes.
    For vmap: ``vmap_field`` is the key (str or tuple, like Match.field),
    ``vmap`` the entries; ``set_name`` names a named map.
    Marks (packet and conntrack marks start at 0):
    ``set_mark``: (value, mask): meta mark = (mark & ~mask) ^ value (MARK, meta mark set V).
    ``set_ctmark``: (value, mask): ct mark = (ctmark & ~mask) ^ value (CONNMARK --set-xmark /
    --set-mark, nft ct mark set V).
    ``copy_mark``: (direction, mask): "ct->meta" (CONNMARK --restore-mark, meta mark set ct mark)
    or "meta->ct" (CONNMARK --save-mark, ct mark set meta mark); mask = the bits copied:
    dst = (dst & ~mask) | (src & mask), as CONNMARK does. nft `meta mark set ct mark & M` (the
    other bits become 0) is two Actions in Rule.before: set_mark (0, 0xffffffff), then the copy.
    ``mark_unknown``: "meta" or "ct" when the statement sets that mark to a value lbfw cannot
    compute (numgen, hashes, maps ...): that mark is unknown from there on.
    """

    kind: str
    target: Optional[str] = None
    args: str = ""
    to_addr: Optional[int] = None
    to_port: Optional[int] = None
    vmap_field: Union[str, tuple[str, ...], None] = None
    vmap: tuple[VmapEntry, ...] = ()
    set_name: Optional[str] = None
    set_mark: Optional[tuple[int, int]] = None
    set_ctmark: Optional[tuple[int, int]] = None
    copy_mark: Optional[tuple[str, int]] = None
    mark_unknown: Optional[str] = None


# --------------------------------------------------------------------------- rules, chains, tables


@dataclass(slots=True)
class Rule:
    """A rule: all ``matches`` must hold, then ``action`` runs.

    ``text`` is the rule as written (the iptables-save line, or the nft statement
    line). ``comment`` is the rule's comment (iptables -m comment, nft comment).
    ``ignore`` is the set of check ids suppressed for it (``lbfw: ignore LB002``).
    ``before`` holds nft statements that run when the matches hold but before the
    verdict and that change the packet (kept for the engine as extra actions, e.g.
    ``meta mark set``): each is an Action of kind "continue".
    """

    matches: tuple[Match, ...]
    action: Action
    text: str
    origin: Origin
    comment: Optional[str] = None
    ignore: frozenset[str] = frozenset()
    before: tuple[Action, ...] = ()


class LazyRules(MutableSequence["Rule"]):
    """A chain's rules when a reader builds some of them only when first asked for.

    A kube-proxy node's 140,000 rules are mostly per-endpoint chains no loopback flow enters,
    so the iptables reader checks such lines when it reads them and builds each Rule on demand
    (``lbfw.read.iptables.deferred.DeferredRules``). To every consumer this is a list of Rules:
    ``len`` builds nothing, ``rules[i]`` builds that one rule (the same object every time:
    findings point at it), iterating builds them all. A line left unbuilt never raises when
    built (the reader proved it well-formed) and always has a target (it is never a bare rule).
    The methods below let a consumer that can skip most of a big chain do so without building it.
    """

    __slots__ = ()

    @abstractmethod
    def unbuilt_count(self) -> int:
        """How many positions are not built yet (0: every position holds its Rule)."""

    @abstractmethod
    def built_at(self, position: int) -> Optional[Rule]:
        """The Rule at ``position`` if it is built, else None; builds nothing."""

    @abstractmethod
    def index_keys(self, position: int) -> dict[str, int]:
        """For an unbuilt position: {field: value} for each positive exact single-value match the
        engine indexes (ip.saddr / ip.daddr / ip6.saddr / ip6.daddr of one address, th.dport of
        one port), in the rule's order: the keys the built rule would give."""

    @abstractmethod
    def may_name_loopback_port(self) -> bool:
        """False when no unbuilt line names a port a loopback packet (127.0.0.0/8, ::1) can meet;
        True: build the rules and look."""

    @abstractmethod
    def unbuilt_may_carry(self, fields: frozenset[str]) -> bool:
        """False when no unbuilt line can carry a match on any of ``fields`` (the reader defers only
        lines of a proven plain shape), so a consumer looking for such matches reads built_rules()."""

    @abstractmethod
    def built_rules(self) -> list[Rule]:
        """The Rules built so far, in order, without building the others."""


@dataclass(slots=True)
class Chain:
    """A chain. Base chains have ``hook``, ``priority``, ``type`` and ``policy``
    ("accept" or "drop"); user chains have them all None. ``rules`` is a list of Rules, or a
    ``LazyRules`` (which reads like one) when a reader left lines to build later."""

    name: str
    rules: Union[list[Rule], LazyRules] = field(default_factory=list)
    hook: Optional[str] = None
    priority: Optional[int] = None
    type: Optional[str] = None
    policy: Optional[str] = None
    origin: Optional[Origin] = None
    handle: Optional[int] = None
    # check ids a `# lbfw: ignore ID` comment at the policy line (or the line above it) suppresses
    # for findings about the policy itself
    policy_ignore: frozenset[str] = frozenset()

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def rule_count(self) -> int:
        """len(self.rules) (building nothing)."""
        return len(self.rules)


@dataclass(slots=True)
class NamedSet:
    """An nft named set or map (or an ipset seen in a rule, with no elements known).

    ``key`` is the field (or tuple of fields) its elements are shaped for;
    ``elements`` are shaped like Match.values items; for a verdict map they are
    VmapEntry. ``flags`` e.g. {"interval"}. ``known=False`` when the contents are
    not available (ipset, or a set filled at run time)."""

    name: str
    key: Union[str, tuple[str, ...], None]
    elements: tuple[Any, ...] = ()
    flags: frozenset[str] = frozenset()
    is_map: bool = False
    map_type: Optional[str] = None  # "verdict", "ipv4_addr", ...
    known: bool = True
    origin: Optional[Origin] = None


@dataclass(slots=True)
class Table:
    """A table of one family ("ip", "ip6", "inet", "arp", "bridge", "netdev").

    ``backend`` is legacy | iptables-nft | nftables | file; ``syntax`` says how it
    is written (iptables or nft). ``source`` is the path as given or "live:<backend>".
    """

    family: str
    name: str
    backend: str
    syntax: str
    source: str
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NamedSet] = field(default_factory=dict)
    origin: Optional[Origin] = None
    handle: Optional[int] = None


@dataclass(frozen=True, slots=True)
class ManagerSetting:
    """A line of a firewall manager's own configuration that matters for loopback: a narrow
    127.0.0.1, or a switch such as Docker's `"userland-proxy": false`, and the exact change."""

    path: str
    line: int
    text: str  # the line as written (stripped)
    change: str  # what to write instead, e.g. "`127.0.0.0/8` in place of `127.0.0.1`"
    address: Optional[str] = None  # the narrow address the line names, to match it to a rule


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """What lbfw read of one manager's configuration on the live host (managers/*.py parse it)."""

    manager: str  # an owner name of checks/owners.py: docker, kube-proxy, fw4, csf ...
    looked_at: tuple[str, ...]  # every file lbfw read or tried, in order
    settings: tuple[ManagerSetting, ...] = ()
    apply: str = ""  # what makes the manager take the change, as shown: "`csf -r`"


@dataclass(slots=True)
class HostFacts:
    """What the live host says about loopback (None where not read)."""

    lo_addrs: tuple[str, ...] = ()  # ("127.0.0.1/8", "::1/128")
    local_127_route: Optional[bool] = None
    route_localnet: dict[str, int] = field(default_factory=dict)  # {"all": 0, "default": 0, "eth0": 1}
    interfaces: tuple[str, ...] = ()
    fail2ban_jails: dict[str, str] = field(default_factory=dict)  # {path: text} of fail2ban's jail files
    fail2ban_running: bool = False  # its server's socket is there
    # Docker, kube-proxy, fw4, CSF, Shorewall, NixOS, Proxmox: {owner: what their files say}
    managers: dict[str, ManagerConfig] = field(default_factory=dict)
    firewalld_files: dict[str, str] = field(default_factory=dict)  # {path: text}: direct.xml, zones/*.xml


@dataclass(slots=True)
class SourceInfo:
    """What one source contributed: for `lbfw audit --format json`'s listing."""

    source: str  # path as given, "-", or "live:<backend>"
    format: str  # iptables-save | ip6tables-save | nft | nft-json | live
    tables: int = 0
    chains: int = 0
    rules: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class Ruleset:
    """One host's ruleset: every table from every source, as the kernel would hold them."""

    tables: list[Table] = field(default_factory=list)
    sources: list[SourceInfo] = field(default_factory=list)
    host: Optional[HostFacts] = None

    def rule_count(self) -> int:
        return sum(c.rule_count for t in self.tables for c in t.chains.values())

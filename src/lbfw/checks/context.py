"""What every check sees, and the small pure helpers they share.

A check gets a `CheckContext`: the ruleset, the engine's results for the default flows,
and precomputed facts about the rules (which hooks each chain is reachable from). The
helpers here answer questions about one rule in microseconds: does an address match
name 127.0.0.1 without the rest of 127.0.0.0/8? which interface does it name? does it
carry an owner match? They never touch the system.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Protocol

from ..model import Chain, Match, Origin, Rule, Ruleset, Table
from ..results import BLOCKED, UNKNOWN, Finding, Flow, FlowResult
from .fixes import CheckFix
from .owners import advice as owner_advice
from .owners import owner_of
from .reach import JumpGraph

if TYPE_CHECKING:
    from ..analyze.engine import Engine

LOOP4_LO = 0x7F000000
LOOP4_HI = 0x7FFFFFFF
LOCALHOST4 = 0x7F000001

# Hooks loopback traffic crosses (locally generated: output, postrouting, then prerouting, input).
LOOPBACK_HOOKS = ("output", "postrouting", "prerouting", "input")
INBOUND_HOOKS = ("prerouting", "input")

ADDR_FIELDS = ("ip.saddr", "ip.daddr")
PORT_FIELDS = ("th.dport", "th.sport")


def ip4(value: int) -> str:
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


@dataclass(slots=True)
class RuleRef:
    """A rule with where it lives: table, chain, position, and the hooks that reach it."""

    table: Table
    chain: Chain
    rule: Rule
    position: int  # 1-based index in its chain
    hooks: frozenset[str]  # hooks whose base chains reach this chain


@dataclass
class CheckContext:
    """Everything a check may read. Built once per audit by `run_checks`."""

    ruleset: Ruleset
    engine: Optional[Engine] = None
    results: list[FlowResult] = field(default_factory=list)
    _reach: dict[int, dict[int, frozenset[str]]] = field(default_factory=dict)  # id(table) -> {id(chain): hooks}
    _graphs: dict[int, JumpGraph] = field(default_factory=dict)  # id(table) -> JumpGraph

    def graph(self, table: Table) -> JumpGraph:
        """The table's jump graph, built the first time a check asks (nat tables, the bulk of a
        kube-proxy host, are never asked)."""
        graph = self._graphs.get(id(table))
        if graph is None:
            graph = self._graphs[id(table)] = JumpGraph(table)
        return graph

    def _table_reach(self, table: Table) -> dict[int, frozenset[str]]:
        reach = self._reach.get(id(table))
        if reach is None:
            reach = self._reach[id(table)] = self.graph(table).chain_hooks()
        return reach

    def chains_below(self, table: Table, name: str) -> list[Chain]:
        """Chain ``name`` of ``table`` and every chain it jumps or goes to; [] when there is none."""
        chain = table.chains.get(name)
        return self.graph(table).below(chain) if chain is not None else []

    # ---------------------------------------------------------------- rules

    def rules(
        self, families: Optional[Collection[str]] = None, hooks: Optional[frozenset[str]] = None, skip_nat: bool = False
    ) -> Iterator[RuleRef]:
        """Every rule in a chain that some base chain reaches (dead chains are skipped).

        Filters applied per table and chain, before any rule is looked at (big rulesets are
        mostly nat): ``families`` (e.g. ("ip", "inet")), ``hooks`` (a chain is kept when it is
        reachable from one of them), ``skip_nat`` (nat tables and chains: their accepts do not
        filter)."""
        for table in self.ruleset.tables:
            if families is not None and table.family not in families:
                continue
            if skip_nat and table.name == "nat":
                continue
            table_reach = self._table_reach(table)
            for chain in table.chains.values():
                if skip_nat and chain.type == "nat":
                    continue
                reach = table_reach.get(id(chain))
                if not reach:
                    continue
                if hooks is not None and not reach & hooks:
                    continue
                for pos, rule in enumerate(chain.rules, 1):
                    yield RuleRef(table, chain, rule, pos, reach)

    def hooks_of(self, table: Table, chain: Chain) -> frozenset[str]:
        return self._table_reach(table).get(id(chain), frozenset())

    def find_chain(
        self,
        family: Optional[str],
        table: str,
        chain: str,
        rule: Optional[Rule] = None,
        origin: Optional[Origin] = None,
    ) -> tuple[Optional[Table], Optional[Chain]]:
        """The (table, chain) a step names. Several sources may each hold a `filter` table, so
        the one holding ``rule`` (by identity), or read from ``origin``'s source, wins."""
        candidates: list[tuple[Table, Chain]] = []
        for t in self.ruleset.tables:
            c = t.chains.get(chain)
            if t.name == table and c is not None:
                candidates.append((t, c))
        if not candidates:
            return None, None
        if rule is not None:
            for t, c in candidates:
                if any(r is rule for r in c.rules):
                    return t, c
        source = getattr(origin, "source", None)
        exact = [(t, c) for t, c in candidates if family is None or t.family == family]
        for pool in (exact, candidates):
            for t, c in pool:
                if source is None or t.source == source:
                    return t, c
        return (exact or candidates)[0]

    # ---------------------------------------------------------------- flows

    def not_delivered(self, family: str) -> list[FlowResult]:
        """FlowResults of ``family`` ("ip" or "ip6") that are blocked or unknown (a redirected flow is
        LB007's)."""
        return [r for r in self.results if r.verdict in (BLOCKED, UNKNOWN) and flow_family(r.flow) == family]

    def blocked(self, family: str) -> list[FlowResult]:
        return [r for r in self.results if r.verdict == BLOCKED and flow_family(r.flow) == family]

    def unknown(self, family: str) -> list[FlowResult]:
        return [r for r in self.results if r.verdict == UNKNOWN and flow_family(r.flow) == family]


class Check(Protocol):
    """What every check module (lb00N_*.py) declares; the modules themselves satisfy it."""

    ID: str
    NAME: str
    SEVERITY: str
    SUMMARY: str
    FIX: CheckFix
    DOC: str

    def check(self, ctx: CheckContext) -> list[Finding]: ...


def flow_family(flow: Flow) -> str:
    return "ip6" if ":" in flow.server else "ip"


# --------------------------------------------------------------------------- addresses


def as_range(item: object) -> Optional[tuple[int, int]]:
    if isinstance(item, int):
        return (item, item)
    if isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, int) for x in item):
        return item
    return None


def match_ranges(match: Match, table: Optional[Table], want: str) -> Optional[list[tuple[int, int]]]:
    """The (lo, hi) ranges ``match`` compares field ``want`` against, or None when it does not
    look at that field (or its values are unknown, e.g. an ipset)."""
    fld = match.field
    values = match.values
    if not values and match.set_name and table is not None:
        named = table.sets.get(match.set_name.lstrip("@"))
        if named is None or not named.known:
            return None
        values = named.elements
    if isinstance(fld, tuple):
        if want not in fld:
            return None
        i = fld.index(want)
        out: list[tuple[int, int]] = []
        for v in values:
            if isinstance(v, tuple) and len(v) == len(fld):
                r = as_range(v[i])
                if r is not None:
                    out.append(r)
        return out
    if fld != want:
        return None
    return [r for r in (as_range(v) for v in values) if r is not None]


def loopback_part(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``ranges`` inside 127.0.0.0/8, merged and sorted."""
    parts = sorted((max(lo, LOOP4_LO), min(hi, LOOP4_HI)) for lo, hi in ranges if hi >= LOOP4_LO and lo <= LOOP4_HI)
    merged: list[tuple[int, int]] = []
    for lo, hi in parts:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def narrow_loopback(ranges: Iterable[tuple[int, int]]) -> Optional[list[tuple[int, int]]]:
    """The loopback part when it names 127.0.0.1 but not the whole of 127.0.0.0/8, else None."""
    part = loopback_part(ranges)
    if not part:
        return None
    if part == [(LOOP4_LO, LOOP4_HI)]:
        return None
    if not any(lo <= LOCALHOST4 <= hi for lo, hi in part):
        return None
    return part


def covers_all_loopback(ranges: Iterable[tuple[int, int]]) -> bool:
    return loopback_part(ranges) == [(LOOP4_LO, LOOP4_HI)]


def describe_part(part: Iterable[tuple[int, int]]) -> str:
    """`127.0.0.1` or `127.0.0.0-127.0.0.255` for a loopback part."""
    texts = [ip4(lo) if lo == hi else f"{ip4(lo)}-{ip4(hi)}" for lo, hi in part]
    return ", ".join(texts)


@dataclass(slots=True)
class NarrowAddr:
    field: str  # ip.saddr | ip.daddr
    part: list[tuple[int, int]]  # the loopback ranges it covers
    via: str  # "" | "set @name" | "verdict map"


def narrow_addr_matches(rule: Rule, table: Optional[Table], negated: bool = False) -> list[NarrowAddr]:
    """Address matches of ``rule`` that cover 127.0.0.1 without the rest of 127/8: the
    non-negated ones, or with ``negated`` the negated ones (`! -s 127.0.0.1`), which spare
    127.0.0.1 alone: on a drop rule they mean "only 127.0.0.1 may", the same mistake as a
    narrow accept."""
    found: list[NarrowAddr] = []
    for m in rule.matches:
        if m.negate != negated or m.opaque:
            continue
        for fld in ADDR_FIELDS:
            ranges = match_ranges(m, table, fld)
            if not ranges:
                continue
            part = narrow_loopback(ranges)
            if part is not None:
                via = f"set @{m.set_name.lstrip('@')}" if m.set_name else ""
                found.append(NarrowAddr(fld, part, via))
    return found


def negated_narrow_addr_matches(rule: Rule, table: Optional[Table]) -> list[NarrowAddr]:
    """Negated address matches that spare 127.0.0.1 alone (see narrow_addr_matches)."""
    return narrow_addr_matches(rule, table, negated=True)


def full_loopback_addr(rule: Rule, table: Optional[Table]) -> bool:
    """True when a non-negated address match of ``rule`` covers all of 127.0.0.0/8."""
    for m in rule.matches:
        if m.negate or m.opaque:
            continue
        for fld in ADDR_FIELDS:
            ranges = match_ranges(m, table, fld)
            if ranges and covers_all_loopback(ranges):
                return True
    return False


# --------------------------------------------------------------------------- interfaces, ports, owners


def _is_lo(name: str) -> bool:
    if name == "lo":
        return True
    # wildcards: "lo*" (iptables lo+), "l*", "*" all include lo
    return name.endswith("*") and "lo".startswith(name[:-1])


IFACE_FIELDS = ("meta.iifname", "meta.oifname", "meta.iif", "meta.oif")


def iface_class(rule: Rule) -> Optional[str]:
    """ "lo" when the rule requires the loopback interface, "other" when it excludes it
    (``! -i lo``, ``iifname != "lo"``, ``-i eth0``), None when it names no interface."""
    result = None
    for m in rule.matches:
        if m.field not in IFACE_FIELDS:
            continue
        names = [v for v in m.values if isinstance(v, str)]
        includes_lo = any(_is_lo(n) for n in names)
        if m.negate:
            if includes_lo:
                return "other"
            continue
        if not includes_lo:
            return "other"
        result = "lo"
    return result


def has_port_match(rule: Rule) -> bool:
    for m in rule.matches:
        fld = m.field
        if isinstance(fld, tuple):
            if any(f in PORT_FIELDS for f in fld):
                return True
        elif fld in PORT_FIELDS or m.opaque and ("dport" in m.text or "sport" in m.text):
            return True
    return False


def owner_match(rule: Rule) -> Optional[str]:
    """The text of an owner match (iptables ``-m owner``, nft ``meta skuid``), if any."""
    for m in rule.matches:
        fld = m.field if isinstance(m.field, str) else ""
        if fld.startswith(("meta.skuid", "meta.skgid", "owner")) or "owner" in (m.text or ""):
            return m.text or str(fld)
    if "--uid-owner" in rule.text or "--gid-owner" in rule.text or "skuid" in rule.text:
        return "owner match"
    return None


# --------------------------------------------------------------------------- findings


def where_fields(
    rule: Optional[Rule], table: Optional[Table], chain_name: Optional[str], origin: Optional[Origin] = None
) -> dict[str, Any]:
    """Location keyword arguments for a Finding from a rule (or a chain's origin)."""
    o = rule.origin if rule is not None else origin
    return {
        "source": o.source if o is not None else (table.source if table is not None else None),
        "line": o.line if o is not None else None,
        "handle": o.handle if o is not None else None,
        "index": o.index if o is not None else None,
        "table": table.name if table is not None else None,
        "chain": chain_name,
        "family": table.family if table is not None else None,
        "backend": table.backend if table is not None else None,
    }


def make_finding(
    check: Check,
    message: str,
    ref: Optional[RuleRef] = None,
    *,
    severity: Optional[str] = None,
    flows: Iterable[Flow] = (),
    table: Optional[Table] = None,
    chain: Optional[Chain] = None,
    origin: Optional[Origin] = None,
    owner: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
    advise_owner: bool = True,
    deliberate: Optional[str] = None,
) -> Finding:
    """A Finding for ``check`` (a check module) at ``ref`` (or a chain policy / host fact).
    A rule a firewall manager owns is named as such; ``advise_owner`` adds that its
    configuration, not the rule, is what must change. ``deliberate`` is the evidence (an owner
    match) that makes the rule look like a policy rather than a mistake."""
    rule = ref.rule if ref is not None else None
    table = ref.table if ref is not None else table
    chain = ref.chain if ref is not None else chain
    if owner is None and table is not None and chain is not None:
        owner = owner_of(table, chain, rule)
    if owner is not None and advise_owner:
        message += " " + owner_advice(owner)
    where_origin = origin
    if where_origin is None and chain is not None and rule is None:
        where_origin = chain.origin
    return Finding(
        check=check.ID,
        severity=severity or check.SEVERITY,
        message=message,
        rule=rule,
        flows=list(flows),
        owner=owner,
        extra=dict(extra or {}),
        deliberate=deliberate,
        **where_fields(rule, table, chain.name if chain is not None else None, where_origin),
    )


def flows_summary(results: Iterable[FlowResult], limit: int = 4) -> str:
    """The flows, grouped by client -> server: `127.0.0.2 -> 127.0.0.1 (tcp/22, udp/53),
    127.0.0.1 -> 127.0.0.53 (12 ports) and 2 more` (default-source clients shown as 127.0.0.1)."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for r in results:
        client = r.flow.client or r.client_addr or ("::1" if ":" in r.flow.server else "127.0.0.1")
        server = f"[{r.flow.server}]" if ":" in r.flow.server else r.flow.server
        ports = pairs.setdefault((client, server), [])
        port = f"{r.flow.proto}/{r.flow.port}"
        if port not in ports:
            ports.append(port)
    texts = []
    for (client, server), ports in list(pairs.items())[:limit]:
        detail = ", ".join(ports) if len(ports) <= 3 else f"{len(ports)} ports"
        texts.append(f"{client} -> {server} ({detail})")
    text = ", ".join(texts)
    if len(pairs) > limit:
        text += f" and {len(pairs) - limit} more"
    return text

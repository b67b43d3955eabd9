"""The before/after proof of a fix: the rules as they are and as fixed, each loaded into its own
private network namespace, the same loopback flows sent through both with real traffic.

`lbfw fix --verify` reports it; `lbfw fix --apply` refuses to touch the kernel when a flow
delivered before would be blocked after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, NamedTuple, Optional

from ..errors import UsageError

if TYPE_CHECKING:
    from ..model import Ruleset
    from ..results import Flow
    from .netns import Namespace

# A loopback handshake takes microseconds: half a second per flow is ample, and blocked flows
# (which wait it out, in parallel batches) keep the proof short.
PROBE_TIMEOUT = 0.5


class Load(NamedTuple):
    """One ruleset text to load: ``kind`` "nft" (``nft -f``) or "iptables" (``*-restore`` of
    ``family`` "ip"|"ip6" into ``backend`` "legacy"|"nft"); ``source`` names it in errors."""

    kind: str
    family: Optional[str]
    backend: Optional[str]
    text: str
    source: str


def interfaces_named(ruleset: Ruleset) -> set[str]:
    """The interfaces the rules name by `iifname`/`oifname` (but lo and wildcards): the
    namespaces need them for the rules to load."""
    names: set[str] = set()
    for table in ruleset.tables:
        for chain in table.chains.values():
            for rule in chain.rules:
                for match in rule.matches:
                    if match.field in ("meta.iifname", "meta.oifname"):
                        names.update(v for v in match.values if isinstance(v, str) and not v.endswith("*"))
    names.discard("lo")
    return names


def file_loads(ruleset: Ruleset, sources: Sequence[str], texts: dict[str, str]) -> list[Load]:
    """A Load per file source, ``texts[source]`` in the format the reader found for it (iptables
    dumps into the legacy tables)."""
    formats = {info.source: info.format for info in ruleset.sources}
    loads = []
    for source in sources:
        fmt = formats.get(source)
        text = texts[source]
        if fmt == "nft":
            loads.append(Load("nft", None, None, text, source))
        elif fmt in ("iptables-save", "ip6tables-save"):
            loads.append(Load("iptables", "ip6" if fmt == "ip6tables-save" else "ip", "legacy", text, source))
        else:
            raise UsageError(f"--verify cannot load a {fmt} source into the kernel", path=source)
    return loads


def _load(ns: Namespace, loads: Sequence[Load], interfaces: set[str]) -> None:
    if interfaces:
        ns.add_interfaces(sorted(interfaces))
    for load in loads:
        if load.kind == "nft":
            ns.load_nft(load.text, source=load.source)
        else:
            assert load.family is not None and load.backend is not None  # every iptables Load has both
            ns.load_iptables(load.text, family=load.family, backend=load.backend, source=load.source)


def observe_before_after(
    before_loads: Sequence[Load], after_loads: Sequence[Load], flows: Sequence[Flow], interfaces: set[str]
) -> tuple[list[str], list[str]]:
    """Real traffic for ``flows`` with each set of rules loaded in its own private namespace."""
    from .netns import Namespace
    from .traffic import observe

    with Namespace() as ns:
        _load(ns, before_loads, interfaces)
        before = observe(ns, flows, timeout=PROBE_TIMEOUT)
    with Namespace() as ns:
        _load(ns, after_loads, interfaces)
        after = observe(ns, flows, timeout=PROBE_TIMEOUT)
    return before, after


def report_flows(
    flows: Sequence[Flow], before: Sequence[str], after: Sequence[str], err: IO[str]
) -> tuple[list[Flow], list[Flow]]:
    """Print the flows the fix repairs and any it breaks; returns (repaired, broken)."""
    repaired = [f for f, b, a in zip(flows, before, after) if b != "delivered" and a == "delivered"]
    broken = [f for f, b, a in zip(flows, before, after) if b == "delivered" and a != "delivered"]
    still = [f for f, b, a in zip(flows, before, after) if b != "delivered" and a != "delivered"]
    err.write(
        f"observed with real traffic in a private namespace: {len(flows)} flows, "
        f"{len(repaired)} repaired by the fix, {len(broken)} broken by it, {len(still)} still blocked\n"
    )
    for flow in repaired:
        err.write(f"  repaired: {flow.label()} (before: blocked, after: delivered)\n")
    for flow in broken:
        err.write(f"  BROKEN:   {flow.label()} (before: delivered, after: blocked)\n")
    for flow in still:
        err.write(f"  still blocked: {flow.label()}\n")
    if still:
        err.write("  (something else blocks those: this fix neither causes nor repairs it; see `lbfw audit`)\n")
    return repaired, broken


def prove(
    ruleset: Ruleset, before_loads: Sequence[Load], after_loads: Sequence[Load], err: IO[str]
) -> tuple[list[Flow], list[Flow]]:
    """The default loopback flows of ``ruleset`` observed before and after the fix, reported on
    ``err``; (repaired, broken)."""
    from ..analyze.flows import default_flows

    flows = default_flows(ruleset)
    before, after = observe_before_after(before_loads, after_loads, flows, interfaces_named(ruleset))
    return report_flows(flows, before, after, err)

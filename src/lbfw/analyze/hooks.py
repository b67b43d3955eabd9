"""What runs on each netfilter hook, and in which order.

On each hook every base chain of every table (both backends, family ip/ip6 plus inet) runs in
priority order. Two fixed points sit among them (measured; DOMAIN.md): conntrack attaches at
-200 on PREROUTING and OUTPUT, and the kernel's nat core runs all nat base chains of a hook
together at its own priority (-100 where the destination is rewritten, +100 where the source is).
"""

from __future__ import annotations

from typing import Any, Union

from ..model import IPTABLES_PRIORITY, Chain, Ruleset, Table

LOOPBACK_PATH = ("output", "postrouting", "prerouting", "input")
CONNTRACK_PRIO = -200
NAT_PRIO = {"prerouting": -100, "output": -100, "postrouting": 100, "input": 100}
DST_MANIP_HOOKS = ("prerouting", "output")

# (kind, priority, payload): ("chain", prio, (table, chain)), ("ct", -200, None), ("nat", prio, [(table, chain)])
HookItem = tuple[str, int, Any]


class HookOrder:
    """The items each hook runs for a ruleset, worked out once per (hook, family)."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self._items: dict[tuple[str, str], list[HookItem]] = {}

    def items(self, hook: str, family: str) -> list[HookItem]:
        """What runs on ``hook`` for ``family``, in order, as (kind, priority, payload):
        ("chain", prio, (table, chain)) for a base chain, ("ct", -200, None) for the conntrack
        point and ("nat", prio, [(table, chain), ...]) for the nat point (all nat base chains of
        the hook, run together as the kernel's nat core does, at its fixed priority)."""
        key = (hook, family)
        items = self._items.get(key)
        if items is not None:
            return items
        entries: list[tuple[int, int, int, str, Union[None, tuple[Table, Chain], list[tuple[Table, Chain]]]]] = []
        nat_chains: list[tuple[int, int, Table, Chain]] = []
        order = 0
        for table in self.ruleset.tables:
            if table.family not in (family, "inet"):
                continue
            for chain in table.chains.values():
                if chain.hook != hook:
                    continue
                order += 1
                prio = priority(table, chain, hook)
                if is_nat(table, chain):
                    nat_chains.append((prio, order, table, chain))
                else:
                    entries.append((prio, 1, order, "chain", (table, chain)))
        if hook in DST_MANIP_HOOKS:
            entries.append((CONNTRACK_PRIO, 0, 0, "ct", None))
        if hook in NAT_PRIO:
            nat_chains.sort(key=lambda e: (e[0], e[1]))
            entries.append((NAT_PRIO[hook], 0, 1, "nat", [(t, c) for _, _, t, c in nat_chains]))
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        items = [(kind, prio, payload) for prio, _, _, kind, payload in entries]
        self._items[key] = items
        return items


def priority(table: Table, chain: Chain, hook: str) -> int:
    """A base chain's priority: nft's own, or the one iptables registers its table at."""
    if chain.priority is not None:
        return int(chain.priority)
    prio = IPTABLES_PRIORITY.get(table.name, 0)
    if isinstance(prio, dict):
        return prio.get(hook, 0)
    return prio


def is_nat(table: Table, chain: Chain) -> bool:
    """Is this base chain run by the nat core (nft `type nat`, iptables' nat table)?"""
    if chain.type is not None:
        return chain.type == "nat"
    return table.syntax == "iptables" and table.name == "nat"

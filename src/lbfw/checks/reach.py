"""Chain reachability: which chains a rule can send a packet to, and which hooks reach each chain.

The one home of the jump graph (jump, goto and verdict-map edges inside one table) for the
checks (`CheckContext.rules` skips dead chains; LB002 asks whether a jump leads to an accept)
and the fix planner (the direction, in or out, a rewritten chain is reached from). Pure.
"""

from __future__ import annotations

from ..model import Chain, Rule, Table


def jump_targets(rule: Rule) -> list[str]:
    """Names of the chains ``rule`` can jump or goto, including its verdict-map entries."""
    action = rule.action
    out = []
    if action.kind in ("jump", "goto") and action.target:
        out.append(action.target)
    elif action.kind == "vmap":
        for entry in action.vmap:
            sub = getattr(entry, "action", None)
            if sub is not None and sub.kind in ("jump", "goto") and sub.target:
                out.append(sub.target)
    return out


class JumpGraph:
    """The jump graph of one table, built in one pass over its rules; the walks then follow
    chains, not rules, so every question costs the size of the graph, not of the ruleset."""

    def __init__(self, table: Table):
        self.table = table
        self.edges: dict[str, list[Chain]] = {}
        for chain in table.chains.values():
            targets: set[str] = set()
            for rule in chain.rules:
                kind = rule.action.kind
                if kind == "jump" or kind == "goto" or kind == "vmap":
                    targets.update(jump_targets(rule))
            self.edges[chain.name] = [table.chains[t] for t in targets if t in table.chains]

    def below(self, start: Chain) -> list[Chain]:
        """``start`` and every chain it leads to, each once (cycles end the walk)."""
        stack = [start]
        seen = {id(start)}
        out = []
        while stack:
            current = stack.pop()
            out.append(current)
            for nxt in self.edges.get(current.name, ()):
                if id(nxt) not in seen:
                    seen.add(id(nxt))
                    stack.append(nxt)
        return out

    def chain_hooks(self) -> dict[int, frozenset[str]]:
        """id(chain) -> the hooks whose base chains reach it (chains no hook reaches are absent)."""
        reach: dict[int, set[str]] = {}
        for chain in self.table.chains.values():
            if chain.hook is None:
                continue
            for below in self.below(chain):
                reach.setdefault(id(below), set()).add(chain.hook)
        return {k: frozenset(v) for k, v in reach.items()}


def chain_hooks(table: Table) -> dict[int, frozenset[str]]:
    """id(chain) -> frozenset of the hooks whose base chains reach it, for one table."""
    return JumpGraph(table).chain_hooks()

"""Rules compiled for the walk: each rule's matches become three-valued predicates, each chain
gets an index of its exact keys, and equal matches compile once.

Compilation is lazy: a chain is compiled when a packet first enters it, and a rule when a packet
first reaches it (the chain index lets a packet skip most of a 10,000-rule kube-proxy chain).
Single matches are compiled by `matchers.compile_match`; this module decides what a ruleset as a
whole adds (the `-m recent` lists some rule fills).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, Optional

from ..model import Chain, LazyRules, Match, Rule, Ruleset, Table
from .fields import OWNER_FIELDS, UNSHARED_FIELDS
from .matchers import PORT_PROTOS, Pred, compile_match
from .state import Pkt

CompiledMatch = tuple[Pred, str]  # a match's predicate and the text naming it

# --------------------------------------------------------------------------- compiled rules


class _CRule:
    """One rule of a compiled chain: its predicates (None until first reached) and action."""

    __slots__ = ("preds", "action", "rule", "index")

    def __init__(self, preds: Optional[tuple[CompiledMatch, ...]], action: Any, rule: Any, index: int) -> None:
        self.preds = preds
        # An unbuilt rule holds no action and its chain in ``rule`` until compile_rule builds it: Any,
        # since the engine reads both only after compile_rule (no check on the hot path).
        self.action = action
        self.rule = rule
        self.index = index


class _Block:
    """Consecutive rules that each name one exact value of the same field (kube-proxy's
    `-d 10.96.0.10/32 -p tcp --dport 53 -j KUBE-SVC-...` runs): a dict finds the few rules
    whose value equals the packet's, the others are certainly false and are skipped."""

    __slots__ = ("attr", "family", "ports", "start", "end", "where")

    def __init__(
        self, attr: str, family: Optional[str], ports: bool, start: int, end: int, where: dict[int, list[int]]
    ) -> None:
        self.attr = attr
        self.family = family
        self.ports = ports
        self.start = start
        self.end = end
        self.where = where

    def next_index(self, pkt: Pkt, i: int) -> int:
        """The next rule position >= i worth evaluating (self.end: none in this block)."""
        if self.family is not None and pkt.family != self.family:
            return self.end
        if self.ports and pkt.l4proto[0] not in PORT_PROTOS:
            return self.end
        lo, hi = getattr(pkt, self.attr)
        if lo != hi:
            return i
        positions = self.where.get(lo)
        if not positions:
            return self.end
        k = bisect_left(positions, i)
        return positions[k] if k < len(positions) else self.end


_INDEXABLE: dict[str, tuple[str, Optional[str], bool]] = {
    "ip.daddr": ("daddr", "ip", False),
    "ip6.daddr": ("daddr", "ip6", False),
    "ip.saddr": ("saddr", "ip", False),
    "ip6.saddr": ("saddr", "ip6", False),
    "th.dport": ("dport", None, True),
}
MIN_BLOCK = 8


class _CChain:
    """A chain's compiled rules and its index (``blocks[i]``: the block position i lies in)."""

    __slots__ = ("name", "chain", "rules", "blocks")

    def __init__(self, name: str, chain: Chain, rules: list[_CRule], blocks: Optional[list[Optional[_Block]]]) -> None:
        self.name = name
        self.chain = chain
        self.rules = rules
        self.blocks = blocks


def _exact_keys(rule: Rule) -> dict[str, int]:
    keys = {}
    for m in rule.matches:
        if m.opaque or m.negate or not isinstance(m.field, str) or m.field not in _INDEXABLE:
            continue
        if len(m.values) != 1:
            continue
        v = m.values[0]
        lo, hi = v if isinstance(v, tuple) else (v, v)
        if lo == hi:
            keys[m.field] = int(lo)
    return keys


def _build_blocks(chain_rules: Sequence[Rule]) -> Optional[list[Optional[_Block]]]:
    if len(chain_rules) < MIN_BLOCK:
        return None
    return _blocks_of([_exact_keys(r) for r in chain_rules])


def _blocks_of(keys: list[dict[str, int]]) -> Optional[list[Optional[_Block]]]:
    n = len(keys)
    if n < MIN_BLOCK:
        return None
    blocks: list[Optional[_Block]] = [None] * n
    found = False
    i = 0
    while i < n:
        best_field: Optional[str] = None
        best_end = i
        for f in keys[i]:
            j = i + 1
            while j < n and f in keys[j]:
                j += 1
            if j > best_end:
                best_field, best_end = f, j
        if best_field is not None and best_end - i >= MIN_BLOCK:
            where: dict[int, list[int]] = {}
            for k in range(i, best_end):
                where.setdefault(keys[k][best_field], []).append(k)
            attr, fam, ports = _INDEXABLE[best_field]
            block = _Block(attr, fam, ports, i, best_end, where)
            for k in range(i, best_end):
                blocks[k] = block
            found = True
            i = best_end
        else:
            i += 1
    return blocks if found else None


class Compiler:
    """The compiled chains and matches of one ruleset (one per Engine)."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self._compiled: dict[int, _CChain] = {}
        # equal matches (`-p tcp` a thousand times) compile once
        self._match_cache: dict[object, CompiledMatch] = {}
        self._recent_lists: Optional[frozenset[str]] = None
        self.owner_texts: set[str] = set()  # texts of the owner matches compiled so far (users.py reads them)

    def chain(self, table: Table, chain: Chain) -> _CChain:
        """The compiled form of ``chain`` (built on first use; its rules compile when first reached)."""
        key = id(chain)
        cc = self._compiled.get(key)
        if cc is None:
            # Rules are compiled when first evaluated: the chain index skips most of a big chain.
            entries = chain.rules
            if isinstance(entries, LazyRules) and entries.unbuilt_count():
                # Lines the reader left unbuilt (kube-proxy's 10,000-rule KUBE-SERVICES) are
                # indexed from their text and built only when a packet reaches them: such a
                # _CRule holds the chain in ``rule`` and no action until compile_rule.
                built = [entries.built_at(idx) for idx in range(len(entries))]
                rules = [
                    _CRule(None, r.action, r, idx) if r is not None else _CRule(None, None, chain, idx)
                    for idx, r in enumerate(built)
                ]
                cc = _CChain(
                    chain.name,
                    chain,
                    rules,
                    _blocks_of(
                        [_exact_keys(r) if r is not None else entries.index_keys(idx) for idx, r in enumerate(built)]
                    ),
                )
            else:
                rules = [_CRule(None, rule.action, rule, idx) for idx, rule in enumerate(entries)]
                cc = _CChain(chain.name, chain, rules, _build_blocks(entries))
            self._compiled[key] = cc
        return cc

    def compile_rule(self, table: Table, cr: _CRule) -> tuple[CompiledMatch, ...]:
        """The predicates of one rule, compiled now (``cr.preds`` holds them afterwards)."""
        if cr.action is None:  # unbuilt: cr.rule is its chain (see chain())
            rule = cr.rule.rules[cr.index]
            cr.rule = rule
            cr.action = rule.action
        cache = self._match_cache
        sets = table.sets
        preds = []
        m: Match
        for m in cr.rule.matches:
            key: object = (m, id(sets)) if m.set_name else m
            try:
                compiled = cache.get(key) if m.field not in UNSHARED_FIELDS else None
            except TypeError:  # an unhashable value shape: compile without the cache
                compiled = None
                key = None
            if compiled is None:
                compiled = compile_match(m, sets, self.recent_lists() if m.field == "recent" else frozenset())
                if key is not None and m.field not in UNSHARED_FIELDS:
                    cache[key] = compiled
                if m.field in OWNER_FIELDS:
                    self.owner_texts.add(compiled[1])
            preds.append(compiled)
        compiled_preds = tuple(preds)
        cr.preds = compiled_preds
        return compiled_preds

    def recent_lists(self) -> frozenset[str]:
        """The `-m recent` lists some rule of the ruleset fills (computed once, when first needed)."""
        if self._recent_lists is None:
            self._recent_lists = recent_lists_set(self.ruleset)
        return self._recent_lists


def recent_lists_set(ruleset: Ruleset) -> frozenset[str]:
    """Names of the `-m recent` lists a `set` rule of ``ruleset`` fills. Lists start empty and only
    such rules fill them (or an admin writing to /proc/net/xt_recent, which lbfw cannot see)."""
    names: set[str] = set()
    for table in ruleset.tables:
        for chain in table.chains.values():
            for rule in chain.rules:
                for m in rule.matches:
                    if m.field == "recent" and not m.opaque:
                        names.update(name for name, command in m.values if command == "set")
    return frozenset(names)

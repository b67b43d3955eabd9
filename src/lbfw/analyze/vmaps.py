"""Verdict-map lookups: which entries of an nft verdict map a packet can select.

kube-proxy's nftables mode dispatches every service through ``ip daddr . meta l4proto . th
dport vmap @service-ips``: a map with one exact element per service port (10,000 and more).
Scanning it for every packet made the evaluation grow with the map (measured in issue 17:
~270 elements looked at per lookup on 1,000 services); an index on the exact elements makes a
lookup of a packet whose fields are single values one dict access plus the (usually empty)
list of non-exact elements, with the same answer, in the same order, as the scan.
"""

from __future__ import annotations

from typing import Any, Optional

from ..model import Action, VmapEntry
from .matchers import RANGE_FIELDS, element_matches

__all__ = ["VmapIndex"]


def _point(item: Any) -> Optional[int]:
    """The single number an element item stands for (an int, or a (lo, hi) range of one), else None."""
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int) and item[0] == item[1]:
        return item[0]
    return None


class VmapIndex:
    """The entries of one verdict map, split into exact ones (a dict from their key to the first
    entry's position) and the others (kept in map order, matched one by one)."""

    def __init__(self, key: Any, entries: tuple[VmapEntry, ...]) -> None:
        """``key``: the map's field, or a tuple of fields for a concatenation (then each entry's
        value is a tuple too); ``entries``: its VmapEntry elements in map order."""
        fields = key if isinstance(key, tuple) else (key,)
        self.concat = isinstance(key, tuple)
        self.fields = fields
        self.entries = entries  # kept: the engine's cache is keyed by id(entries)
        self.exact: dict[tuple[Optional[int], ...], int] = {}
        self.others: list[tuple[int, VmapEntry]] = []  # (position, entry)
        indexable = all(f in RANGE_FIELDS for f in fields)
        for pos, entry in enumerate(entries):
            value = entry.value if self.concat else (entry.value,)
            point = tuple(_point(item) for item in value) if indexable and len(value) == len(fields) else (None,)
            if None in point:
                self.others.append((pos, entry))
            else:
                self.exact.setdefault(point, pos)

    def lookup(self, pvals: list[Any]) -> tuple[Optional[Action], list[Optional[Action]]]:
        """(certain action or None, [actions that may match before it]) for packet values ``pvals``
        (one per field, each as ``single_value`` gives it), exactly what scanning the entries in
        order gives: the first entry that surely matches, and the undecided ones before it."""
        points: list[Optional[int]] = []
        for v in pvals:
            if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1] and isinstance(v[0], int):
                points.append(v[0])
            else:
                return self._scan(self.entries, pvals)
        hit = self.exact.get(tuple(points))
        # an exact entry other than the hit differs in some field: it never matches these points
        options: list[Optional[Action]] = []
        for pos, entry in self.others:
            if hit is not None and pos > hit:
                break
            value = entry.value if self.concat else (entry.value,)
            r = element_matches(self.fields, value, pvals)
            if r:
                return entry.action, options
            if r is None:
                options.append(entry.action)
        return (self.entries[hit].action if hit is not None else None), options

    def _scan(
        self, entries: tuple[VmapEntry, ...], pvals: list[Any]
    ) -> tuple[Optional[Action], list[Optional[Action]]]:
        options: list[Optional[Action]] = []
        for entry in entries:
            value = entry.value if self.concat else (entry.value,)
            r = element_matches(self.fields, value, pvals)
            if r:
                return entry.action, options
            if r is None:
                options.append(entry.action)
        return None, options

"""Packet marks and conntrack marks as the statements a packet meets change them.

Both start at 0 (a new packet, a new conntrack entry). A mark is held as a (lo, hi) range like
the other packet values: exact while lbfw can follow it, (0, 0xffffffff) once a statement sets a
value lbfw cannot compute (`meta mark set numgen ...`, hashes, maps): the matches on it are then
unknown, and the statement itself still only continues. Follows model.Action's set_mark,
set_ctmark, copy_mark and mark_unknown (MARK, CONNMARK, nft `meta mark set`, `ct mark set`).
"""

from __future__ import annotations

from typing import Optional

from ..model import Action
from .state import Pkt, Range

FULL_MARK = 0xFFFFFFFF
UNKNOWN_MARK: Range = (0, FULL_MARK)


def changes_packet(action: Action) -> bool:
    """True when a "continue" statement changes a mark (an unknown match before it must then fork)."""
    return (
        action.set_mark is not None
        or action.set_ctmark is not None
        or action.copy_mark is not None
        or action.mark_unknown is not None
    )


def apply_statement(pkt: Pkt, action: Action) -> None:
    """Follow what a statement that does not end the packet does to its mark and its ct mark."""
    if action.set_mark is not None:
        pkt.mark = set_bits(pkt.mark, *action.set_mark)
    conn = pkt.conn
    if action.set_ctmark is not None and conn is not None:
        conn.mark = set_bits(conn.mark, *action.set_ctmark)
    if action.copy_mark is not None:
        direction, mask = action.copy_mark
        if direction == "ct->meta":
            if conn is not None:  # no conntrack entry: CONNMARK --restore-mark does nothing
                pkt.mark = copy_bits(conn.mark, pkt.mark, mask)
        elif conn is not None:
            conn.mark = copy_bits(pkt.mark, conn.mark, mask)
    if action.mark_unknown == "meta":
        pkt.mark = UNKNOWN_MARK
    elif action.mark_unknown == "ct" and conn is not None:
        conn.mark = UNKNOWN_MARK


def set_bits(mark: Range, value: int, mask: Optional[int]) -> Range:
    """mark = (mark & ~mask) ^ value; an unknown mark stays unknown unless every bit is set."""
    if mask is None or mask & FULL_MARK == FULL_MARK:
        return (value & FULL_MARK, value & FULL_MARK)
    lo, hi = mark
    if lo != hi:
        return UNKNOWN_MARK
    new = (lo & ~mask & FULL_MARK) ^ value
    return (new, new)


def copy_bits(source: Range, target: Range, mask: Optional[int]) -> Range:
    """target = (target & ~mask) | (source & mask): CONNMARK --save/--restore-mark, `meta mark set ct mark`."""
    mask = FULL_MARK if mask is None else mask & FULL_MARK
    if source[0] != source[1] or (target[0] != target[1] and mask != FULL_MARK):
        return UNKNOWN_MARK
    new = (target[0] & ~mask & FULL_MARK) | (source[0] & mask)
    return (new, new)

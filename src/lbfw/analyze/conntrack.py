"""Conntrack for the packets of one loopback flow: the state, direction and status nf_conntrack
gives each packet (its TCP state table for the packets a flow sends; DOMAIN.md). Pure: the walk
Run holds the connection, the Pkt gets its ct fields."""

from __future__ import annotations

from .matchers import TCP
from .state import Conn, Pkt, Run

# TCP flag bits
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def attach(run: Run, pkt: Pkt) -> None:
    """The conntrack hook point: the packet gets its state (and the run its connection)."""
    pkt.attached = True
    try:
        track(run, pkt)
    finally:
        if not pkt.untracked and pkt.ct_state != "invalid":
            pkt.conn = run.conn


def track(run: Run, pkt: Pkt) -> None:
    """ct state, direction and status for ``pkt``, as nf_conntrack gives them to a loopback flow."""
    if pkt.untracked:
        pkt.ct_state, pkt.ct_direction, pkt.ct_status = "untracked", None, frozenset()
        return
    if pkt.fixed_ct is not None:
        pkt.ct_state, pkt.ct_direction, pkt.ct_status = pkt.fixed_ct
        if pkt.ct_state == "new":
            run.conn = Conn(pkt.client_side)
            pkt.creator = True
        return
    conn = run.conn
    tcp = pkt.l4proto[0] == TCP and pkt.tcp_flags is not None
    kind = tcp_kind(pkt.tcp_flags) if tcp and pkt.tcp_flags is not None else None
    if conn is None:
        if kind == "synack":
            # conntrack will not pick a connection up from a SYN-ACK: INVALID, no entry
            invalid(pkt)
            return
        conn = run.conn = Conn(pkt.client_side)
        # a SYN opens SYN_SENT; a lone ACK is picked up mid-stream (nf_conntrack_tcp_loose)
        conn.tcp_state = "SS" if kind == "syn" else "ES"
        pkt.creator = True
        pkt.ct_state, pkt.ct_direction = "new", "original"
        pkt.ct_status = frozenset()
        return
    original = pkt.client_side == conn.creator_client_side
    if tcp:
        # nf_conntrack_proto_tcp's state table, for the packets a flow sends
        state = conn.tcp_state
        if original:
            if kind == "ack":
                if state == "SS":
                    invalid(pkt)  # an ACK before conntrack saw the SYN-ACK
                    return
                conn.tcp_state = "ES"
        else:
            if kind == "synack" and state == "SS":
                conn.tcp_state = "SR"
            elif kind == "syn":
                invalid(pkt)
                return
    if original:
        pkt.ct_direction = "original"
        pkt.ct_state = "established" if conn.seen_reply else "new"
        if conn.seen_reply and tcp:
            conn.assured = True
    else:
        conn.seen_reply = True
        pkt.ct_direction = "reply"
        pkt.ct_state = "established"
    pkt.ct_status = conn.status()


def invalid(pkt: Pkt) -> None:
    pkt.ct_state, pkt.ct_direction, pkt.ct_status = "invalid", None, frozenset()


def refresh(run: Run, pkt: Pkt) -> None:
    """The connection status as it is now (NAT bindings made after the packet attached)."""
    if (
        run.conn is not None
        and pkt.fixed_ct is None
        and pkt.attached
        and not pkt.untracked
        and pkt.ct_state != "invalid"
    ):
        pkt.ct_status = run.conn.status()


def tcp_kind(flags: int) -> str:
    if flags & SYN:
        return "synack" if flags & ACK else "syn"
    return "ack"

"""What each packet of a loopback exchange carries, as the kernel sends it.

Measured on this kernel (6.x) with real sockets in a private namespace, capturing on lo and
counting with owner rules on OUTPUT (the numbers below are those captures):

* Every packet: TTL / hop limit 64 (net.ipv4.ip_default_ttl), tos 0 (dscp 0, ecn 0: loopback TCP
  does not negotiate ECN by default), DF set and never a fragment, pkttype host, lo's device
  group 0, no conntrack helper, not bridged.
* TCP over IPv4: the SYN and the SYN-ACK are 60 bytes (20 IP + 40 TCP: MSS 65495 -- lo's MTU
  65536 minus 40 --, SACK permitted, timestamps, window scale, NOPs); a bare ACK and a FIN are 52
  (timestamps); a data segment is 52 + its payload. IPv6 adds 20 to each.
* UDP: 28 bytes + the payload (IPv6: 48 + payload).
* Socket owners on OUTPUT (`-m owner`, nft `meta skuid`): the client's SYN, ACK, data and FIN
  carry the client's uid; the SYN-ACK sent by a listener carries the *listener's* uid (not the
  client's), and so do the server's data and ACKs; the last ACK sent from TIME_WAIT has no socket;
  a RST for a closed port comes from the kernel's control socket (`--socket-exists` is true,
  `--uid-owner` false for every uid). A UDP reply carries the server's uid.

Two things the ruleset cannot show are assumed, and the verdict then says so (FlowResult.caveats):
the payload of the client's request and of the server's answer is 1-512 bytes (a first request:
a DNS query over UDP, an HTTP GET), and the server runs as a user no owner match of the ruleset
names (the engine picks such a uid and gid; root is named by `--uid-owner 0` alone).
"""

from __future__ import annotations

from typing import Callable, Optional

LO_MSS = 65495                          # lo's MTU (65536) minus 40
DEFAULT_TTL = 64
FIRST_PAYLOAD = (1, 512)                # bytes of data in a first request or answer (assumed)
# IPv4 header + transport header of a packet that carries data (TCP: with timestamps)
_DATA_HEADERS = {6: 52, 17: 28}
PAYLOAD_CAVEAT = "assumes the first request and answer carry 1-512 bytes of data (a length match decides on it)"
SERVER_CAVEAT = ("assumes the server runs as a user no owner match names (an owner match decides on the "
                 "server's packets)")
# TCP option kinds: 1 NOP, 2 MSS, 3 window scale, 4 SACK permitted, 8 timestamps
SYN_OPTIONS = frozenset((1, 2, 3, 4, 8))
ACK_OPTIONS = frozenset((1, 8))

# packet name -> (IPv4 total length or None when it depends on the payload, tcp options, MSS)
_TCP_SHAPES = {
    "request": (60, SYN_OPTIONS, LO_MSS),     # SYN
    "reply": (60, SYN_OPTIONS, LO_MSS),       # SYN-ACK
    "ack": (52, ACK_OPTIONS, None),
    "answer": (None, ACK_OPTIONS, None),      # the server's data
}


class User:
    """The client's user as the engine uses it: uid and primary gid (None: not known)."""

    __slots__ = ("uid", "gid")

    def __init__(self, uid: Optional[int], gid: Optional[int]) -> None:
        self.uid = uid
        self.gid = gid


def dress(pkt, user: Optional[User], server: Optional[Callable[[], Optional[User]]] = None,
          ttl: int = DEFAULT_TTL) -> None:
    """Give ``pkt`` (a state.Pkt named request/reply/ack/answer) the header fields and socket the
    kernel gives that packet of a loopback exchange. ``user``: the client's (None: unknown);
    ``server``: how to find the server's, asked only when an owner match reads it (finding it
    walks the whole ruleset, which a lazily read one should not build for nothing)."""
    pkt.ttl = ttl
    extra = 20 if pkt.family == "ip6" else 0
    proto = pkt.l4proto[0]
    length = None
    if proto == 6:
        length, options, mss = _TCP_SHAPES.get(pkt.name, (None, ACK_OPTIONS, None))
        pkt.tcp_options = options
        pkt.mss = mss
    if length is not None:
        pkt.length = length + extra
    else:
        pkt.length = None
        headers = _DATA_HEADERS.get(proto)
        if headers is not None:
            lo, hi = FIRST_PAYLOAD
            pkt.length_range = (headers + extra + lo, headers + extra + hi)
    pkt.sock = "client" if pkt.client_side else "server"
    if pkt.client_side and user is not None:
        pkt.uid, pkt.gid = user.uid, user.gid
    else:
        pkt.uid = pkt.gid = None
    pkt.server = None if pkt.client_side else server

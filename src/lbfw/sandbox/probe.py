"""Real traffic for one batch of loopback flows: servers and clients on real sockets.

Standard library only, so it runs as a plain script inside a namespace
(`nsenter ... python probe.py`, flows as JSON on stdin, results as JSON on stdout)
and as a function on the live host (`observe_flows`).

For each flow a server socket is bound to (server, port) and a client socket to
(client, 0) (unbound when client is None). TCP: handshake, one request and one reply.
UDP: one datagram each way. The flow is "delivered" when the client reads the reply
meant for it, "blocked" on EPERM (a DROP in OUTPUT), a refusal (REJECT), an
unreachable error or a timeout. A server address that cannot be bound gives
"not observed: ...": on the live host a busy port is never touched (no SO_REUSEADDR
or SO_REUSEPORT, so a bind never shares or steals a service's port).

Every socket is closed before returning; TCP sockets close with SO_LINGER 0 (a reset),
so no TIME_WAIT entry outlives the probe.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from typing import Optional, Union

DELIVERED = "delivered"
BLOCKED = "blocked"
PORT_IN_USE = "not observed: port in use"

BATCH = 128  # flows whose sockets are open at once
MAX_FLOWS = 10000  # per call: bounds time (about BATCH flows per 2 timeouts) and sockets
_LINGER_RESET = struct.pack("ii", 1, 0)


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _strip(addr: str) -> str:
    return addr[1:-1] if addr.startswith("[") and addr.endswith("]") else addr


def _reason(err: BaseException) -> str:
    if isinstance(err, socket.timeout):
        return "timeout"
    if isinstance(err, OSError) and err.errno is not None:
        return errno.errorcode.get(err.errno, str(err.errno))
    return type(err).__name__


class _Sockets:
    """Every socket the probe opens, so that all are closed whatever happens."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open = set()

    def new(self, family: int, kind: int) -> socket.socket:
        sock = socket.socket(family, kind)
        with self._lock:
            self._open.add(sock)
        return sock

    def adopt(self, sock: socket.socket) -> socket.socket:
        """Track a socket made elsewhere (an accepted connection)."""
        with self._lock:
            self._open.add(sock)
        return sock

    def close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        _close(sock)

    def close_all(self) -> None:
        with self._lock:
            socks, self._open = list(self._open), set()
        for sock in socks:
            _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        if sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sock.close()


# --------------------------------------------------------------------------- servers


def _tcp_server(listener, socks: _Sockets, stop: threading.Event, timeout: float) -> None:
    """Accept until told to stop; each connection gets its reply in its own thread."""
    workers = []
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            break
        socks.adopt(conn)
        worker = threading.Thread(target=_tcp_answer, args=(conn, socks, timeout), daemon=True)
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join(timeout + 1)


def _tcp_answer(conn, socks: _Sockets, timeout: float) -> None:
    try:
        conn.settimeout(timeout)
        data = conn.recv(256)
        if data.startswith(b"lbfw ") and data.endswith(b" ?"):
            conn.sendall(data[:-2] + b" !")
            # Wait for the client to close first: it resets, so neither side keeps TIME_WAIT.
            conn.recv(256)
    except OSError:
        pass
    finally:
        socks.close(conn)


def _udp_server(sock, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(256)
        except TimeoutError:
            continue
        except OSError:
            break
        if data.startswith(b"lbfw ") and data.endswith(b" ?"):
            with contextlib.suppress(OSError):  # a DROP on the reply's way out: the client times out
                sock.sendto(data[:-2] + b" !", peer)


# --------------------------------------------------------------------------- clients


def _socket_as(uid: int, gid: int, family: int, kind: int) -> socket.socket:
    """A socket owned by uid/gid: the kernel's owner matches (xt_owner, nft meta skuid) read the
    credentials the socket's file was opened with, so a child takes the ids, opens it and hands
    the descriptor back; the servers stay root's, as real services are someone else's."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                made = socket.socket(family, kind)
                socket.send_fds(child, [b"s"], [made.fileno()])
                code = 0
            finally:
                os._exit(code)
        os.waitpid(pid, 0)
        parent.settimeout(2)
        _, fds, _, _ = socket.recv_fds(parent, 1, 1)
        if not fds:
            raise OSError(errno.EPERM, f"cannot open a socket as uid {uid}")
        return socket.socket(family, kind, fileno=fds[0])
    finally:
        parent.close()
        child.close()


def _client(
    index: int, flow: dict, socks: _Sockets, timeout: float, out: list, premade: Optional[socket.socket] = None
) -> None:
    server = _strip(flow["server"])
    client = flow.get("client")
    family = _family(server)
    kind = socket.SOCK_STREAM if flow["proto"] == "tcp" else socket.SOCK_DGRAM
    token = f"lbfw {index} ?".encode()
    sock = None
    step = "socket"
    try:
        sock = socks.adopt(premade) if premade is not None else socks.new(family, kind)
        sock.settimeout(timeout)
        if client:
            step = "bind"
            sock.bind((_strip(client), 0))
        step = "connect"
        sock.connect((server, int(flow["port"])))
        step = "send"
        sock.sendall(token) if kind == socket.SOCK_STREAM else sock.send(token)
        step = "reply"
        reply = sock.recv(256)
        if reply != token[:-2] + b" !":
            out[index] = {"observed": BLOCKED, "reason": "no reply"}
            return
        if kind == socket.SOCK_DGRAM:
            # A UDP exchange is more than one datagram: the client's next one is ESTABLISHED in
            # the original direction (a rule accepting only NEW from the client drops it), and the
            # engine predicts that packet too. Send it and wait for its echo.
            step = "second datagram"
            again = f"lbfw {index} again ?".encode()
            sock.send(again)
            step = "second reply"
            if sock.recv(256) != again[:-2] + b" !":
                out[index] = {"observed": BLOCKED, "reason": "no reply to the second datagram"}
                return
        out[index] = {"observed": DELIVERED, "reason": ""}
    except OSError as err:
        if step in ("socket", "bind"):
            out[index] = {
                "observed": f"not observed: cannot bind client {client}: {_reason(err)}",
                "reason": _reason(err),
            }
        else:
            out[index] = {"observed": BLOCKED, "reason": f"{step}: {_reason(err)}"}
    finally:
        if sock is not None:
            socks.close(sock)


# --------------------------------------------------------------------------- one batch


def _open_server(key, socks: _Sockets, backlog: int):
    proto, server, port = key
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socks.new(_family(server), kind)
    try:
        # Deliberately no SO_REUSEADDR / SO_REUSEPORT: a port a service holds stays its own.
        sock.bind((server, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
        sock.settimeout(0.05)
    except OSError as err:
        socks.close(sock)
        if err.errno == errno.EADDRINUSE:
            return None, PORT_IN_USE
        return None, f"not observed: cannot bind {server}:{port}: {_reason(err)}"
    return sock, None


def _nat_keys(flows: list, extra: list, taken) -> list:
    """Listener keys for the NAT targets ``extra`` ([proto, addr, port or None]): a port of
    None means the flow's own port (a DNAT that changes only the address)."""
    keys = []
    for proto, addr, port in extra:
        ports = [port] if port is not None else sorted({int(f["port"]) for f in flows if f["proto"] == proto})
        for p in ports:
            key = (proto, _strip(addr), int(p))
            if key not in taken and key not in keys:
                keys.append(key)
    return keys


def _run_batch(flows: list, offset: int, timeout: float, out: list, extra: Sequence = ()) -> None:
    socks = _Sockets()
    stop = threading.Event()
    threads = []
    try:
        groups: dict = {}
        for i, flow in enumerate(flows):
            key = (flow["proto"], _strip(flow["server"]), int(flow["port"]))
            groups.setdefault(key, []).append(offset + i)
        servers = []
        clients = []
        for key, members in groups.items():
            sock, why = _open_server(key, socks, backlog=len(members) + 4)
            if sock is None:
                for idx in members:
                    out[idx] = {"observed": why, "reason": why}
                continue
            target = _tcp_server if key[0] == "tcp" else _udp_server
            args = (sock, socks, stop, timeout) if key[0] == "tcp" else (sock, stop)
            servers.append(threading.Thread(target=target, args=args, daemon=True))
            clients += members
        # Where NAT sends the traffic, something must answer, as the real service would: an
        # echo server on each loopback NAT target (binding is best effort: a taken key is
        # one of the flows' own servers, which echoes too).
        for key in _nat_keys(flows, list(extra), groups):
            sock, why = _open_server(key, socks, backlog=16)
            if sock is None:
                continue
            target = _tcp_server if key[0] == "tcp" else _udp_server
            args = (sock, socks, stop, timeout) if key[0] == "tcp" else (sock, stop)
            servers.append(threading.Thread(target=target, args=args, daemon=True))
        # Sockets of flows run as another user are opened before any thread starts (a fork).
        premade = {}
        for idx in clients:
            flow = flows[idx - offset]
            if flow.get("uid") is not None:
                try:
                    premade[idx] = _socket_as(
                        int(flow["uid"]),
                        int(flow.get("gid", flow["uid"])),
                        _family(_strip(flow["server"])),
                        socket.SOCK_STREAM if flow["proto"] == "tcp" else socket.SOCK_DGRAM,
                    )
                except OSError as err:
                    out[idx] = {
                        "observed": f"not observed: cannot open a socket as uid {flow['uid']}: {_reason(err)}",
                        "reason": _reason(err),
                    }
        clients = [idx for idx in clients if out[idx] is None]
        for thread in servers:
            thread.start()
        threads = servers
        workers = [
            threading.Thread(
                target=_client, args=(idx, flows[idx - offset], socks, timeout, out, premade.get(idx)), daemon=True
            )
            for idx in clients
        ]
        for thread in workers:
            thread.start()
        deadline = time.monotonic() + 2 * timeout + 2
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        for idx in clients:
            if out[idx] is None:
                out[idx] = {"observed": BLOCKED, "reason": "timeout"}
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout + 1)
        socks.close_all()


def observe_flows(flows: list, timeout: float = 1.0, nat_targets: Sequence = ()) -> list:
    """Observe each flow (dicts with proto, server, port, client) in this network namespace.

    ``nat_targets``: [proto, addr, port or None] where DNAT/REDIRECT rules send traffic;
    echo servers listen there too (only for the sandbox: live, a real service may be there).
    Returns one dict per flow, in order: {"observed": "delivered" | "blocked" |
    "not observed: ...", "reason": why it was blocked or not observed}.
    """
    if len(flows) > MAX_FLOWS:
        raise ValueError(f"at most {MAX_FLOWS} flows per observation, got {len(flows)}")
    for flow in flows:
        if flow.get("proto") not in ("tcp", "udp") or not 0 < int(flow.get("port", 0)) < 65536:
            raise ValueError(f"not a flow lbfw can observe: {flow!r}")
    out: list = [None] * len(flows)
    for start in range(0, len(flows), BATCH):
        _run_batch(flows[start : start + BATCH], start, timeout, out, nat_targets)
    return out


# --------------------------------------------------------------------------- arrivals from outside


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _frame(
    dst_mac: bytes, src_mac: bytes, src: str, dst: str, sport: int, dport: int, payload: bytes, ident: int
) -> bytes:
    """An Ethernet + IPv4 + UDP frame (UDP checksum 0: "none", valid for IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        ident & 0xFFFF,
        0,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return dst_mac + src_mac + b"\x08\x00" + header + udp


def observe_arrivals(peer: str, dst_mac: str, src_mac: str, packets: list, timeout: float = 0.5) -> list:
    """Write one UDP frame per packet ({"src", "dst", "port"}, IPv4) into ``peer`` (the far end
    of a veth pair), so it arrives on the near end as if from the network, and say per packet
    whether a UDP server bound to (dst, port) received it: "delivered" or "blocked"
    ("not observed: ..." when (dst, port) cannot be bound)."""
    if len(packets) > MAX_FLOWS:
        raise ValueError(f"at most {MAX_FLOWS} packets per observation")
    socks = _Sockets()
    out: list = [None] * len(packets)
    try:
        servers: dict[tuple[str, int], Union[socket.socket, str]] = {}
        for i, packet in enumerate(packets):
            key = (packet["dst"], int(packet["port"]))
            if key not in servers:
                sock = socks.new(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sock.bind(key)
                    sock.setblocking(False)
                    servers[key] = sock
                except OSError as err:
                    socks.close(sock)
                    servers[key] = f"not observed: cannot bind {key[0]}:{key[1]}: {_reason(err)}"
            if isinstance(servers[key], str):
                out[i] = servers[key]
        tx = socks.new(socket.AF_PACKET, socket.SOCK_RAW)
        tx.bind((peer, 0))
        dst, src = bytes.fromhex(dst_mac.replace(":", "")), bytes.fromhex(src_mac.replace(":", ""))
        for i, packet in enumerate(packets):
            if out[i] is None:
                tx.send(
                    _frame(
                        dst,
                        src,
                        packet["src"],
                        packet["dst"],
                        40000 + i % 20000,
                        int(packet["port"]),
                        f"lbfw {i} ?".encode(),
                        i + 1,
                    )
                )
        deadline = time.monotonic() + timeout
        waiting = sum(1 for o in out if o is None)
        while waiting and time.monotonic() < deadline:
            got_any = False
            for server in servers.values():
                if isinstance(server, str):
                    continue
                try:
                    data = server.recv(256)
                except (BlockingIOError, InterruptedError):
                    continue
                parts = data.split()
                if len(parts) == 3 and parts[0] == b"lbfw" and parts[1].isdigit():
                    index = int(parts[1])
                    if 0 <= index < len(out) and out[index] is None:
                        out[index] = DELIVERED
                        waiting -= 1
                        got_any = True
            if not got_any:
                time.sleep(0.01)
        return [o if o is not None else BLOCKED for o in out]
    finally:
        socks.close_all()


def main() -> int:
    request = json.load(sys.stdin)
    try:
        if request.get("mode") == "arrivals":
            results = observe_arrivals(
                request["peer"],
                request["dst_mac"],
                request["src_mac"],
                request["packets"],
                float(request.get("timeout", 0.5)),
            )
        else:
            results = observe_flows(
                request["flows"], float(request.get("timeout", 1.0)), request.get("nat_targets", [])
            )
    except (ValueError, KeyError, TypeError) as err:
        print(f"probe: {err}", file=sys.stderr)
        return 2
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the caller reports it
        sys.exit(130)

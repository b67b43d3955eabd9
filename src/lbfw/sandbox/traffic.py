"""Observe loopback flows with real sockets, inside a sandbox namespace or on the live host.

`observe(ns, flows)` runs `probe.py` inside the namespace (nsenter, flows as JSON on
stdin); `observe_here(flows)` runs the same code in this process's namespace (the live
host: no rule is touched, busy ports are reported "not observed: port in use").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

from ..results import Flow
from . import probe
from .netns import Namespace, SandboxError

PROBE = Path(probe.__file__).resolve()
NOT_OBSERVED = "not observed"


def _as_dicts(flows: Iterable[Flow]) -> list:
    return [{"proto": f.proto, "server": f.server, "port": int(f.port), "client": f.client} for f in flows]


def _budget(count: int, timeout: float) -> float:
    """Wall-clock bound for the probe: each batch takes at most two timeouts plus slack."""
    batches = max(1, -(-count // probe.BATCH))
    return batches * (2 * timeout + 3) + 10


def observe_detailed(ns: Namespace, flows: Sequence[Flow], timeout: float = 1.0) -> list:
    """Like `observe`, with the reason: [{"observed": ..., "reason": ...}] per flow, in order."""
    flows = list(flows)
    if not flows:
        return []
    request = json.dumps({"flows": _as_dicts(flows), "timeout": timeout})
    proc = ns.run([sys.executable, str(PROBE)], input=request, check=False,
                  timeout=_budget(len(flows), timeout))
    if proc.returncode != 0:
        raise SandboxError(f"the traffic probe failed: {proc.stderr.strip()}", returncode=proc.returncode,
                           stderr=proc.stderr)
    results = json.loads(proc.stdout)
    if len(results) != len(flows):
        raise SandboxError("the traffic probe answered for the wrong number of flows")
    return results


def observe(ns: Namespace, flows: Sequence[Flow], timeout: float = 1.0) -> list:
    """Real traffic for each flow inside ``ns``: "delivered" or "blocked" per flow, in order
    ("not observed: ..." when the server address cannot be bound there)."""
    return [r["observed"] for r in observe_detailed(ns, flows, timeout)]


def observe_here_detailed(flows: Sequence[Flow], timeout: float = 1.0) -> list:
    """`observe_detailed` in this process's own network namespace (the live host)."""
    return probe.observe_flows(_as_dicts(flows), timeout)


def observe_here(flows: Sequence[Flow], timeout: float = 1.0) -> list:
    """Real traffic in this process's network namespace; busy ports give
    "not observed: port in use" and are never touched."""
    return [r["observed"] for r in observe_here_detailed(flows, timeout)]


def _mac(ns: Namespace, name: str) -> str:
    out = ns.run(["ip", "-o", "link", "show", "dev", name]).stdout
    fields = out.split()
    return fields[fields.index("link/ether") + 1]


def observe_arrivals(ns: Namespace, interface: str, packets: Sequence[tuple], timeout: float = 0.5,
                     route_localnet: bool = True) -> list:
    """Packets from the network: for each (src, dst, port) an IPv4 UDP frame arrives on
    ``interface`` (made as a veth pair if missing) and a UDP server on (dst, port) says whether
    it got through: "delivered" or "blocked" per packet, in order.

    This is how anti-spoofing is proven: a 127/8 source arriving on eth0. The kernel drops
    such martians in routing unless ``route_localnet`` is on for the interface (DOMAIN.md),
    so it is turned on by default (as kube-proxy did); rp_filter is turned off so that the
    firewall, not reverse-path filtering, decides.
    """
    packets = list(packets)
    if not packets:
        return []
    if interface not in ns.peer_of:
        ns.add_interface(interface)
    peer = ns.peer_of[interface]
    for key in ("all", interface):
        ns.run(["sysctl", "-q", "-w", f"net.ipv4.conf.{key}.rp_filter=0"])
        ns.run(["sysctl", "-q", "-w", f"net.ipv4.conf.{key}.route_localnet={int(route_localnet)}"])
    ns.run(["ip", "link", "set", interface, "up"])
    ns.run(["ip", "link", "set", peer, "up"])
    request = json.dumps({"mode": "arrivals", "peer": peer, "dst_mac": _mac(ns, interface),
                          "src_mac": _mac(ns, peer), "timeout": timeout,
                          "packets": [{"src": s, "dst": d, "port": int(p)} for s, d, p in packets]})
    proc = ns.run([sys.executable, str(PROBE)], input=request, check=False, timeout=timeout + 30)
    if proc.returncode != 0:
        raise SandboxError(f"the arrival probe failed: {proc.stderr.strip()}", returncode=proc.returncode,
                           stderr=proc.stderr)
    return json.loads(proc.stdout)

"""Observe loopback flows with real sockets, inside a sandbox namespace or on the live host.

`observe(ns, flows)` runs `probe.py` inside the namespace (nsenter, flows as JSON on
stdin); `observe_here(flows)` runs the same code in this process's namespace (the live
host: no rule is touched, busy ports are reported "not observed: port in use").
"""

from __future__ import annotations

import ipaddress
import json
import pwd
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

from ..results import Flow
from . import probe
from .netns import Namespace, SandboxError

PROBE = Path(probe.__file__).resolve()
NOT_OBSERVED = "not observed"


def _ids(user) -> tuple:
    """(uid, gid) the probe's client runs as: a number as it is (its gid the same), a name from
    this host's users (the namespace shares the host's /etc)."""
    text = str(user)
    if text.isdigit():
        return int(text), int(text)
    try:
        entry = pwd.getpwnam(text)
    except KeyError:
        raise SandboxError(f"cannot run a client as {text!r}: no such user on this host") from None
    return entry.pw_uid, entry.pw_gid


def _as_dicts(flows: Iterable[Flow]) -> list[dict[str, Any]]:
    """The probe's JSON shape; a flow it cannot observe is refused here, before any socket."""
    out: list[dict[str, Any]] = []
    for f in flows:
        item: dict[str, Any] = {"proto": f.proto, "server": f.server, "port": int(f.port), "client": f.client}
        if f.uid is not None:  # the client's owner, as the flow resolved it
            item["uid"], item["gid"] = f.uid, f.gid if f.gid is not None else f.uid
        elif f.user is not None:
            item["uid"], item["gid"] = _ids(f.user)
        out.append(item)
    if len(out) > probe.MAX_FLOWS:
        raise SandboxError(f"{len(out)} flows: at most {probe.MAX_FLOWS} are observed at once (split the plan)")
    for item in out:
        if item["proto"] not in ("tcp", "udp") or not 0 < item["port"] < 65536:
            raise SandboxError(f"cannot observe {item['proto']} port {item['port']}: tcp or udp, ports 1-65535")
    return out


def _budget(count: int, timeout: float) -> float:
    """Wall-clock bound for the probe: each batch takes at most two timeouts plus slack."""
    batches = max(1, -(-count // probe.BATCH))
    return batches * (2 * timeout + 3) + 10


# What the kernel's own listings say NAT does (iptables-save -t nat and `nft list ruleset`
# text: both normalised by the tools, so a few patterns cover them).
_IPT_DNAT = re.compile(r"-j DNAT --to-destination (\S+)")
_IPT_REDIRECT = re.compile(r"-j REDIRECT(?: --to-ports (\d+)(?:-(\d+))?)?")
_NFT_DNAT = re.compile(r"\bdnat (?:ip6? )?to (\S+)")
_NFT_REDIRECT = re.compile(r"\bredirect(?: to :(\d+)(?:-(\d+))?)?")
_PROTO = re.compile(r"(?:-p |\b(?:meta l4proto |ip protocol |ip6 nexthdr )?)(tcp|udp)\b")
MAX_NAT_PORTS = 32  # per target range: enough for real rules, bounded for odd ones


def _ports(lo: Optional[str], hi: Optional[str]) -> list:
    if lo is None:
        return [None]
    first = int(lo)
    last = int(hi) if hi else first
    return list(range(first, min(last, first + MAX_NAT_PORTS - 1) + 1))


def _split_target(target: str, v6: bool):
    """ "127.0.0.11:46635" / "[::1]:53" / "127.0.0.13" / "1.2.3.4-1.2.3.9:80-90" -> (addr, [ports])."""
    target = target.rstrip(";,")
    if target.startswith("["):
        addr, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif v6 or target.count(":") > 1:
        addr, port = target, ""
    else:
        addr, _, port = target.partition(":")
    addr = addr.split("-", 1)[0]
    lo, _, hi = port.partition("-")
    return addr, _ports(lo or None, hi or None)


def nat_targets_in(text: str) -> list:
    """[(proto, addr, port or None)] for the loopback DNAT/REDIRECT targets in iptables-save
    or `nft list ruleset` text. REDIRECT (locally generated) goes to 127.0.0.1 and ::1."""
    found = []

    def add(protos, addr, ports):
        try:
            if not ipaddress.ip_address(addr).is_loopback:
                return  # elsewhere: not a loopback flow any more, nothing of ours can answer
        except ValueError:
            return
        for proto in protos:
            for port in ports:
                if (proto, addr, port) not in found:
                    found.append((proto, addr, port))

    for line in text.splitlines():
        if "DNAT" not in line and "REDIRECT" not in line and "dnat" not in line and "redirect" not in line:
            continue
        protos = [p for p in ("tcp", "udp") if p in _PROTO.findall(line)] or ["tcp", "udp"]
        v6 = " ip6 " in line
        for m in _IPT_DNAT.finditer(line):
            add(protos, *_split_target(m.group(1), v6))
        for m in _NFT_DNAT.finditer(line):
            add(protos, *_split_target(m.group(1), v6))
        for m in list(_IPT_REDIRECT.finditer(line)) + list(_NFT_REDIRECT.finditer(line)):
            for addr in ("127.0.0.1", "::1"):
                add(protos, addr, _ports(m.group(1), m.group(2)))
    return found


def nat_targets(ns: Namespace) -> list:
    """The loopback NAT targets of everything loaded in ``ns`` (legacy nat tables and every
    nf_tables table, iptables-nft's included). Listing a legacy nat table that does not
    exist would create it, so /proc/net/ip*_tables_names is asked first."""
    texts = []
    for names, tool in (
        ("/proc/net/ip_tables_names", "iptables-legacy-save"),
        ("/proc/net/ip6_tables_names", "ip6tables-legacy-save"),
    ):
        listed = ns.run(["cat", names], check=False).stdout.split()
        if "nat" in listed and shutil.which(tool):
            texts.append(ns.run([tool, "-t", "nat"], check=False).stdout)
    if shutil.which("nft"):
        # `list chains` is quick on any size; `list tables` and `list ruleset` fetch every rule
        # (15 s for 50,000). NAT statements live in tables with a nat base chain: list those.
        proc = ns.run(["nft", "-j", "list", "chains"], check=False)
        try:
            items = json.loads(proc.stdout).get("nftables", []) if proc.returncode == 0 else []
        except ValueError:
            items = []
        tables = []
        for item in items:
            chain = item.get("chain") if isinstance(item, dict) else None
            if isinstance(chain, dict) and chain.get("type") == "nat":
                key = (str(chain.get("family")), str(chain.get("table")))
                if key not in tables:
                    tables.append(key)
        for family, table in tables:
            texts.append(ns.run(["nft", "list", "table", family, table], check=False).stdout)
    return nat_targets_in("\n".join(texts))


def observe_detailed(ns: Namespace, flows: Sequence[Flow], timeout: float = 1.0, nat: bool = True) -> list:
    """Like `observe`, with the reason: [{"observed": ..., "reason": ...}] per flow, in order."""
    flows = list(flows)
    if not flows:
        return []
    targets = nat_targets(ns) if nat else []
    request = json.dumps({"flows": _as_dicts(flows), "timeout": timeout, "nat_targets": targets})
    proc = ns.run(
        [sys.executable, "-I", "-S", str(PROBE)], input=request, check=False, timeout=_budget(len(flows), timeout)
    )
    if proc.returncode in (130, -2):  # the probe got the Ctrl-C too: report it as ours
        raise KeyboardInterrupt
    if proc.returncode != 0:
        raise SandboxError(
            f"the traffic probe failed: {proc.stderr.strip()}", returncode=proc.returncode, stderr=proc.stderr
        )
    results = json.loads(proc.stdout)
    if len(results) != len(flows):
        raise SandboxError("the traffic probe answered for the wrong number of flows")
    return results


def observe(ns: Namespace, flows: Sequence[Flow], timeout: float = 1.0, nat: bool = True) -> list:
    """Real traffic for each flow inside ``ns``: "delivered" or "blocked" per flow, in order
    ("not observed: ..." when the server address cannot be bound there).

    With ``nat`` (the default), echo servers also listen where the loaded DNAT/REDIRECT rules
    send loopback traffic (Docker's 127.0.0.11:53 -> :46635), as the real service would."""
    return [r["observed"] for r in observe_detailed(ns, flows, timeout, nat)]


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


def observe_arrivals(
    ns: Namespace, interface: str, packets: Sequence[tuple], timeout: float = 0.5, route_localnet: bool = True
) -> list:
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
    ns.run(["ip", "link", "set", "dev", interface, "up"])
    ns.run(["ip", "link", "set", "dev", peer, "up"])
    request = json.dumps(
        {
            "mode": "arrivals",
            "peer": peer,
            "dst_mac": _mac(ns, interface),
            "src_mac": _mac(ns, peer),
            "timeout": timeout,
            "packets": [{"src": s, "dst": d, "port": int(p)} for s, d, p in packets],
        }
    )
    proc = ns.run([sys.executable, "-I", "-S", str(PROBE)], input=request, check=False, timeout=timeout + 30)
    if proc.returncode in (130, -2):
        raise KeyboardInterrupt
    if proc.returncode != 0:
        raise SandboxError(
            f"the arrival probe failed: {proc.stderr.strip()}", returncode=proc.returncode, stderr=proc.stderr
        )
    return json.loads(proc.stdout)

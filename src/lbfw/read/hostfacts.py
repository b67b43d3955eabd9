"""What the live host says about loopback: lo's addresses, the local table's 127/8
route, route_localnet, interface names, and the managers' own configuration files -> ``model.HostFacts``.

``facts_from`` is pure (JSON from `ip -j` plus a sysctl dict); ``read_host_facts``
is the edge that asks the kernel of the current network namespace. Every part is
read independently: what cannot be read stays None / empty, never an error.
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from typing import Optional

from ..model import HostFacts, ManagerConfig

__all__ = ["read_host_facts", "facts_from", "read_route_localnet", "read_manager_configs"]

_CONF = "/proc/sys/net/ipv4/conf"
_MAX_CONFIG = 1 << 20  # a manager's configuration file is small; anything bigger is not read past this


def facts_from(addr_json, route_json, route_localnet: dict, interfaces) -> HostFacts:
    """Build HostFacts from `ip -j addr show dev lo`, `ip -j route show table local`
    (parsed JSON, or None when unavailable), route_localnet values and interface names."""
    lo_addrs: list = []
    for link in addr_json or []:
        if link.get("ifname") not in (None, "lo"):
            continue
        for info in link.get("addr_info") or []:
            if "local" in info and "prefixlen" in info:
                lo_addrs.append(f"{info['local']}/{info['prefixlen']}")
    local_route: Optional[bool] = None
    if route_json is not None:
        local_route = False
        loop_net = ipaddress.IPv4Network("127.0.0.0/8")
        for route in route_json:
            if route.get("type") != "local" or route.get("dev") != "lo":
                continue
            dst = route.get("dst", "")
            try:
                net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
            except ValueError:
                continue
            # the route that makes every 127.x.y.z local: 127.0.0.0/8 itself (or wider)
            if isinstance(net, ipaddress.IPv4Network) and net.prefixlen <= 8 and loop_net.subnet_of(net):
                local_route = True
    return HostFacts(
        lo_addrs=tuple(lo_addrs),
        local_127_route=local_route,
        route_localnet=dict(route_localnet),
        interfaces=tuple(interfaces),
    )


def read_route_localnet(conf_dir: str = _CONF) -> dict:
    """``{"all": 0, "default": 0, "eth0": 1, ...}`` from /proc/sys (per network namespace)."""
    values: dict[str, int] = {}
    try:
        names = sorted(os.listdir(conf_dir))
    except OSError:
        return values
    for name in names:
        try:
            with open(os.path.join(conf_dir, name, "route_localnet"), encoding="ascii") as f:
                values[name] = int(f.read().strip())
        except (OSError, ValueError):
            continue
    return values


def _ip_json(args: list):
    ip = shutil.which("ip") or ("/sbin/ip" if os.path.exists("/sbin/ip") else None)
    if ip is None:
        return None
    try:
        proc = subprocess.run([ip, "-j", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout or "[]")
    except ValueError:
        return None


def read_host_facts() -> HostFacts:
    """The current network namespace's loopback facts (no root needed to read them), fail2ban's
    jail files (LB008), firewalld's direct.xml and zone files and the other managers'
    configuration files (owner advice, LB005)."""
    addr_json = _ip_json(["addr", "show", "dev", "lo"])
    route_json = _ip_json(["route", "show", "table", "local"])
    try:
        # if_nameindex() asks the kernel of this network namespace (/sys/class/net may not)
        interfaces = [name for _idx, name in socket.if_nameindex()]
    except OSError:
        interfaces = []
    facts = facts_from(addr_json, route_json, read_route_localnet(), interfaces)
    from ..managers import fail2ban

    facts.fail2ban_jails = fail2ban.read_jail_files()
    facts.fail2ban_running = os.path.exists(fail2ban.SOCKET)
    facts.managers = read_manager_configs()
    from ..managers import firewalld

    facts.firewalld_files = firewalld.read_config_files()
    return facts


def _read_patterns(patterns: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """(every path tried, in order: a glob that matched nothing is named as written; {path: text})."""
    looked_at: list[str] = []
    texts: dict[str, str] = {}
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        looked_at += paths or [pattern]
        for path in paths:
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                    texts[path] = handle.read(_MAX_CONFIG)
            except OSError:
                continue
    return tuple(looked_at), texts


def read_manager_configs() -> dict[str, ManagerConfig]:
    """{owner: ManagerConfig} for Docker, kube-proxy, fw4, CSF, Shorewall, NixOS and Proxmox: the files
    each keeps its loopback settings in (managers/*.py say which and parse them). Absent files are
    listed as looked at, never an error."""
    from ..managers import csf, docker, fw4, kube_proxy, nixos, proxmox, shorewall

    configs: dict[str, ManagerConfig] = {}
    for manager in (docker, kube_proxy, fw4, csf, shorewall, nixos, proxmox):
        looked_at, texts = _read_patterns(manager.FILES)
        configs[manager.OWNER] = ManagerConfig(manager.OWNER, looked_at, manager.settings(texts), manager.APPLY)
    return configs

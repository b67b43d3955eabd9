"""kube-proxy: its KubeProxyConfiguration file and flags, for nodePortAddresses and
localhostNodePorts.

In iptables mode kube-proxy sets `net.ipv4.conf.all.route_localnet=1` so NodePorts answer on
127.0.0.1, unless `iptables.localhostNodePorts` is false (`--iptables-localhost-nodeports=false`)
or nodePortAddresses (`--nodeport-addresses`) leaves loopback out (kubernetes
pkg/proxy/iptables: "Setting route_localnet=1 to allow node-ports on localhost; to change this
either disable iptables.localhostNodePorts (--iptables-localhost-nodeports) or set
nodePortAddresses (--nodeport-addresses) to filter loopback addresses"). It never sets it back
to 0. A nodePortAddresses entry of 127.0.0.1/32 is the narrow mistake in kube-proxy's own words.
The file is YAML; lbfw reads the few keys line by line to keep their line numbers. Pure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Optional

from ..model import ManagerConfig, ManagerSetting
from .addresses import located, narrow, numbered, widen

OWNER = "kube-proxy"
FILES = (
    "/var/lib/kube-proxy/config.conf",
    "/var/lib/kube-proxy/kube-proxy-config.yaml",
    "/etc/kubernetes/kube-proxy-config.yaml",
    "/etc/kubernetes/kube-proxy.yaml",
    "/etc/kubernetes/manifests/kube-proxy.yaml",
    "/etc/kubernetes/proxy",
    "/etc/default/kube-proxy",
    "/etc/sysconfig/kube-proxy",
    "/etc/systemd/system/kube-proxy.service",
    "/etc/systemd/system/kube-proxy.service.d/*.conf",
)
APPLY = (
    "restart kube-proxy (`systemctl restart kube-proxy`, or `kubectl -n kube-system rollout restart "
    "daemonset/kube-proxy` where it runs as a DaemonSet)"
)  # what makes it read the change: already a sentence (owners.located_advice puts "then" before it)
LOCALHOST_OFF = "`localhostNodePorts: false`"
KEEPS_OFF = "nothing: kube-proxy leaves route_localnet alone with this"

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z]+)\s*:\s*(?P<value>[^#]*)")
_ITEM = re.compile(r"^\s*-\s*['\"]?(?P<value>[^'\"#\s]+)")
_FLAG_LOCALHOST = re.compile(r"--iptables-localhost-nodeports(?:=|\s+)(?P<value>true|false)\b")
_FLAG_ADDRESSES = re.compile(r"--nodeport-addresses(?:=|\s+)['\"]?(?P<value>[^\s'\"]+)")


def _covers_localhost(word: str) -> bool:
    """Whether a nodePortAddresses entry includes 127.0.0.1 (kube-proxy's ContainsIPv4Loopback)."""
    try:
        return ipaddress.ip_address("127.0.0.1") in ipaddress.ip_network(word, strict=False)
    except ValueError:
        return False  # "primary" and other keywords name the node's own addresses


def _words(value: str) -> list[str]:
    return [w.strip(" '\"") for w in value.strip().strip("[]").split(",") if w.strip(" '\"")]


def _yaml_settings(path: str, text: str) -> list[ManagerSetting]:
    found: list[ManagerSetting] = []
    lines = text.splitlines()
    has_localhost = "localhostNodePorts" in text
    for number, line in numbered(text):
        key = _KEY.match(line)
        if key is None:
            continue
        name, value = key.group("key"), key.group("value").strip()
        if name == "localhostNodePorts":
            on = value.lower() != "false"
            change = LOCALHOST_OFF if on else KEEPS_OFF
            found.append(ManagerSetting(path, number, line.strip(), change, None))
        elif name == "iptables" and not value and not has_localhost:
            change = f"add {LOCALHOST_OFF} under it"
            found.append(ManagerSetting(path, number, line.strip(), change, None))
        elif name == "nodePortAddresses":
            entries = [(number, line, w) for w in _words(value)] if value else []
            for after in range(number, len(lines)):  # a block list follows the key
                item = _ITEM.match(lines[after]) if not value else None
                if item is None:
                    break
                entries.append((after + 1, lines[after], item.group("value")))
            for at, text_line, word in entries:
                if narrow(word) is not None:
                    found.append(located(path, at, text_line, word, widen(word)))
            if entries and not any(_covers_localhost(word) for _at, _line, word in entries):
                found.append(ManagerSetting(path, number, line.strip(), KEEPS_OFF, None))
    return found


def settings(files: Mapping[str, str]) -> tuple[ManagerSetting, ...]:
    """localhostNodePorts (or where to add it), and narrow nodePortAddresses entries, from the
    configuration files and the flags in unit and defaults files."""
    found: list[ManagerSetting] = []
    for path in sorted(files):
        text = files[path]
        if "KubeProxyConfiguration" in text or path.endswith((".conf", ".yaml")) and "nodePortAddresses" in text:
            found += _yaml_settings(path, text)
        for number, line in numbered(text):
            flag = _FLAG_LOCALHOST.search(line)
            if flag:
                on = flag.group("value") == "true"
                change = "`--iptables-localhost-nodeports=false`" if on else KEEPS_OFF
                found.append(ManagerSetting(path, number, line.strip(), change, None))
            addresses = _FLAG_ADDRESSES.search(line)
            for word in _words(addresses.group("value")) if addresses else []:
                if narrow(word) is not None:
                    found.append(located(path, number, line, word, widen(word)))
    return tuple(found)


def route_localnet_cause(on: Sequence[str], config: Optional[ManagerConfig], running: bool) -> Optional[str]:
    """Why `all` route_localnet is 1 when kube-proxy runs (``running``: its chains or its files are
    there) and what to change; None when kube-proxy is not the cause."""
    if "all" not in on or not (running or (config is not None and config.settings)):
        return None
    switches = [s for s in (config.settings if config is not None else ()) if s.address is None]
    if any(s.change == KEEPS_OFF for s in switches):
        return None
    said = "kube-proxy sets net.ipv4.conf.all.route_localnet=1 in iptables mode for NodePorts on localhost"
    if switches:
        where = "; ".join(f"{s.path}:{s.line} `{s.text}`: {s.change}" for s in switches[:2])
        return (
            f"{said}: {where}; then {APPLY}, and `sysctl -w net.ipv4.conf.all.route_localnet=0` "
            "(kube-proxy never turns it back off)."
        )
    looked = ", ".join(config.looked_at) if config is not None else "nothing (not a live audit)"
    return (
        f"{said} unless `iptables.localhostNodePorts: false` (--iptables-localhost-nodeports=false) or a "
        f"nodePortAddresses without 127.0.0.0/8 (--nodeport-addresses) is set; lbfw looked at {looked} and found "
        "neither."
    )

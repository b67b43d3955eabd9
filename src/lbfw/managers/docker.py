"""Docker: /etc/docker/daemon.json and dockerd's flags, for the two loopback settings that matter.

- `"ip": "127.0.0.1"` (`--ip`): ports published without an address bind to 127.0.0.1 only; the
  `-d 127.0.0.1/32` DNAT and the raw "drop remote loopback" rules Docker writes for them are
  deliberate and stay quiet.
- `"userland-proxy": false` (`--userland-proxy=false`): Docker's bridge driver runs in hairpin
  mode and writes 1 to /proc/sys/net/ipv4/conf/<bridge>/route_localnet for each bridge it sets up
  (docker0, br-<id>), and never writes 0 (moby, libnetwork/drivers/bridge:
  setupLoopbackAdressesRouting, "Unable to enable local routing for hairpin mode"). LB005 and
  doctor name that line when the bridge's route_localnet is on.

Pure: texts in, settings out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Optional

from ..model import ManagerConfig, ManagerSetting
from .addresses import located, narrow, numbered

OWNER = "docker"
DAEMON_JSON = "/etc/docker/daemon.json"
FILES = (
    DAEMON_JSON,
    "/etc/default/docker",
    "/etc/sysconfig/docker",
    "/etc/systemd/system/docker.service",
    "/etc/systemd/system/docker.service.d/*.conf",
)
APPLY = "`systemctl restart docker`"
USERLAND_PROXY_OFF = "userland-proxy off"

_JSON_PROXY = re.compile(r'"userland-proxy"\s*:\s*false\b')
_JSON_IP = re.compile(r'"ip"\s*:\s*"(?P<addr>[^"]+)"')
_FLAG_PROXY = re.compile(r"--userland-proxy(?:=|\s+)false\b")
_FLAG_IP = re.compile(r"--ip(?:=|\s+)(?P<addr>\S+)")
_BRIDGE = re.compile(r"^(?:docker0|br-[0-9a-f]{12})$")


def is_bridge(interface: str) -> bool:
    """Whether ``interface`` is one of Docker's bridges (docker0, or br-<network id> of a user network)."""
    return bool(_BRIDGE.match(interface))


def settings(files: Mapping[str, str]) -> tuple[ManagerSetting, ...]:
    """Where userland-proxy is turned off and where the default binding address is loopback."""
    found: list[ManagerSetting] = []
    for path in sorted(files):
        is_json = path == DAEMON_JSON
        proxy, addr = (_JSON_PROXY, _JSON_IP) if is_json else (_FLAG_PROXY, _FLAG_IP)
        for number, line in numbered(files[path]):
            if not is_json and line.lstrip().startswith("#"):
                continue
            if proxy.search(line):
                change = (
                    'write `"userland-proxy": true` (or delete the line: true is the default)'
                    if is_json
                    else "drop `--userland-proxy=false`"
                )
                found.append(ManagerSetting(path, number, line.strip(), change, None))
            ip = addr.search(line)
            if ip and narrow(ip.group("addr")) is not None:
                change = (
                    "ports published without an address bind to it (the /32 rules Docker writes for them are "
                    "deliberate); publish on the address you mean (`docker run -p ADDR:PORT:PORT`) or change it"
                )
                found.append(located(path, number, line, ip.group("addr"), change))
    return tuple(found)


def userland_proxy_off(config: Optional[ManagerConfig]) -> Optional[ManagerSetting]:
    """The line that turns userland-proxy off, or None."""
    for setting in config.settings if config is not None else ():
        if setting.address is None and "userland-proxy" in setting.text:
            return setting
    return None


def route_localnet_cause(on: Sequence[str], config: Optional[ManagerConfig]) -> Optional[str]:
    """Why route_localnet is 1 on Docker's bridges among ``on`` and what to change; None when none is."""
    bridges = [name for name in on if is_bridge(name)]
    if not bridges:
        return None
    names = ", ".join(bridges)
    reset = " ".join(f"net.ipv4.conf.{name}.route_localnet=0" for name in bridges)
    setting = userland_proxy_off(config)
    if setting is not None:
        return (
            f"Docker set route_localnet on {names} because userland-proxy is off ({setting.path}:{setting.line} "
            f"`{setting.text}`): {setting.change}, then {APPLY} and `sysctl -w {reset}` "
            "(Docker never turns it back off)."
        )
    looked = ", ".join(config.looked_at) if config is not None else "nothing (not a live audit)"
    return (
        f"Docker sets route_localnet on its bridges ({names}) when userland-proxy is off (`dockerd "
        f'--userland-proxy=false` or `"userland-proxy": false` in {DAEMON_JSON}); lbfw looked at {looked} '
        "and found no such setting."
    )

"""`lbfw audit --live` on a host whose rules a manager wrote: each manager's configuration file in a
private /etc (a mount namespace of its own; the host's /etc is never read), its chains or tables
loaded for real in a private network namespace, and the finding names the file, the line and the
change. Docker's and kube-proxy's route_localnet are set with the real sysctl in the namespace."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from private_etc import lbfw_with_etc, make_etc  # tests/kernel is on sys.path

from lbfw.sandbox.netns import Namespace

pytestmark = pytest.mark.kernel

CSF_V4 = """\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ALLOWIN - [0:0]
:LOCALINPUT - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -j LOCALINPUT
-A INPUT -p tcp --dport 22 -j ACCEPT
-A LOCALINPUT -j ALLOWIN
-A ALLOWIN -s 127.0.0.1/32 -j ACCEPT
COMMIT
"""

SHOREWALL_V4 = """\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:shorewall - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -s 127.0.0.1/32 -p tcp -m tcp --dport 5432 -j ACCEPT
COMMIT
"""

NIXOS_V4 = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:nixos-fw - [0:0]
:nixos-fw-accept - [0:0]
:nixos-fw-refuse - [0:0]
-A INPUT -j nixos-fw
-A nixos-fw -i lo -j nixos-fw-accept
-A nixos-fw -s 127.0.0.1/32 -j nixos-fw-accept
-A nixos-fw -m conntrack --ctstate RELATED,ESTABLISHED -j nixos-fw-accept
-A nixos-fw -j nixos-fw-refuse
-A nixos-fw-accept -j ACCEPT
-A nixos-fw-refuse -j DROP
COMMIT
"""

PROXMOX_V4 = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:PVEFW-INPUT - [0:0]
:PVEFW-HOST-IN - [0:0]
-A INPUT -j PVEFW-INPUT
-A PVEFW-INPUT -j PVEFW-HOST-IN
-A PVEFW-HOST-IN -i lo -j ACCEPT
-A PVEFW-HOST-IN -s 127.0.0.1/32 -p tcp -m tcp --dport 8006 -j ACCEPT
-A PVEFW-HOST-IN -j DROP
COMMIT
"""

FW4_NFT = """\
table inet fw4 {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tiif "lo" accept comment "!fw4: Accept traffic from loopback"
\t\tip saddr 127.0.0.1 tcp dport 5432 accept comment "!fw4: Allow-local-db"
\t}
}
"""

CASES = {
    "csf": (
        CSF_V4,
        {"csf/csf.allow": "# hosts csf always allows\n10.1.1.1\n127.0.0.1 # local\n", "csf/csf.ignore": ""},
        "/etc/csf/csf.allow:3 `127.0.0.1 # local`: write `127.0.0.0/8` in place of `127.0.0.1`",
        "then `csf -r`.",
    ),
    "shorewall": (
        SHOREWALL_V4,
        {"shorewall/rules": "?SECTION NEW\n#ACTION SOURCE DEST PROTO DPORT\nACCEPT  $FW:127.0.0.1  $FW  tcp  5432\n"},
        "/etc/shorewall/rules:3 `ACCEPT  $FW:127.0.0.1  $FW  tcp  5432`: write `127.0.0.0/8` in place of `127.0.0.1`",
        "then `shorewall check`, then `shorewall reload`.",
    ),
    "nixos": (
        NIXOS_V4,
        {
            "nixos/configuration.nix": "{ ... }:\n{\n  networking.firewall.enable = true;\n"
            "  networking.firewall.extraCommands = ''\n"
            "    iptables -A nixos-fw -s 127.0.0.1 -j nixos-fw-accept\n  '';\n}\n"
        },
        "/etc/nixos/configuration.nix:5 `iptables -A nixos-fw -s 127.0.0.1 -j nixos-fw-accept`: write `127.0.0.0/8`",
        "then `nixos-rebuild switch`.",
    ),
    "proxmox": (
        PROXMOX_V4,
        {
            "pve/firewall/cluster.fw": "[OPTIONS]\nenable: 1\n",
            "pve/nodes/pve1/host.fw": "[OPTIONS]\nenable: 1\n\n[RULES]\n"
            "IN ACCEPT -source 127.0.0.1 -p tcp -dport 8006\n",
        },
        "/etc/pve/nodes/pve1/host.fw:5 `IN ACCEPT -source 127.0.0.1 -p tcp -dport 8006`: write `127.0.0.0/8`",
        "then `pve-firewall compile` (it checks the files), then `pve-firewall restart`.",
    ),
    "fw4": (
        FW4_NFT,
        {
            "config/firewall": "config defaults\n\toption input 'REJECT'\n\nconfig rule\n"
            "\toption name 'Allow-local-db'\n\toption src_ip '127.0.0.1'\n\toption dest_port '5432'\n"
            "\toption target 'ACCEPT'\n"
        },
        "/etc/config/firewall:6 `option src_ip '127.0.0.1'`: write `127.0.0.0/8` in place of `127.0.0.1`",
        "then `fw4 reload`.",
    ),
}


def load(space: Namespace, text: str) -> None:
    if text.startswith("*"):
        space.load_iptables(text, family="ip", backend="legacy" if space.legacy_available() else "nft")
    else:
        space.load_nft(text)


@pytest.fixture
def private_etc():
    made: list[Path] = []

    def make(files: dict) -> Path:
        made.append(make_etc(files))
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def audit_live(space: Namespace, etc: Path, binds: tuple = ()) -> dict:
    proc = lbfw_with_etc(space, etc, "audit", "--live", "--format", "json", "--fail-on", "never", binds=binds)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("manager", sorted(CASES))
def test_live_audit_names_the_managers_file_line_and_change(manager, private_etc):
    rules, files, located, then = CASES[manager]
    etc = private_etc(files)
    with Namespace() as space:
        load(space, rules)
        doc = audit_live(space, etc)
        fix = lbfw_with_etc(space, etc, "fix")
    (finding,) = [f for f in doc["findings"] if f["owner"] == manager]
    assert located in finding["message"] and finding["message"].endswith(then), finding["message"]
    # the fixer refuses the rule with the same located advice (its text may be wrapped) and changes nothing
    said = " ".join((fix.stdout + fix.stderr).split())
    assert " ".join(located.split()) in said and "not fixed" in said, said


def test_live_audit_without_the_managers_file_names_the_files_looked_at(private_etc):
    etc = private_etc({})
    with Namespace() as space:
        load(space, CSF_V4)
        doc = audit_live(space, etc)
    (finding,) = [f for f in doc["findings"] if f["owner"] == "csf"]
    assert "lbfw looked at /etc/csf/csf.allow, /etc/csf/csf.ignore and found no narrow loopback" in finding["message"]


DOCKER_V4 = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8080 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 127.0.0.0/8 -o docker0 -m addrtype --src-type LOCAL -j MASQUERADE
-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
"""

DAEMON_JSON = '{\n  "ip": "127.0.0.1",\n  "log-driver": "journald",\n  "userland-proxy": false\n}\n'


def test_route_localnet_docker_set_on_its_bridge_names_daemon_json(private_etc):
    etc = private_etc({"docker/daemon.json": DAEMON_JSON})
    with Namespace() as space:
        space.add_interface("docker0")
        space.run(["sysctl", "-q", "-w", "net.ipv4.conf.docker0.route_localnet=1"])  # what dockerd writes
        load(space, DOCKER_V4)
        doc = audit_live(space, etc)
        doctor = lbfw_with_etc(space, etc, "doctor", "--format", "json")
    (finding,) = doc["findings"]  # Docker's own /32 rules stay quiet: only route_localnet is reported
    assert finding["check"] == "LB005"
    message = finding["message"]
    assert "Docker set route_localnet on docker0 because userland-proxy is off" in message
    assert '/etc/docker/daemon.json:4 `"userland-proxy": false`' in message
    assert "`sysctl -w net.ipv4.conf.docker0.route_localnet=0`" in message
    items = [i for i in json.loads(doctor.stdout)["items"] if "route_localnet" in i["subject"]]
    assert items and items[0]["severity"] == "error", doctor.stdout + doctor.stderr
    assert any("/etc/docker/daemon.json:4" in line for line in items[0]["fix"]), items


KUBE_V4 = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-NODEPORTS - [0:0]
-A INPUT -j KUBE-NODEPORTS
COMMIT
"""

KUBE_CONFIG = (
    "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 10.244.0.0/16\n"
    "iptables:\n  masqueradeAll: false\n  localhostNodePorts: true\nmode: iptables\n"
)


def test_route_localnet_kube_proxy_set_on_all_names_its_configuration(private_etc):
    etc = private_etc({})
    state = Path(tempfile.mkdtemp(prefix="lbfw-kube-proxy-"))
    try:
        (state / "config.conf").write_text(KUBE_CONFIG)
        with Namespace() as space:
            space.add_interface("eth0")
            space.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"])  # what kube-proxy writes
            load(space, KUBE_V4)
            doc = audit_live(space, etc, binds=((state, "/var/lib/kube-proxy"),))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    (finding,) = [f for f in doc["findings"] if f["check"] == "LB005"]
    message = finding["message"]
    assert "kube-proxy sets net.ipv4.conf.all.route_localnet=1" in message
    assert "/var/lib/kube-proxy/config.conf:6 `localhostNodePorts: true`: `localhostNodePorts: false`" in message

"""The managers' own configuration (Docker, kube-proxy, fw4, CSF, Shorewall, NixOS, Proxmox): the
parsers find the narrow loopback line and its change, owner findings and the fixer's refusal name
it, and LB005 / doctor say which manager turned route_localnet on. Pure: texts in, no host."""

from __future__ import annotations

from pathlib import Path

import pytest

from lbfw.checks import owners
from lbfw.doctor.firewall import route_localnet_items
from lbfw.doctor.host import Host
from lbfw.fix.plan import plan_fixes
from lbfw.managers import csf, docker, fw4, kube_proxy, nixos, proxmox, shorewall
from lbfw.model import HostFacts, ManagerConfig
from lbfw.pipeline import audit_ruleset, read_ruleset

MODULES = (docker, kube_proxy, fw4, csf, shorewall, nixos, proxmox)


def config(module, files: dict) -> ManagerConfig:
    return ManagerConfig(module.OWNER, tuple(files), module.settings(files), module.APPLY)


def where(settings) -> list[tuple[str, int, str]]:
    return [(s.path, s.line, s.address) for s in settings]


def audit(tmp_path: Path, name: str, text: str, facts: HostFacts):
    path = tmp_path / name
    path.write_text(text)
    ruleset = read_ruleset([str(path)], "auto", "auto")
    ruleset.host = facts
    findings, _ = audit_ruleset(ruleset)
    return ruleset, findings


def test_every_manager_module_is_an_owner_lbfw_locates():
    assert [m.OWNER for m in MODULES] == list(owners.LOCATED)
    assert set(owners.LOCATED) <= set(owners.OWNERS)


def test_csf_allow_and_ignore_lines_plain_and_advanced():
    files = {
        csf.ALLOW: "# csf.allow\n127.0.0.1 # local\n10.0.0.1\ntcp|in|d=22|s=127.0.0.1\n127.0.0.0/8\nInclude /etc/x\n",
        csf.IGNORE: "127.0.0.1\n::1\n",
    }
    found = csf.settings(files)
    assert where(found) == [(csf.ALLOW, 2, "127.0.0.1"), (csf.ALLOW, 4, "127.0.0.1"), (csf.IGNORE, 1, "127.0.0.1")]
    assert "-I INPUT -i lo -j ACCEPT" in found[0].change and "lfd" in found[2].change


def test_shorewall_rules_and_hosts_host_columns():
    files = {
        shorewall.RULES: "?SECTION NEW\n# ACCEPT $FW:127.0.0.1 $FW\nACCEPT  $FW:127.0.0.1  $FW  tcp 5432\n"
        "ACCEPT net $FW tcp 22\nACCEPT all:127.0.0.0/8 $FW\nDNAT net loc:127.0.0.1:8080 tcp 80\n",
        shorewall.HOSTS: "loc eth1:127.0.0.2,10.0.0.0/8\n",
    }
    assert where(shorewall.settings(files)) == [
        (shorewall.RULES, 3, "127.0.0.1"),
        (shorewall.HOSTS, 1, "127.0.0.2"),
    ]


def test_fw4_uci_options_and_lists_with_their_section():
    text = (
        "config defaults\n\toption input 'REJECT'\n\nconfig rule\n\toption name 'Allow-local-db'\n"
        "\toption src 'lan'\n\toption src_ip '127.0.0.1'\n\tlist dest_ip \"127.0.0.1\"\n\toption dest_port '5432'\n"
        "\toption src_ip '127.0.0.0/8'\n"
    )
    found = fw4.settings({fw4.FIREWALL: text})
    assert where(found) == [(fw4.FIREWALL, 7, "127.0.0.1"), (fw4.FIREWALL, 8, "127.0.0.1")]
    assert "`option src_ip '127.0.0.0/8'` in config rule" in found[0].change


def test_nixos_extra_commands_not_other_options_or_comments():
    text = (
        "{ config, ... }:\n{\n  networking.firewall.extraCommands = ''\n"
        "    iptables -A nixos-fw -s 127.0.0.1 -j nixos-fw-accept\n"
        "    # iptables -A nixos-fw -s 127.0.0.1 -p tcp --dport 22 -j nixos-fw-accept\n  '';\n"
        '  networking.firewall.extraInputRules = "ip saddr 127.0.0.1 tcp dport 5432 accept";\n'
        '  services.redis.servers."".bind = "127.0.0.1";\n}\n'
    )
    path = "/etc/nixos/configuration.nix"
    found = nixos.settings({path: text})
    assert where(found) == [(path, 4, "127.0.0.1"), (path, 7, "127.0.0.1")]
    assert "trustedInterfaces" in found[0].change


def test_proxmox_rules_ipsets_aliases_and_disabled_rules():
    text = (
        "[OPTIONS]\nenable: 1\n\n[ALIASES]\nlocal 127.0.0.1 # this host\n\n[IPSET management]\n127.0.0.1\n"
        "10.0.0.0/24\n\n[RULES]\nIN ACCEPT -source 127.0.0.1 -p tcp -dport 8006\n"
        "|IN ACCEPT -source 127.0.0.2 -p tcp\nIN ACCEPT -source +management -p tcp -dport 22\n"
    )
    node = "/etc/pve/nodes/pve1/host.fw"
    found = proxmox.settings({proxmox.CLUSTER: text, node: "[RULES]\nIN ACCEPT -dest 127.0.0.1,10.0.0.1\n"})
    assert where(found) == [
        (proxmox.CLUSTER, 5, "127.0.0.1"),
        (proxmox.CLUSTER, 8, "127.0.0.1"),
        (proxmox.CLUSTER, 12, "127.0.0.1"),
        (node, 2, "127.0.0.1"),
    ]


def test_docker_daemon_json_and_flags():
    files = {
        docker.DAEMON_JSON: '{\n  "ip": "127.0.0.1",\n  "userland-proxy": false\n}\n',
        "/etc/systemd/system/docker.service.d/override.conf": "[Service]\n# --userland-proxy=false\n"
        "ExecStart=/usr/bin/dockerd --userland-proxy=false\n",
    }
    found = docker.settings(files)
    assert [(s.path, s.line, s.address) for s in found] == [
        (docker.DAEMON_JSON, 2, "127.0.0.1"),
        (docker.DAEMON_JSON, 3, None),
        ("/etc/systemd/system/docker.service.d/override.conf", 3, None),
    ]
    off = docker.userland_proxy_off(config(docker, files))
    assert off is not None and off.path == docker.DAEMON_JSON and '"userland-proxy": true' in off.change
    assert docker.settings({docker.DAEMON_JSON: '{"userland-proxy": true, "ip": "0.0.0.0"}'}) == ()
    assert docker.is_bridge("docker0") and docker.is_bridge("br-0123456789ab") and not docker.is_bridge("eth0")


def test_kube_proxy_configuration_and_flags():
    conf = "/var/lib/kube-proxy/config.conf"
    text = (
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables:\n"
        "  masqueradeAll: false\nmode: iptables\nnodePortAddresses:\n- 127.0.0.1/32\n- 10.0.0.0/8\n"
    )
    found = kube_proxy.settings({conf: text})
    assert [(s.line, s.address, s.change) for s in found] == [
        (3, None, "add `localhostNodePorts: false` under it"),
        (7, "127.0.0.1/32", "write `127.0.0.0/8` in place of `127.0.0.1/32`"),
    ]
    inline = (
        "kind: KubeProxyConfiguration\niptables:\n  localhostNodePorts: true\nnodePortAddresses: ['127.0.0.1/32']\n"
    )
    assert [(s.line, s.address) for s in kube_proxy.settings({conf: inline})] == [(3, None), (4, "127.0.0.1/32")]
    flags = {
        "/etc/default/kube-proxy": "KUBE_PROXY_ARGS=--iptables-localhost-nodeports=true "
        "--nodeport-addresses=127.0.0.1/32\n"
    }
    assert [(s.line, s.address) for s in kube_proxy.settings(flags)] == [(1, None), (1, "127.0.0.1/32")]


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


def test_owner_finding_names_the_file_line_and_change_and_the_fixer_refuses_with_it(tmp_path):
    files = {csf.ALLOW: "# allowed\n10.1.1.1\n127.0.0.1 # local\n", csf.IGNORE: ""}
    facts = HostFacts(managers={"csf": config(csf, files)})
    ruleset, findings = audit(tmp_path, "csf.v4", CSF_V4, facts)
    (finding,) = [f for f in findings if f.owner == "csf"]
    assert "/etc/csf/csf.allow:3 `127.0.0.1 # local`: write `127.0.0.0/8` in place of `127.0.0.1`" in finding.message
    assert finding.message.endswith("then `csf -r`.")
    assert owners.advice("csf") not in finding.message
    plan = plan_fixes(ruleset, findings, texts={str(tmp_path / "csf.v4"): CSF_V4})
    assert not plan.edits and "/etc/csf/csf.allow:3" in plan.refusals[0].why


def test_owner_finding_names_the_files_looked_at_when_none_holds_the_address(tmp_path):
    facts = HostFacts(managers={"csf": ManagerConfig("csf", (csf.ALLOW, csf.IGNORE), (), csf.APPLY)})
    _, findings = audit(tmp_path, "csf.v4", CSF_V4, facts)
    (finding,) = [f for f in findings if f.owner == "csf"]
    assert "lbfw looked at /etc/csf/csf.allow, /etc/csf/csf.ignore and found no narrow loopback" in finding.message


def test_a_file_audit_keeps_the_generic_owner_sentence(tmp_path):
    _, findings = audit(tmp_path, "csf.v4", CSF_V4, None)
    (finding,) = [f for f in findings if f.owner == "csf"]
    assert finding.message.endswith(owners.advice("csf")) and "owner_advice" not in finding.extra


def test_located_advice_prefers_the_settings_naming_the_rules_address():
    files = {proxmox.CLUSTER: "[IPSET a]\n127.0.0.2\n[RULES]\nIN ACCEPT -source 127.0.0.1 -p tcp\n"}
    text = owners.located_advice("proxmox", config(proxmox, files), "-A PVEFW-HOST-IN -s 127.0.0.1/32 -j RETURN")
    assert ":4 `IN ACCEPT -source 127.0.0.1 -p tcp`" in text and ":2" not in text
    assert text.endswith("then `pve-firewall compile` (it checks the files), then `pve-firewall restart`.")


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
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"""

DAEMON_JSON = '{\n  "ip": "127.0.0.1",\n  "log-driver": "journald",\n  "userland-proxy": false\n}\n'


def test_dockers_deliberate_loopback_rules_stay_quiet(tmp_path):
    facts = HostFacts(managers={"docker": config(docker, {docker.DAEMON_JSON: DAEMON_JSON})})
    _, findings = audit(tmp_path, "docker.v4", DOCKER_V4, facts)
    assert findings == []


def test_route_localnet_on_dockers_bridge_names_daemon_json(tmp_path):
    facts = HostFacts(
        route_localnet={"all": 0, "default": 0, "lo": 0, "docker0": 1, "eth0": 0},
        interfaces=("lo", "eth0", "docker0"),
        managers={"docker": config(docker, {docker.DAEMON_JSON: DAEMON_JSON})},
    )
    _, findings = audit(tmp_path, "docker.v4", DOCKER_V4, facts)
    (finding,) = findings
    assert finding.check == "LB005"
    cause = "Docker set route_localnet on docker0 because userland-proxy is off (/etc/docker/daemon.json:4"
    assert cause in finding.message
    assert "`sysctl -w net.ipv4.conf.docker0.route_localnet=0`" in finding.message
    assert finding.extra["set_by"] and finding.extra["set_by"][0].startswith("Docker set")


def test_route_localnet_without_a_docker_setting_names_the_files_looked_at():
    cause = docker.route_localnet_cause(["docker0"], ManagerConfig("docker", (docker.DAEMON_JSON,), (), docker.APPLY))
    assert cause is not None and "lbfw looked at /etc/docker/daemon.json and found no such setting" in cause
    assert docker.route_localnet_cause(["eth0", "all"], None) is None


KUBE_V4 = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-NODEPORTS - [0:0]
-A INPUT -j KUBE-NODEPORTS
COMMIT
"""


def test_route_localnet_on_all_with_kube_proxy_names_its_configuration(tmp_path):
    conf = "/var/lib/kube-proxy/config.conf"
    text = "kind: KubeProxyConfiguration\niptables:\n  localhostNodePorts: true\nmode: iptables\n"
    facts = HostFacts(
        route_localnet={"all": 1, "default": 1, "lo": 0, "eth0": 1},
        interfaces=("lo", "eth0"),
        managers={"kube-proxy": config(kube_proxy, {conf: text})},
    )
    _, findings = audit(tmp_path, "kube.v4", KUBE_V4, facts)
    (finding,) = findings
    assert f"{conf}:3 `localhostNodePorts: true`: `localhostNodePorts: false`" in finding.message
    host = Host(platform="linux", route_localnet=facts.route_localnet)
    ruleset = read_ruleset([str(tmp_path / "kube.v4")], "auto", "auto")
    ruleset.host = facts
    (item,) = route_localnet_items(host, ruleset)
    assert item.severity == "error" and any(f"{conf}:3" in line for line in item.fix)
    assert "kube-proxy sets net.ipv4.conf.all.route_localnet=1" in item.why


def test_kube_proxy_with_localhost_nodeports_off_is_not_blamed():
    conf = "/var/lib/kube-proxy/config.conf"
    off = config(kube_proxy, {conf: "kind: KubeProxyConfiguration\niptables:\n  localhostNodePorts: false\n"})
    assert kube_proxy.route_localnet_cause(["all"], off, True) is None
    nothing = ManagerConfig("kube-proxy", (conf,), (), kube_proxy.APPLY)
    cause = kube_proxy.route_localnet_cause(["all", "eth0"], nothing, True)
    assert cause is not None and f"lbfw looked at {conf} and found neither" in cause
    assert kube_proxy.route_localnet_cause(["all"], nothing, False) is None
    elsewhere = config(
        kube_proxy, {conf: "kind: KubeProxyConfiguration\niptables: {}\nnodePortAddresses: [10.0.0.0/8]\n"}
    )
    assert kube_proxy.route_localnet_cause(["all"], elsewhere, True) is None
    loopback = config(kube_proxy, {conf: "kind: KubeProxyConfiguration\niptables:\nnodePortAddresses:\n- 0.0.0.0/0\n"})
    assert kube_proxy.route_localnet_cause(["all"], loopback, True) is not None


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.OWNER)
def test_no_file_no_setting(module):
    assert module.settings({}) == ()

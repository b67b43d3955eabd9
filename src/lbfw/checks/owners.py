"""Which firewall manager owns a rule, from table, chain and comment names.

A rule Docker, kube-proxy, ufw, firewalld, fail2ban, OpenWrt's fw4, CSF, Shorewall, NixOS or
Proxmox wrote is rewritten
by that manager on its next reload, so a finding on it must say where the manager's own
configuration changes instead. Pure string tests, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from ..managers.addresses import matching
from ..model import Chain, HostFacts, ManagerConfig, Rule, Table
from ..results import Finding

DOCKER = "docker"
KUBE_PROXY = "kube-proxy"
UFW = "ufw"
FIREWALLD = "firewalld"
FAIL2BAN = "fail2ban"
FW4 = "fw4"
CSF = "csf"
SHOREWALL = "shorewall"
NIXOS = "nixos"
PROXMOX = "proxmox"
OWNERS = (DOCKER, KUBE_PROXY, UFW, FIREWALLD, FAIL2BAN, FW4, CSF, SHOREWALL, NIXOS, PROXMOX)

# Where each manager's own configuration changes (the rule itself would be rewritten on reload).
ADVICE = {
    DOCKER: "publish the port on the address you mean (`docker run -p ADDR:PORT:PORT`) "
    "or change /etc/docker/daemon.json",
    KUBE_PROXY: "change the Service or kube-proxy's configuration (e.g. --nodeport-addresses)",
    UFW: "a rule made by `ufw allow` lives in /etc/ufw/user.rules, never edited by hand: "
    "`ufw delete` it and `ufw allow in on lo`; one in /etc/ufw/before.rules (before6.rules) is edited there, "
    "then `ufw reload`",
    FIREWALLD: "change the zone, policy or direct rule with `firewall-cmd --permanent`, then `firewall-cmd --reload`",
    FAIL2BAN: "change `ignoreip` or the action in /etc/fail2ban/jail.local",
    FW4: "change /etc/config/firewall, then `fw4 reload`",
    CSF: "change /etc/csf/csf.allow, csf.ignore or csf.conf, then `csf -r`",
    SHOREWALL: "change /etc/shorewall/rules (or policy, interfaces), then `shorewall check` and `shorewall reload`",
    NIXOS: "its rules are generated from configuration.nix: set networking.firewall.trustedInterfaces or "
    "extraCommands there, then `nixos-rebuild switch`",
    PROXMOX: "change /etc/pve/firewall/cluster.fw or /etc/pve/nodes/NODE/host.fw (or the GUI), then "
    "`pve-firewall compile` to check and `pve-firewall restart`",
}


def advice(owner: str, how: Optional[str] = None) -> str:
    """One sentence for a finding on a manager's rule, and the fixer's refusal to touch it: where to
    change it instead (``how``: the exact change when lbfw found it, e.g. firewalld's file:line and
    commands)."""
    how = how or ADVICE.get(owner, f"change {owner}'s own configuration")
    return f"This rule is managed by {owner}, which rewrites it: change {owner}'s configuration instead ({how})."


# The managers whose configuration files lbfw reads on a live host (read/hostfacts.py, managers/*.py).
LOCATED = (DOCKER, KUBE_PROXY, FW4, CSF, SHOREWALL, NIXOS, PROXMOX)


def located_advice(owner: str, config: ManagerConfig, rule_text: Optional[str] = None) -> str:
    """``advice(owner)`` with the file and line of the manager's setting behind the rule and the exact
    change (the settings naming the rule's address, else every narrow one found), or the files lbfw
    looked at when none holds one."""
    found = matching(config.settings, rule_text)
    head = f"This rule is managed by {owner}, which rewrites it: change {owner}'s configuration instead"
    if not found:
        looked = ", ".join(config.looked_at) or "no file"
        return f"{head} ({ADVICE[owner]}); lbfw looked at {looked} and found no narrow loopback address there."
    where = "; ".join(f"{s.path}:{s.line} `{s.text}`: {s.change}" for s in found[:3])
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return f"{head}: {where}{more}; then {config.apply}."


def locate(findings: Iterable[Finding], host: Optional[HostFacts]) -> None:
    """On a live audit, replace each finding's generic owner sentence by the located one, and keep it in
    ``extra["owner_advice"]`` for the fixer's refusal. Findings from files (no host facts) keep theirs."""
    if host is None:
        return
    for finding in findings:
        config = host.managers.get(finding.owner or "")
        if config is None or finding.owner not in LOCATED:
            continue
        generic = advice(finding.owner)
        if generic not in finding.message:
            continue
        text = located_advice(finding.owner, config, finding.rule.text if finding.rule is not None else None)
        finding.message = finding.message.replace(generic, text)
        finding.extra["owner_advice"] = text


# Table names the managers create in nftables (family-less).
_TABLES = {
    "firewalld": FIREWALLD,
    "fw4": FW4,
    "kube-proxy": KUBE_PROXY,
    "f2b-table": FAIL2BAN,
    "fail2ban": FAIL2BAN,
    "docker-bridges": DOCKER,
    "nixos-fw": NIXOS,
    "proxmox-firewall": PROXMOX,
    "proxmox-firewall-guests": PROXMOX,
}

# Chain-name prefixes (iptables chains are global names, so prefixes are the convention).
_CHAIN_PREFIXES = (
    ("DOCKER", DOCKER),  # DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-1, DOCKER_OUTPUT ...
    ("KUBE-", KUBE_PROXY),
    ("ufw-", UFW),
    ("ufw6-", UFW),
    ("f2b-", FAIL2BAN),
    ("fail2ban-", FAIL2BAN),
    ("nixos-fw", NIXOS),
    ("PVEFW-", PROXMOX),
    ("proxmox-fw-", PROXMOX),
)

# CSF's chains (plain names: only these exact ones).
_CSF_CHAINS = frozenset(
    (
        "LOCALINPUT",
        "LOCALOUTPUT",
        "ALLOWIN",
        "ALLOWOUT",
        "DENYIN",
        "DENYOUT",
        "INVALID",
        "INVDROP",
        "LOGDROPIN",
        "LOGDROPOUT",
        "CC_ALLOW",
        "CC_DENY",
        "CC_ALLOWP",
        "CC_DENYP",
        "SYNFLOOD",
        "PORTFLOOD",
        "UDPFLOOD",
        "GALLOWIN",
        "GDENYIN",
        "LF_ALLOWIN",
    )
)

# firewalld's iptables backend chain names.
_FIREWALLD_CHAINS = ("_direct", "_ZONES", "_ZONES_SOURCE", "_allow", "_deny", "_log", "_pre", "_post")
_FIREWALLD_PREFIXES = (
    "IN_",
    "FWDI_",
    "FWDO_",
    "FWD_",
    "PRE_",
    "POST_",
    "POSTROUTING_",
    "PREROUTING_",
    "INPUT_",
    "FORWARD_",
    "OUTPUT_",
)

_COMMENT_HINTS = (
    ("drop remote loopback", DOCKER),  # Docker's raw rule for ports published on 127.0.0.1
    ("docker", DOCKER),
    ("kubernetes", KUBE_PROXY),
    ("kube-proxy", KUBE_PROXY),
    ("!fw4", FW4),
    ("fail2ban", FAIL2BAN),
)


def _name(obj: object) -> str:
    if obj is None:
        return ""
    return obj if isinstance(obj, str) else getattr(obj, "name", "") or ""


def owner_of(table: Table | str | None, chain: Chain | str | None, rule: Optional[Rule] = None) -> Optional[str]:
    """The manager that owns ``rule`` in ``chain`` of ``table`` (objects or names), or None.

    Evidence in order: the table's name (nftables managers own whole tables), the chain's
    name, the target chain of a jump, then the rule's comment.
    """
    tname = _name(table)
    owner = _TABLES.get(tname)
    if owner is not None:
        return owner
    chains = getattr(table, "chains", None) or {}
    if "shorewall" in chains:  # Shorewall's own chain: every chain of the table is compiled by it
        return SHOREWALL
    cname = _name(chain)
    owner = _chain_owner(cname)
    if owner is not None:
        return owner
    if rule is None:
        return None
    comment = (getattr(rule, "comment", None) or "").lower()
    for hint, who in _COMMENT_HINTS:
        if hint in comment:
            return who
    action = getattr(rule, "action", None)
    target = getattr(action, "target", None) if action is not None else None
    if target and getattr(action, "kind", "") in ("jump", "goto"):
        return _chain_owner(target)
    return None


def _chain_owner(cname: str) -> Optional[str]:
    if not cname:
        return None
    for prefix, who in _CHAIN_PREFIXES:
        if cname.startswith(prefix):
            return who
    if cname in _CSF_CHAINS:
        return CSF
    if cname.startswith(_FIREWALLD_PREFIXES) and cname.endswith(_FIREWALLD_CHAINS):
        return FIREWALLD
    if cname.endswith("_direct") or cname.endswith("_ZONES"):
        return FIREWALLD
    return None

"""The managers' commands for a narrow loopback rule they own (pure: no host needed)."""

from __future__ import annotations

from lbfw.checks.owners import owner_of
from lbfw.managers import firewalld, ufw

DIRECT = """\
<?xml version="1.0" encoding="utf-8"?>
<direct>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-s 127.0.0.1 -j ACCEPT</rule>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="1">-p tcp --dport 22 -j ACCEPT</rule>
</direct>
"""


def test_ufw_user_rules_get_ufw_commands_not_an_edit():
    assert ufw.commands("ufw-user-input", "-A ufw-user-input -s 127.0.0.1 -j ACCEPT") == (
        "ufw delete allow from 127.0.0.1",
        "ufw allow in on lo",
    )
    assert ufw.commands("ufw-user-input", "-A ufw-user-input -s 127.0.0.1/32 -p tcp --dport 5432 -j ACCEPT") == (
        "ufw delete allow from 127.0.0.1 to any port 5432 proto tcp",
        "ufw allow in on lo",
    )
    assert ufw.commands("ufw-before-input", "-A ufw-before-input -s 127.0.0.1 -j ACCEPT") == ()
    assert owner_of("filter", "ufw-user-input") == "ufw"


def test_firewalld_direct_and_rich_rules_get_firewall_cmd():
    narrow, ssh = firewalld.direct_rules(DIRECT)
    assert narrow.line == 3 and firewalld.direct_commands(ssh) == ()
    assert firewalld.direct_commands(narrow) == (
        "firewall-cmd --permanent --direct --remove-rule ipv4 filter INPUT 0 -s 127.0.0.1 -j ACCEPT",
        "firewall-cmd --permanent --direct --add-rule ipv4 filter INPUT 0 -i lo -j ACCEPT",
        "firewall-cmd --reload",
    )
    rich = 'rule family="ipv4" source address="127.0.0.1" accept'
    remove = f"firewall-cmd --permanent --zone=public --remove-rich-rule='{rich}'"
    assert firewalld.rich_commands("public", rich)[0] == remove
    assert owner_of("filter", "IN_public_allow") == "firewalld"


def test_csf_shorewall_nixos_proxmox_are_recognised():
    assert owner_of("filter", "LOCALINPUT") == "csf"
    assert owner_of("filter", "nixos-fw") == "nixos" and owner_of("nixos-fw", "input") == "nixos"
    assert owner_of("filter", "PVEFW-HOST-IN") == "proxmox"

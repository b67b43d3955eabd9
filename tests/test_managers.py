"""The managers' commands for a narrow loopback rule they own (pure: no host needed)."""

from __future__ import annotations

from lbfw.checks.owners import owner_of
from lbfw.managers import ufw


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


def test_csf_shorewall_nixos_proxmox_are_recognised():
    assert owner_of("filter", "LOCALINPUT") == "csf"
    assert owner_of("filter", "nixos-fw") == "nixos" and owner_of("nixos-fw", "input") == "nixos"
    assert owner_of("filter", "PVEFW-HOST-IN") == "proxmox"

"""The managers' commands for a narrow loopback rule they own (pure: no host needed)."""

from __future__ import annotations

from lbfw.checks.owners import owner_of
from lbfw.managers import ufw

# What ufw 0.36.2 wrote into user.rules for these commands (a private namespace, `ufw --force enable`):
# `ufw show added` printed the commands of ADDED, in this order.
USER_RULES = """\
### RULES ###

### tuple ### allow any any 0.0.0.0/0 any 127.0.0.1 in
-A ufw-user-input -s 127.0.0.1 -j ACCEPT

### tuple ### allow tcp 22 0.0.0.0/0 any 127.0.0.1 in
-A ufw-user-input -p tcp --dport 22 -s 127.0.0.1 -j ACCEPT

### tuple ### deny any 53 0.0.0.0/0 any 127.0.0.1 in
-A ufw-user-input -p tcp --dport 53 -s 127.0.0.1 -j DROP
-A ufw-user-input -p udp --dport 53 -s 127.0.0.1 -j DROP

### tuple ### allow any any 127.0.0.1 any 0.0.0.0/0 out
-A ufw-user-output -d 127.0.0.1 -j ACCEPT

### tuple ### allow_log tcp 8080 0.0.0.0/0 any 127.0.0.1 in comment=6c6f61642074657374
-A ufw-user-logging-input -p tcp --dport 8080 -s 127.0.0.1 -m conntrack --ctstate NEW -j LOG --log-prefix "[UFW ALLOW] "
-A ufw-user-logging-input -p tcp --dport 8080 -s 127.0.0.1 -j RETURN
-A ufw-user-input -p tcp --dport 8080 -s 127.0.0.1 -j ufw-user-logging-input
-A ufw-user-input -p tcp --dport 8080 -s 127.0.0.1 -j ACCEPT

### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in
-A ufw-user-input -p tcp --dport 80 -j ACCEPT

### tuple ### limit tcp 2222 0.0.0.0/0 any 0.0.0.0/0 in_eth0
-A ufw-user-input -i eth0 -p tcp --dport 2222 -j ufw-user-limit-accept

### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in_lo
-A ufw-user-input -i lo -p tcp --dport 22 -j ACCEPT

### END RULES ###
"""
ADDED = [
    "allow from 127.0.0.1",
    "allow from 127.0.0.1 to any port 22 proto tcp",
    "deny from 127.0.0.1 to any port 53",
    "allow out to 127.0.0.1",
    "allow log from 127.0.0.1 to any port 8080 proto tcp comment load test",
    "allow 80/tcp",
    "limit in on eth0 to any port 2222 proto tcp",
    "allow in on lo to any port 22 proto tcp",
]


def test_ufw_rules_are_rendered_from_their_tuples_as_ufw_show_added_prints_them():
    rules = ufw.user_rules(USER_RULES)
    assert [" ".join(r.words()) for r in rules] == ADDED
    assert [r.line for r in rules] == [3, 6, 9, 13, 16, 22, 25, 28]


def test_a_live_rule_is_found_in_user_rules_whatever_iptables_save_made_of_it():
    rules = ufw.user_rules(USER_RULES)
    live = "-A ufw-user-input -s 127.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT"
    assert ufw.find(rules, "ufw-user-input", live) == rules[1]
    assert ufw.find(rules, "ufw-user-input", "-A ufw-user-input -s 127.0.0.1/32 -j ACCEPT") == rules[0]
    assert ufw.find(rules, "ufw-user-output", "-A ufw-user-output -d 127.0.0.1/32 -j ACCEPT") == rules[3]
    assert (
        ufw.find(rules, "ufw-user-input", "-A ufw-user-input -s 127.0.0.1/32 -p tcp -m tcp --dport 23 -j ACCEPT")
        is None
    )


def test_a_narrow_allow_gets_its_loopback_twin_first_then_its_delete():
    allow, port, deny, out, logged, web, _, on_lo = ufw.user_rules(USER_RULES)
    assert ufw.fix_commands(allow) == (
        ("ufw", "allow", "in", "on", "lo"),
        ("ufw", "delete", "allow", "from", "127.0.0.1"),
    )
    assert [" ".join(argv) for argv in ufw.fix_commands(port)] == [
        "ufw allow in on lo to any port 22 proto tcp",
        "ufw delete allow from 127.0.0.1 to any port 22 proto tcp",
    ]
    assert [" ".join(argv) for argv in ufw.fix_commands(port, "range")] == [
        "ufw allow from 127.0.0.0/8 to any port 22 proto tcp",
        "ufw delete allow from 127.0.0.1 to any port 22 proto tcp",
    ]
    assert [" ".join(argv) for argv in ufw.fix_commands(out)] == [
        "ufw allow out on lo",
        "ufw delete allow out to 127.0.0.1",
    ]
    # the comment is not needed to delete the rule, and the twin is lbfw's, not the commented one
    assert [" ".join(argv) for argv in ufw.fix_commands(logged)] == [
        "ufw allow in on lo log to any port 8080 proto tcp",
        "ufw delete allow log from 127.0.0.1 to any port 8080 proto tcp",
    ]
    # a narrow deny would become a deny of all loopback; rules that are not narrow need nothing
    assert ufw.fix_commands(deny) == ufw.fix_commands(web) == ufw.fix_commands(on_lo) == ()


def test_ufw_commands_from_a_dump_when_user_rules_is_not_at_hand():
    assert ufw.commands("ufw-user-input", "-A ufw-user-input -s 127.0.0.1 -j ACCEPT") == (
        "ufw allow in on lo",
        "ufw delete allow from 127.0.0.1",
    )
    assert ufw.commands("ufw-user-input", "-A ufw-user-input -s 127.0.0.1/32 -p tcp --dport 5432 -j ACCEPT") == (
        "ufw allow in on lo to any port 5432 proto tcp",
        "ufw delete allow from 127.0.0.1 to any port 5432 proto tcp",
    )
    assert ufw.commands("ufw-before-input", "-A ufw-before-input -s 127.0.0.1 -j ACCEPT") == ()
    assert ufw.commands("ufw-user-input", "-A ufw-user-input -s 127.0.0.1 -j DROP") == ()
    assert owner_of("filter", "ufw-user-input") == "ufw"


def test_csf_shorewall_nixos_proxmox_are_recognised():
    assert owner_of("filter", "LOCALINPUT") == "csf"
    assert owner_of("filter", "nixos-fw") == "nixos" and owner_of("nixos-fw", "input") == "nixos"
    assert owner_of("filter", "PVEFW-HOST-IN") == "proxmox"

"""The line rewriter: every spelling of 127.0.0.1, both syntaxes, nothing else on the line touched."""

from __future__ import annotations

import pytest

from lbfw.fix.rewrite import Refuse, rewrite_iptables, rewrite_nft


@pytest.mark.parametrize(
    "line, direction, expected",
    [
        ("-A INPUT -s 127.0.0.1 -j ACCEPT", "in", "-A INPUT -i lo -j ACCEPT"),
        ("-A INPUT -s 127.0.0.1/32 -j ACCEPT", "in", "-A INPUT -i lo -j ACCEPT"),
        ("-A INPUT -s 127.0.0.1/255.255.255.255 -j ACCEPT", "in", "-A INPUT -i lo -j ACCEPT"),
        ("-A INPUT --source 127.0.0.1 -p tcp --dport 22 -j ACCEPT", "in", "-A INPUT -i lo -p tcp --dport 22 -j ACCEPT"),
        ("-A OUTPUT -d 127.0.0.1/32 -j ACCEPT", "out", "-A OUTPUT -o lo -j ACCEPT"),
        ("-A INPUT -s 127.0.0.1 -d 127.0.0.1 -j ACCEPT", "in", "-A INPUT -i lo -j ACCEPT"),
        # the interface is already there: the address match goes, nothing is added
        ("-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -i lo -j ACCEPT", "in", "-A INPUT -i lo -j ACCEPT"),
        ("-A OUTPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -o lo -j ACCEPT", "out", "-A OUTPUT -o lo -j ACCEPT"),
        # comments (even ones naming 127.0.0.1), states and spacing stay as written
        (
            '-A INPUT  -s 127.0.0.1  -m comment --comment "from 127.0.0.1 only" -m state --state NEW -j ACCEPT ',
            "in",
            '-A INPUT  -i lo  -m comment --comment "from 127.0.0.1 only" -m state --state NEW -j ACCEPT ',
        ),
    ],
)
def test_iptables_interface_style(line, direction, expected):
    new, how = rewrite_iptables(line, "interface", direction)
    assert new == expected
    assert how


@pytest.mark.parametrize(
    "line, expected",
    [
        ("-A INPUT -s 127.0.0.1 -j ACCEPT", "-A INPUT -s 127.0.0.0/8 -j ACCEPT"),
        ("-A INPUT -s 127.0.0.1/32 -j ACCEPT", "-A INPUT -s 127.0.0.0/8 -j ACCEPT"),
        ("-A INPUT -s 127.0.0.1/255.255.255.255 -j ACCEPT", "-A INPUT -s 127.0.0.0/255.0.0.0 -j ACCEPT"),
        ("-A INPUT -s ! 127.0.0.1 -i eth0 -j DROP", "-A INPUT -s ! 127.0.0.0/8 -i eth0 -j DROP"),
        ("-A INPUT ! -i lo -s 127.0.0.1/32 -j DROP", "-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP"),
        ("-A INPUT -s 10.0.0.1,127.0.0.1 -j ACCEPT", "-A INPUT -s 10.0.0.1,127.0.0.0/8 -j ACCEPT"),
        ("-A INPUT -s ::1/128 -j ACCEPT", None),
        ("-A INPUT -s 127.0.0.1/8 -j ACCEPT", None),  # already the whole block (host bits masked)
        ("-A INPUT -s 127.0.0.10 -j ACCEPT", None),
    ],
)
def test_iptables_range_style(line, expected):
    if expected is None:
        with pytest.raises(Refuse):
            rewrite_iptables(line, "range")
    else:
        assert rewrite_iptables(line, "range")[0] == expected


@pytest.mark.parametrize(
    "line, why",
    [
        ("-A INPUT ! -s 127.0.0.1 -j ACCEPT", "negates"),
        ("-A INPUT -i eth0 -s 127.0.0.1 -j ACCEPT", "eth0"),
        ("-A INPUT -m set --match-set lo src -j ACCEPT", "ipset"),
    ],
)
def test_iptables_interface_refusals(line, why):
    with pytest.raises(Refuse, match=why):
        rewrite_iptables(line, "interface", "in")


def test_iptables_address_list_falls_back_to_range():
    new, how = rewrite_iptables("-A INPUT -s 127.0.0.1,192.0.2.1 -j ACCEPT", "interface", "in")
    assert new == "-A INPUT -s 127.0.0.0/8,192.0.2.1 -j ACCEPT"
    assert "widened" in how


@pytest.mark.parametrize(
    "line, mode, direction, expected",
    [
        ("\t\tip saddr 127.0.0.1 accept", "interface", "in", '\t\tiif "lo" accept'),
        ("\t\tip daddr 127.0.0.1 counter accept", "interface", "out", '\t\toif "lo" counter accept'),
        ("ip saddr 127.0.0.1/32 tcp dport 22 accept", "interface", "in", 'iif "lo" tcp dport 22 accept'),
        ("ip saddr 127.0.0.1 ip daddr 127.0.0.1 accept", "interface", "in", 'iif "lo" accept'),
        ("\tip saddr 127.0.0.1 iif lo accept", "interface", "in", "\tiif lo accept"),
        (
            'ip saddr 127.0.0.1 accept comment "127.0.0.1 only" # 127.0.0.1',
            "interface",
            "in",
            'iif "lo" accept comment "127.0.0.1 only" # 127.0.0.1',
        ),
        ("ip saddr 127.0.0.1 accept", "range", "in", "ip saddr 127.0.0.0/8 accept"),
        ('iifname != "lo" ip saddr 127.0.0.1 drop', "range", None, 'iifname != "lo" ip saddr 127.0.0.0/8 drop'),
        (
            "ip saddr vmap { 127.0.0.1 : accept, 203.0.113.66 : drop }",
            "interface",
            "in",
            "ip saddr vmap { 127.0.0.0/8 : accept, 203.0.113.66 : drop }",
        ),
        ("ip saddr { 192.0.2.1, 127.0.0.1 } accept", "interface", "in", "ip saddr { 192.0.2.1, 127.0.0.0/8 } accept"),
        ("ip6 saddr ::1 accept", "range", "in", None),
        ("ip daddr 127.0.0.1 dnat to 127.0.0.1:8080", "range", None, "ip daddr 127.0.0.0/8 dnat to 127.0.0.1:8080"),
    ],
)
def test_nft(line, mode, direction, expected):
    if expected is None:
        with pytest.raises(Refuse):
            rewrite_nft(line, mode, direction)
    else:
        assert rewrite_nft(line, mode, direction)[0] == expected


def test_nft_overlapping_set_element_is_refused():
    with pytest.raises(Refuse, match="overlap"):
        rewrite_nft("ip saddr { 127.0.0.1, 127.0.0.53 } accept", "range")


def test_nft_other_interface_is_refused():
    with pytest.raises(Refuse, match="eth0"):
        rewrite_nft('iifname "eth0" ip saddr 127.0.0.1 accept', "interface", "in")

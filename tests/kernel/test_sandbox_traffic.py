"""Real traffic settles the DOMAIN.md facts: the probe sees what the kernel does."""

from __future__ import annotations

import time

import pytest

from lbfw.results import Flow
from lbfw.sandbox.netns import Namespace
from lbfw.sandbox.traffic import observe, observe_arrivals, observe_detailed

pytestmark = pytest.mark.kernel

T = 0.3  # a loopback handshake takes microseconds; 0.3 s is plenty

FLOWS = [
    Flow("tcp", "127.0.0.1", 8080),
    Flow("tcp", "127.0.0.53", 53),
    Flow("tcp", "127.0.0.1", 8080, client="127.0.0.2"),
    Flow("udp", "127.0.0.53", 53),
    Flow("udp", "127.0.0.1", 5353, client="127.0.0.2"),
]

HEAD = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
NARROW = HEAD + "-A INPUT -s 127.0.0.1/32 -j ACCEPT\nCOMMIT\n"
NARROW_CT = (
    HEAD + "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -s 127.0.0.1/32 -j ACCEPT\nCOMMIT\n"
)
IFACE = HEAD + "-A INPUT -i lo -j ACCEPT\nCOMMIT\n"

NFT_NARROW = (
    "table inet f {\n chain input {\n  type filter hook input priority 0; policy drop;\n"
    "  ip saddr 127.0.0.1 accept\n }\n}\n"
)
NFT_NARROW_CT = (
    "table inet f {\n chain input {\n  type filter hook input priority 0; policy drop;\n"
    "  ct state established,related accept\n  ip saddr 127.0.0.1 accept\n }\n}\n"
)
NFT_IFACE = (
    "table inet f {\n chain input {\n  type filter hook input priority 0; policy drop;\n  iif lo accept\n }\n}\n"
)

D, B = "delivered", "blocked"
EXPECT_NARROW = [D, B, B, B, B]
EXPECT_NARROW_CT = [D, D, B, D, B]
EXPECT_IFACE = [D, D, D, D, D]


def test_empty_namespace_delivers_every_flow():
    with Namespace() as ns:
        assert observe(ns, FLOWS + [Flow("tcp", "::1", 80), Flow("udp", "::1", 53)], timeout=T) == [D] * 7


@pytest.mark.parametrize("backend", ["legacy", "nft"])
@pytest.mark.parametrize(
    "rules,expected",
    [(NARROW, EXPECT_NARROW), (NARROW_CT, EXPECT_NARROW_CT), (IFACE, EXPECT_IFACE)],
    ids=["narrow", "narrow+ct", "iface"],
)
def test_iptables_rulesets_block_as_the_kernel_does(backend, rules, expected):
    with Namespace() as ns:
        ns.load_iptables(rules, backend=backend)
        assert observe(ns, FLOWS, timeout=T) == expected


@pytest.mark.parametrize(
    "rules,expected",
    [(NFT_NARROW, EXPECT_NARROW), (NFT_NARROW_CT, EXPECT_NARROW_CT), (NFT_IFACE, EXPECT_IFACE)],
    ids=["narrow", "narrow+ct", "iface"],
)
def test_nft_rulesets_block_as_the_kernel_does(rules, expected):
    with Namespace() as ns:
        ns.load_nft(rules)
        assert observe(ns, FLOWS, timeout=T) == expected


def test_output_drop_gives_eperm_for_other_loopback_destinations():
    rules = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT DROP [0:0]\n"
        "-A OUTPUT -d 127.0.0.1/32 -j ACCEPT\nCOMMIT\n"
    )
    flows = [Flow("udp", "127.0.0.53", 53), Flow("tcp", "127.0.0.1", 80)]
    with Namespace() as ns:
        ns.load_iptables(rules)
        got = observe_detailed(ns, flows, timeout=T)
    assert got[0]["observed"] == B and "EPERM" in got[0]["reason"]
    assert got[1]["observed"] == D


def test_reject_is_blocked_fast_and_says_refused():
    rules = (
        HEAD.replace("INPUT DROP", "INPUT ACCEPT")
        + "-A INPUT -p tcp -d 127.0.0.9 -j REJECT --reject-with tcp-reset\nCOMMIT\n"
    )
    with Namespace() as ns:
        ns.load_iptables(rules)
        start = time.monotonic()
        got = observe_detailed(ns, [Flow("tcp", "127.0.0.9", 80)], timeout=5)
        assert time.monotonic() - start < 2
    assert got[0]["observed"] == B and "ECONNREFUSED" in got[0]["reason"]


def test_ipv6_loopback_flows_follow_ip6tables():
    rules6 = HEAD + "-A INPUT -s ::1/128 -p tcp -j ACCEPT\nCOMMIT\n"
    with Namespace() as ns:
        ns.load_iptables(rules6, family="ip6")
        assert observe(
            ns, [Flow("tcp", "::1", 80), Flow("udp", "::1", 53), Flow("tcp", "127.0.0.1", 80)], timeout=T
        ) == [D, B, D]


def test_sixty_flows_run_concurrently_and_leave_no_socket():
    flows = [
        Flow("tcp" if i % 2 else "udp", f"127.0.{i}.{i + 1}", 1000 + i, client=None if i % 3 else "127.0.0.7")
        for i in range(60)
    ]
    with Namespace() as ns:
        ns.load_iptables(NARROW)  # about half blocked: each of those waits for its timeout
        start = time.monotonic()
        got = observe(ns, flows, timeout=T)
        elapsed = time.monotonic() - start
        # Half-open connections whose SYN-ACK was dropped outlive their closed listener until
        # the kernel's first SYN-ACK retransmission timer (1 s) finds it gone; then nothing is left.
        deadline = time.monotonic() + 3
        while (sockets := ns.run(["ss", "-tuanH"]).stdout.strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert elapsed < 3, elapsed
    assert got == [B] * 60  # only 127.0.0.1 sources get their replies in; none of these flows has one
    assert "ESTAB" not in sockets and "TIME-WAIT" not in sockets
    assert sockets == "", sockets


def test_flows_sharing_a_server_share_one_listener():
    flows = [
        Flow("tcp", "127.0.0.1", 7000),
        Flow("tcp", "127.0.0.1", 7000, client="127.0.0.2"),
        Flow("udp", "127.0.0.1", 7000),
        Flow("udp", "127.0.0.1", 7000, client="127.0.0.3"),
    ]
    with Namespace() as ns:
        assert observe(ns, flows, timeout=T) == [D, D, D, D]


SPOOFED = [("127.0.0.2", "127.0.0.1", 9999), ("127.10.20.30", "127.0.0.53", 53), ("192.0.2.2", "127.0.0.1", 9999)]
ANTISPOOF_HEAD = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"


@pytest.mark.parametrize(
    "rules,expected",
    [
        ("", [D, D, D]),  # route_localnet=1 and no rule
        ("-A INPUT ! -i lo -s 127.0.0.1/32 -j DROP\n", [D, D, D]),  # the narrow rule: still open
        ("-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP\n", [B, B, D]),  # the whole block
        ("-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP\n", [B, B, B]),
    ],
    ids=["none", "narrow", "whole-block", "dst-block"],
)
def test_loopback_sources_arriving_from_the_network(rules, expected):
    with Namespace() as ns:
        ns.load_iptables(ANTISPOOF_HEAD + rules + "COMMIT\n")
        assert observe_arrivals(ns, "eth0", SPOOFED, timeout=T) == expected


def test_without_route_localnet_routing_drops_loopback_martians_before_any_rule():
    with Namespace() as ns:
        assert observe_arrivals(ns, "eth0", SPOOFED, timeout=T, route_localnet=False) == [B, B, B]
        # the same interface, with route_localnet on, lets them in: routing, not the probe, said no
        assert observe_arrivals(ns, "eth0", SPOOFED, timeout=T) == [D, D, D]


DOCKER_DNS = (
    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
    "-A OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:40561\n"
    "-A OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:46635\n"
    "-A POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 40561 -j SNAT --to-source :53\n"
    "-A POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 46635 -j SNAT --to-source :53\n"
    "COMMIT\n"
)
DNS = [Flow("udp", "127.0.0.11", 53), Flow("tcp", "127.0.0.11", 53)]


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_nat_targets_answer_like_the_real_service(backend):
    # Docker's embedded resolver: 127.0.0.11:53 is rewritten to other ports where it listens.
    with Namespace() as ns:
        ns.load_iptables(DOCKER_DNS, backend=backend)
        assert observe(ns, DNS, timeout=T) == [D, D]
        # Without a listener at the NAT target nothing answers: the rewrite is real.
        got = observe_detailed(ns, DNS, timeout=T, nat=False)
        assert [g["observed"] for g in got] == [B, B] and "ECONNREFUSED" in got[1]["reason"]
        # A filter rule on the rewritten port is what the kernel applies after NAT.
        ns.load_iptables(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp --dport 46635 -j DROP\nCOMMIT\n", backend=backend
        )
        assert observe(ns, DNS, timeout=T) == [B, D]


def test_nft_redirect_targets_answer():
    text = (
        "table ip n {\n chain out {\n  type nat hook output priority -100;\n"
        "  ip daddr 127.0.0.53 udp dport 53 redirect to :5300\n }\n}\n"
    )
    with Namespace() as ns:
        ns.load_nft(text)
        assert observe(ns, [Flow("udp", "127.0.0.53", 53)], timeout=T) == [D]
        assert observe(ns, [Flow("udp", "127.0.0.53", 53)], timeout=T, nat=False) == [B]

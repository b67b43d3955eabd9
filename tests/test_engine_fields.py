"""Issue 11's header, socket, mark and runtime fields on plain data: each test states what the
kernel gives a loopback packet (measured: analyze/packet.py) and checks the engine decides it."""

from __future__ import annotations

import textwrap

import pytest

from lbfw.analyze.engine import Engine
from lbfw.analyze.packet import PAYLOAD_CAVEAT
from lbfw.model import Action, Chain, Match, Origin, Rule, Ruleset, Table
from lbfw.read import iptables
from lbfw.results import Flow

TCP_1 = Flow("tcp", "127.0.0.1", 5000)
UDP_1 = Flow("udp", "127.0.0.1", 5000)
ORIGIN = Origin("t")


def ipt(text: str) -> Ruleset:
    return Ruleset(tables=iptables.parse(textwrap.dedent(text).lstrip(), "rules.v4", family="ip"))


ACCEPT = Action("accept")


def one_rule_input(*matches: Match, action: Action = ACCEPT, before=()) -> Ruleset:
    """filter INPUT policy drop with one rule: does the flow get through?"""
    rule = Rule(matches=tuple(matches), action=action, text="rule", origin=ORIGIN, before=tuple(before))
    chain = Chain(name="input", rules=[rule], hook="input", type="filter", priority=0, policy="drop")
    table = Table(family="inet", name="t", backend="file", syntax="nft", source="test.nft")
    table.chains["input"] = chain
    return Ruleset(tables=[table])


def verdict(rs: Ruleset, flow: Flow = TCP_1) -> str:
    return Engine(rs).evaluate(flow).verdict


@pytest.mark.parametrize(
    "match, expected",
    [
        (Match("ip.ttl", ((64, 64),)), "delivered"),
        (Match("ip.ttl", ((1, 63),)), "blocked"),
        (Match("ip.dscp", ((0, 0),)), "delivered"),
        (Match("ip.ecn", ((1, 3),)), "blocked"),
        (Match("ip.fragment", (True,), negate=True), "delivered"),
        (Match("ip.fragment", (True,)), "blocked"),
        (Match("meta.pkttype", ("host",)), "delivered"),
        (Match("meta.pkttype", ("broadcast",)), "blocked"),
        (Match("meta.iiftype", ("loopback",)), "delivered"),
        (Match("meta.iifgroup", ((0, 0),)), "delivered"),
        (Match("ct.helper", ("ftp",), negate=True), "delivered"),
        (Match("physdev", (("--physdev-is-bridged", None),)), "blocked"),
        (Match("physdev", (("--physdev-is-bridged", None),), negate=True), "delivered"),
        (Match("icmp.type", ((8, 8),)), "blocked"),  # never matches TCP
        (Match("icmp.type", ((8, 8),), negate=True), "blocked"),
        (Match("meta.nfproto", ("ipv6",)), "blocked"),
    ],
)
def test_header_fields_of_every_loopback_packet(match, expected):
    assert verdict(one_rule_input(match)) == expected


def test_lengths_and_mss_per_packet():
    # SYN and SYN-ACK are 60 bytes with MSS 65495; the server's data depends on its payload
    syn = one_rule_input(Match("tcp.flags", ((0x12, 0x02),)), Match("ip.length", ((60, 60),)))
    first = Engine(syn).evaluate(TCP_1)
    assert [s.verdict for s in first.steps if s.packet == "request"] == ["accept"]
    mss = one_rule_input(Match("tcp.option.mss", ((65495, 65495),)), action=Action("drop"))
    result = Engine(mss).evaluate(TCP_1)
    assert result.verdict == "blocked" and result.deciding.packet == "request"
    # the data packets: 1-512 bytes of payload assumed (a first request), said in the caveats
    data = one_rule_input(Match("ip.length", ((0, 100),)))
    assert verdict(data) == "unknown"
    small = Engine(one_rule_input(Match("ip.length", ((0, 1000),)))).evaluate(TCP_1)
    assert small.verdict == "delivered" and PAYLOAD_CAVEAT in small.caveats
    assert verdict(one_rule_input(Match("meta.length", ((1400, 65535),), negate=True))) == "delivered"


def test_limit_and_connlimit_are_what_a_first_connection_meets_with_a_caveat():
    limit = one_rule_input(Match("limit", (("limit", "-m limit --limit 5/s"),), text="-m limit --limit 5/s"))
    result = Engine(limit).evaluate(TCP_1)
    assert result.verdict == "delivered" and any("under the limit" in c for c in result.caveats)
    over = one_rule_input(Match("limit", (("limit", "limit rate over 5/second"),), negate=True))
    assert verdict(over) == "blocked"
    assert (
        verdict(one_rule_input(Match("connlimit", (("above", 3),)), action=Action("drop"))) == "blocked"
    )  # the policy drops: the rule did not match, nothing accepted
    assert verdict(one_rule_input(Match("connlimit", (("upto", 1),)))) == "delivered"


def test_statistic_nth_counts_the_packets_that_reach_it():
    # every 2nd packet from the first: SYN accepted, SYN-ACK not -> blocked
    rs = one_rule_input(Match("statistic.nth", ((2, 0),)))
    result = Engine(rs).evaluate(TCP_1)
    assert result.verdict == "blocked" and result.deciding.packet == "reply"
    assert verdict(one_rule_input(Match("statistic.nth", ((1, 0),)))) == "delivered"


def test_runtime_conditions_stay_unknown_and_say_why():
    rs = one_rule_input(Match("runtime", (("time", "-m time --timestart 08:00"),), text="-m time --timestart 08:00"))
    result = Engine(rs).evaluate(TCP_1)
    assert result.verdict == "unknown"
    assert result.unknown == (
        "-m time --timestart 08:00: depends on the time of day (the packet's timestamp against the clock)",
    )


def test_marks_follow_set_copy_and_unknown_statements():
    # a mark set before, then matched
    rs = one_rule_input(Match("meta.mark", ((7, 7),)))
    chain = rs.tables[0].chains["input"]
    chain.rules.insert(
        0, Rule(matches=(), action=Action("continue", set_mark=(7, 0xFFFFFFFF)), text="m", origin=ORIGIN)
    )
    assert verdict(rs) == "delivered"
    # `ct mark set 5` then `meta mark set ct mark`: the mark is 5
    rs = one_rule_input(Match("meta.mark", ((5, 5),)))
    chain = rs.tables[0].chains["input"]
    chain.rules[0:0] = [
        Rule(matches=(), action=Action("continue", set_ctmark=(5, 0xFFFFFFFF)), text="c", origin=ORIGIN),
        Rule(matches=(), action=Action("continue", copy_mark=("ct->meta", 0xFFFFFFFF)), text="r", origin=ORIGIN),
    ]
    assert verdict(rs) == "delivered"
    # a value lbfw cannot compute: the mark match is unknown, the statement itself only continues
    rs = one_rule_input(Match("meta.mark", ((5, 5),)))
    rs.tables[0].chains["input"].rules.insert(
        0, Rule(matches=(), action=Action("continue", mark_unknown="meta"), text="meta mark set numgen", origin=ORIGIN)
    )
    assert verdict(rs) == "unknown"


def test_wg_quick_mark_restore_never_forks_accept_or_drop():
    rs = ipt("""
        *mangle
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A PREROUTING -p udp -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
        -A POSTROUTING -p udp -m mark --mark 0xca6c -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff
        COMMIT
        """)
    result = Engine(rs).evaluate(UDP_1)
    assert (result.verdict, result.unknown) == ("delivered", ())


def test_owner_of_the_client_decides_with_a_user_and_per_user_without():
    rs = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT DROP [0:0]
        -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        -A OUTPUT -o lo -m owner --uid-owner 106 -j ACCEPT
        COMMIT
        """)
    engine = Engine(rs)
    assert engine.evaluate(Flow("tcp", "127.0.0.1", 9050, user="106", uid=106)).verdict == "delivered"
    assert engine.evaluate(Flow("tcp", "127.0.0.1", 9050, user="65534", uid=65534)).verdict == "blocked"
    anyone = engine.evaluate(Flow("tcp", "127.0.0.1", 9050))
    assert anyone.verdict == "blocked"
    # (the host running the test may give uid 106 a name: "uid 106 (debian-tor)")
    assert anyone.describe().startswith("delivered for uid 106") and anyone.describe().endswith("; blocked for others")
    (entry,) = anyone.to_json()["by_user"]
    assert (entry["uid"], entry["gid"], entry["verdict"]) == (106, None, "delivered")
    assert anyone.verdict_for(106) == "delivered" and anyone.verdict_for(0, 0) == "blocked"


def test_ip_protocol_in_an_inet_table_does_not_match_ipv6():
    rs = one_rule_input(Match("meta.nfproto", ("ipv4",)), Match("meta.l4proto", ((6, 6),)))
    assert verdict(rs, Flow("tcp", "::1", 80)) == "blocked"
    assert verdict(rs) == "delivered"

"""The fields the engine decides without reading rule text (`rpfilter`, `fib.rpf`, `tcp.flags`,
`recent`: issue 10's field contract), on hand-built Matches: each predicate in both polarities,
on each hook and interface it cares about, and the shapes it does not know. No root, no kernel."""

from __future__ import annotations

import pytest

from lbfw.analyze.compile import recent_lists_set
from lbfw.analyze.engine import Engine, Packet
from lbfw.analyze.matchers import compile_match
from lbfw.analyze.state import Pkt
from lbfw.model import Action, Chain, Match, Origin, Rule, Ruleset, Table
from lbfw.results import Flow

TCP_1 = Flow("tcp", "127.0.0.1", 5000)
TCP_BOUND = Flow("tcp", "127.0.0.1", 5000, "127.0.0.2")
UDP_53 = Flow("udp", "127.0.0.53", 53)
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04


def pkt(hook: str, iif: str | None = None, oif: str | None = None, proto: int = 6,
        flags: int | None = SYN) -> Pkt:
    p = Pkt("ip", (1, 1), (2, 2), (proto, proto), (40000, 40000), (22, 22), flags, "test", True)
    p.hook, p.iif, p.oif = hook, iif, oif
    return p


def decide(match: Match, packet: Pkt, recent_lists: frozenset = frozenset()):
    pred, _ = compile_match(match, {}, recent_lists)
    return pred(packet)


# what the hooks a loopback packet passes look like, and a packet from outside
LO_OUT = ("output", None, "lo")
LO_POST = ("postrouting", None, "lo")
LO_PRE = ("prerouting", "lo", None)
LO_IN = ("input", "lo", None)
ETH_PRE = ("prerouting", "eth0", None)
ETH_IN = ("input", "eth0", None)


# --------------------------------------------------------------------------- rpfilter

@pytest.mark.parametrize("where,plain,inverted", [
    (LO_PRE, True, False), (LO_IN, True, False),            # came in on lo: the test passes
    (ETH_PRE, None, None), (ETH_IN, None, None),            # elsewhere it needs routes
    (LO_OUT, None, None), (LO_POST, None, None),            # no input interface yet
])
def test_rpfilter_is_true_for_what_came_in_on_lo_and_unknown_elsewhere(where, plain, inverted):
    hook, iif, oif = where
    assert decide(Match("rpfilter", text="-m rpfilter --loose"), pkt(hook, iif, oif)) is plain
    assert decide(Match("rpfilter", negate=True, text="-m rpfilter --invert"), pkt(hook, iif, oif)) is inverted


def test_an_opaque_rpfilter_stays_unknown():
    assert decide(Match("m.rpfilter", text="-m rpfilter", opaque=True), pkt(*LO_PRE)) is None


# --------------------------------------------------------------------------- fib.rpf

@pytest.mark.parametrize("wants_route,negate,on_lo", [
    (False, False, False),   # fib saddr . iif oif missing
    (True, False, True),     # ... exists
    (False, True, True),     # ... != missing
    (True, True, False),     # ... != exists
])
def test_fib_rpf_is_decided_on_prerouting_for_what_came_in_on_lo(wants_route, negate, on_lo):
    m = Match("fib.rpf", values=(wants_route,), negate=negate, text="fib saddr . iif oif ...")
    assert decide(m, pkt(*LO_PRE)) is on_lo
    for where in (ETH_PRE, LO_IN, ETH_IN, LO_OUT, LO_POST):
        assert decide(m, pkt(*where)) is None, where


def test_a_fib_rpf_value_of_another_shape_is_unknown_not_an_error():
    assert decide(Match("fib.rpf", values=("missing",), text="fib saddr . iif oif missing"), pkt(*LO_PRE)) is None
    assert decide(Match("fib.rpf", values=(), text="fib saddr . iif oif"), pkt(*LO_PRE)) is None


# --------------------------------------------------------------------------- tcp.flags

SYN_ONLY = ((FIN | SYN | RST | ACK, SYN),)   # tcp flags & (fin|syn|rst|ack) == syn


@pytest.mark.parametrize("flags,equal", [(SYN, True), (SYN | ACK, False), (ACK, False), (SYN | 0x08, True)])
def test_tcp_flags_compare_the_masked_flags(flags, equal):
    assert decide(Match("tcp.flags", values=SYN_ONLY), pkt(*LO_IN, flags=flags)) is equal
    assert decide(Match("tcp.flags", values=SYN_ONLY, negate=True), pkt(*LO_IN, flags=flags)) is (not equal)


def test_tcp_flags_are_false_without_tcp_whatever_the_negation():
    for negate in (False, True):
        m = Match("tcp.flags", values=SYN_ONLY, negate=negate)
        assert decide(m, pkt(*LO_IN, proto=17, flags=None)) is False
        assert decide(m, pkt(*LO_IN, proto=6, flags=None)) is False


# --------------------------------------------------------------------------- recent

@pytest.mark.parametrize("command", ["rcheck", "update", "remove"])
def test_recent_lookups_of_a_list_no_rule_sets_are_false_of_a_set_one_unknown(command):
    m = Match("recent", values=(("ssh", command),), text=f"-m recent --{command} --name ssh")
    neg = Match("recent", values=(("ssh", command),), negate=True, text=f"-m recent ! --{command} --name ssh")
    assert decide(m, pkt(*LO_IN)) is False
    assert decide(neg, pkt(*LO_IN)) is True
    assert decide(m, pkt(*LO_IN), frozenset({"DEFAULT"})) is False
    assert decide(m, pkt(*LO_IN), frozenset({"ssh"})) is None
    assert decide(neg, pkt(*LO_IN), frozenset({"ssh"})) is None


def test_recent_set_is_true_and_an_unknown_command_unknown():
    assert decide(Match("recent", values=(("ssh", "set"),)), pkt(*LO_IN)) is True
    assert decide(Match("recent", values=(("ssh", "set"),), negate=True), pkt(*LO_IN)) is False
    assert decide(Match("recent", values=(("ssh", "seconds"),)), pkt(*LO_IN)) is None
    assert decide(Match("recent", values=("ssh",)), pkt(*LO_IN)) is None


# --------------------------------------------------------------------------- in a ruleset

def rule(matches, action, text="rule", line=1) -> Rule:
    return Rule(matches=tuple(matches), action=action, text=text, origin=Origin("test", line))


def table(name: str, syntax: str, chains: dict, family: str = "ip") -> Table:
    t = Table(family=family, name=name, backend="file", syntax=syntax, source="test")
    t.chains = chains
    return t


def recent(name: str, command: str, negate: bool = False) -> Match:
    return Match("recent", values=((name, command),), negate=negate, text=f"-m recent --{command} --name {name}")


def test_the_lists_a_ruleset_fills_are_those_of_its_set_rules():
    inp = Chain("INPUT", [rule([recent("ssh", "update")], Action("drop")),
                          rule([recent("ssh", "set")], Action("continue")),
                          rule([recent("web", "rcheck", negate=True)], Action("continue")),
                          rule([Match("m.recent", text="-m recent --set --name opaque", opaque=True)],
                               Action("continue"))],
                hook="input", policy="accept")
    rs = Ruleset(tables=[table("filter", "iptables", {"INPUT": inp})])
    assert recent_lists_set(rs) == frozenset({"ssh"})


def test_recent_list_no_rule_fills_is_empty_and_a_filled_one_is_unknown():
    tcp = Match("meta.l4proto", values=((6, 6),))
    port22 = Match("th.dport", values=((22, 22),))
    inp = Chain("INPUT", [
        rule([recent("DEFAULT", "update")], Action("drop"), "-A INPUT -m recent --update --name DEFAULT -j DROP"),
        rule([tcp, port22, recent("ssh", "update")], Action("drop"),
             "-A INPUT -p tcp --dport 22 -m recent --update --name ssh -j DROP"),
        rule([tcp, port22, recent("ssh", "set")], Action("continue"))],
        hook="input", policy="accept")
    engine = Engine(Ruleset(tables=[table("filter", "iptables", {"INPUT": inp})]))
    assert engine.evaluate(TCP_1).verdict == "delivered"
    ssh = engine.evaluate(Flow("tcp", "127.0.0.1", 22))
    assert ssh.verdict == "unknown"
    assert any("--name ssh" in u for u in ssh.unknown)


def test_rpfilter_passes_everything_that_came_in_on_lo():
    pre = Chain("PREROUTING", [rule([Match("rpfilter", negate=True, text="-m rpfilter --invert")], Action("drop"))],
                hook="prerouting", policy="accept")
    engine = Engine(Ruleset(tables=[table("raw", "iptables", {"PREROUTING": pre})]))
    assert engine.evaluate(TCP_BOUND).verdict == "delivered"
    spoof = Packet(family="ip", saddr="10.1.1.1", daddr="127.0.0.1", proto="tcp", dport=22, iif="eth0")
    result = engine.walk_packet(spoof, ("prerouting", "input"))
    assert result.verdict == "unknown" and result.unknown == ("-m rpfilter --invert",)


def test_nft_fib_reverse_path_filter_passes_lo_on_prerouting_and_tcp_flags_are_read():
    fib = Match("fib.rpf", values=(False,), text="fib saddr . mark . iif oif false")
    syn_only = Match("tcp.flags", values=SYN_ONLY, text="tcp flags & (fin|syn|rst|ack) == syn")
    pre = Chain("pre", [rule([fib], Action("drop"))], hook="prerouting", priority=-290, type="filter",
                policy="accept")
    inp = Chain("input", [rule([syn_only], Action("drop")),
                          rule([Match("meta.l4proto", ((6, 6),))], Action("accept"))],
                hook="input", priority=0, type="filter", policy="accept")
    engine = Engine(Ruleset(tables=[table("t", "nft", {"pre": pre, "input": inp}, family="inet")]))
    tcp = engine.evaluate(TCP_1)
    assert tcp.verdict == "blocked" and tcp.deciding.packet == "request"
    assert engine.evaluate(UDP_53).verdict == "delivered"
    spoof = Packet(family="ip", saddr="10.1.1.1", daddr="127.0.0.1", proto="udp", dport=53, iif="eth0")
    assert engine.walk_packet(spoof).verdict == "unknown"


def test_an_opaque_fib_lookup_stays_unknown_even_on_lo():
    fib = Match("fib saddr . iif oif", text="fib saddr . iif oif missing", opaque=True)
    pre = Chain("pre", [rule([fib], Action("drop"))], hook="prerouting", priority=-290, type="filter",
                policy="accept")
    engine = Engine(Ruleset(tables=[table("t", "nft", {"pre": pre}, family="inet")]))
    result = engine.evaluate(TCP_1)
    assert result.verdict == "unknown" and "fib saddr . iif oif missing" in result.unknown

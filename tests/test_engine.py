"""The engine on plain data: each test states a kernel behaviour (measured in tests/kernel/test_oracle.py
or DOMAIN.md) and checks the engine follows it. No root, no kernel."""

from __future__ import annotations

import ipaddress
import textwrap

from lbfw.analyze.engine import Engine, Packet
from lbfw.analyze.packet import SERVER_CAVEAT
from lbfw.model import Action, Chain, Match, Origin, Rule, Ruleset, Table, VmapEntry
from lbfw.read import iptables
from lbfw.results import Flow

TCP_1 = Flow("tcp", "127.0.0.1", 5000)
TCP_53 = Flow("tcp", "127.0.0.53", 5000)
TCP_BOUND = Flow("tcp", "127.0.0.1", 5000, "127.0.0.2")
UDP_53 = Flow("udp", "127.0.0.53", 53)


def ipt(text: str, family: str = "ip") -> Ruleset:
    return Ruleset(tables=iptables.parse(textwrap.dedent(text).lstrip(), "rules.v4", family=family))


def verdicts(ruleset: Ruleset, flows) -> list:
    engine = Engine(ruleset)
    return [engine.evaluate(f).verdict for f in flows]


def a4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def rule(matches, action, text="rule", line=1) -> Rule:
    return Rule(matches=tuple(matches), action=action, text=text, origin=Origin("test.nft", line))


def nft_table(family: str, chains: dict) -> Table:
    t = Table(family=family, name="t", backend="file", syntax="nft", source="test.nft")
    t.chains = chains
    return t


NARROW = """
    *filter
    :INPUT DROP [0:0]
    :FORWARD DROP [0:0]
    :OUTPUT ACCEPT [0:0]
    -A INPUT -s 127.0.0.1/32 -j ACCEPT
    COMMIT
    """


# --------------------------------------------------------------------------- the bug class


def test_narrow_source_accept_blocks_alternate_servers_and_bound_clients():
    engine = Engine(ipt(NARROW))
    assert engine.evaluate(TCP_1).verdict == "delivered"
    blocked = engine.evaluate(TCP_53)
    assert blocked.verdict == "blocked"
    # the SYN-ACK from 127.0.0.53 is what the policy drops
    assert blocked.deciding.packet == "reply"
    assert blocked.deciding.verdict == "policy-drop" and blocked.deciding.chain == "INPUT"
    assert engine.evaluate(TCP_BOUND).verdict == "blocked"
    assert blocked.client_addr == "127.0.0.1"
    assert engine.evaluate(TCP_BOUND).client_addr == "127.0.0.2"


def test_established_accept_masks_the_alternate_server_but_not_the_bound_client():
    rs = ipt("""
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A INPUT -s 127.0.0.1/32 -j ACCEPT
        COMMIT
        """)
    assert verdicts(rs, [TCP_1, TCP_53, TCP_BOUND, UDP_53]) == ["delivered", "delivered", "blocked", "delivered"]


def test_interface_accept_delivers_everything():
    rs = ipt("""
        *filter
        :INPUT DROP [0:0]
        :OUTPUT DROP [0:0]
        -A INPUT -i lo -j ACCEPT
        -A OUTPUT -o lo -j ACCEPT
        COMMIT
        """)
    flows = [TCP_1, TCP_53, TCP_BOUND, UDP_53, Flow("tcp", "::1", 80)]
    assert verdicts(rs, flows) == ["delivered"] * 5


def test_output_drop_with_narrow_destination_accept_blocks_other_destinations():
    rs = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT DROP [0:0]
        -A OUTPUT -d 127.0.0.1/32 -j ACCEPT
        COMMIT
        """)
    result = Engine(rs).evaluate(UDP_53)
    assert result.verdict == "blocked"
    assert result.deciding.hook == "output" and result.deciding.packet == "request"
    assert result.deciding.origin.line == 3  # the chain's declaration line holds its policy


def test_steps_name_the_rule_and_its_line():
    result = Engine(ipt(NARROW)).evaluate(TCP_1)
    accepts = [s for s in result.steps if s.verdict == "accept"]
    assert accepts[0].rule.text == "-A INPUT -s 127.0.0.1/32 -j ACCEPT"
    assert accepts[0].origin.where() == "rules.v4:5"
    assert [s.packet for s in accepts] == ["request", "reply", "ack", "answer"]


# --------------------------------------------------------------------------- chains


def test_goto_fall_through_returns_to_the_callers_caller():
    rs = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :A - [0:0]
        :B - [0:0]
        -A INPUT -j A
        -A INPUT -j DROP
        -A A -g B
        -A A -j ACCEPT
        -A B -d 127.0.0.53/32 -j ACCEPT
        COMMIT
        """)
    # B falls through -> INPUT continues after `-j A` -> DROP; A's ACCEPT is never reached
    assert verdicts(rs, [TCP_1]) == ["blocked"]


def test_return_in_a_base_chain_applies_the_policy():
    rs = ipt("""
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -j RETURN
        -A INPUT -j ACCEPT
        COMMIT
        """)
    assert verdicts(rs, [TCP_1]) == ["blocked"]


def test_goto_from_base_chain_ends_in_its_policy():
    rs = ipt("""
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        :B - [0:0]
        -A INPUT -g B
        -A INPUT -j ACCEPT
        -A B -p udp -j ACCEPT
        COMMIT
        """)
    assert verdicts(rs, [TCP_1, UDP_53]) == ["blocked", "delivered"]


def test_accept_ends_only_its_base_chain_a_second_table_still_drops():
    accept_all = Chain("input", [rule([], Action("accept"))], hook="input", priority=0, type="filter", policy="accept")
    drop_all = Chain(
        "input",
        [rule([Match("ip.saddr", ((a4("127.0.0.1"), a4("127.0.0.1")),))], Action("accept"))],
        hook="input",
        priority=10,
        type="filter",
        policy="drop",
    )
    rs = Ruleset(tables=[nft_table("inet", {"input": accept_all}), nft_table("ip", {"input": drop_all})])
    assert verdicts(rs, [TCP_1, TCP_BOUND, Flow("tcp", "::1", 22)]) == ["delivered", "blocked", "delivered"]


# --------------------------------------------------------------------------- conntrack and nat


def test_raw_output_sees_invalid_and_raw_prerouting_sees_the_real_state():
    rs = ipt("""
        *raw
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A OUTPUT -p tcp -m conntrack --ctstate NEW -j DROP
        -A PREROUTING -p udp -m conntrack --ctstate NEW -j DROP
        COMMIT
        """)
    assert verdicts(rs, [TCP_1, UDP_53]) == ["delivered", "blocked"]


def test_notrack_in_raw_output_makes_untracked_and_in_raw_prerouting_does_nothing():
    text = """
        *raw
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A {chain} -j CT --notrack
        COMMIT
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT
        COMMIT
        """
    out = Engine(ipt(text.format(chain="OUTPUT"))).evaluate(TCP_1)
    assert out.verdict == "delivered"
    pre = Engine(ipt(text.format(chain="PREROUTING"))).evaluate(TCP_1)
    assert pre.verdict == "blocked"
    assert any(s.verdict == "notrack" and "no effect" in s.note for s in pre.steps)


def test_untracked_packets_are_never_established_and_skip_nat():
    rs = ipt("""
        *raw
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A OUTPUT -j NOTRACK
        COMMIT
        *nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -p tcp -j DNAT --to-destination 127.0.0.9:9
        COMMIT
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
        -A INPUT -d 127.0.0.1/32 -p tcp --dport 5000 -j ACCEPT
        COMMIT
        """)
    result = Engine(rs).evaluate(TCP_1)
    assert result.verdict == "blocked"  # the reply is UNTRACKED, not ESTABLISHED
    assert not any(s.verdict == "dnat" for s in result.steps)


NAT = """
    *nat
    :PREROUTING ACCEPT [0:0]
    :INPUT ACCEPT [0:0]
    :OUTPUT ACCEPT [0:0]
    :POSTROUTING ACCEPT [0:0]
    -A PREROUTING -p tcp -j DNAT --to-destination 127.0.0.9:9
    -A OUTPUT -d 127.0.0.5/32 -p tcp --dport 80 -j DNAT --to-destination 127.0.0.6:8080
    COMMIT
    *mangle
    :PREROUTING ACCEPT [0:0]
    :INPUT ACCEPT [0:0]
    :FORWARD ACCEPT [0:0]
    :OUTPUT ACCEPT [0:0]
    :POSTROUTING ACCEPT [0:0]
    -A OUTPUT -d 127.0.0.6/32 -j DROP
    -A POSTROUTING -s 127.0.0.5/32 -j DROP
    COMMIT
    *filter
    :INPUT DROP [0:0]
    :OUTPUT ACCEPT [0:0]
    -A INPUT -d 127.0.0.6/32 -p tcp --dport 8080 -j ACCEPT
    -A INPUT -s 127.0.0.5/32 -p tcp --sport 80 -j ACCEPT
    COMMIT
    """


def test_dnat_in_nat_output_is_seen_by_later_hooks_and_undone_for_replies_on_postrouting():
    result = Engine(ipt(NAT)).evaluate(Flow("tcp", "127.0.0.5", 80))
    # the connection works, but with 127.0.0.6:8080: the server on 127.0.0.5:80 never sees it
    assert result.verdict == "redirected"
    assert result.redirected_to == "127.0.0.6:8080"
    assert result.describe() == "redirected to 127.0.0.6:8080"
    assert [s.note for s in result.steps if s.verdict == "dnat"] == ["dnat to 127.0.0.6"]
    # nat PREROUTING is not traversed on lo: the binding exists already
    assert not any(s.hook == "prerouting" and s.table == "nat" for s in result.steps)
    reply_in = [s for s in result.steps if s.packet == "reply" and s.hook == "input" and s.table == "filter"]
    assert reply_in[0].rule.text == "-A INPUT -s 127.0.0.5/32 -p tcp --sport 80 -j ACCEPT"


def test_redirect_on_output_goes_to_127_0_0_1():
    rs = ipt("""
        *nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -d 127.0.0.11/32 -p udp --dport 53 -j REDIRECT --to-ports 5353
        COMMIT
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -d 127.0.0.1/32 -p udp --dport 5353 -j ACCEPT
        -A INPUT -s 127.0.0.11/32 -p udp --sport 53 -j ACCEPT
        COMMIT
        """)
    result = Engine(rs).evaluate(Flow("udp", "127.0.0.11", 53))
    assert (result.verdict, result.redirected_to) == ("redirected", "127.0.0.1:5353")


def test_dnat_off_loopback_is_redirected_there():
    rs = ipt("""
        *nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -p tcp --dport 30080 -j DNAT --to-destination 10.244.1.5:80
        COMMIT
        """)
    result = Engine(rs).evaluate(Flow("tcp", "127.0.0.1", 30080))
    assert (result.verdict, result.redirected_to) == ("redirected", "10.244.1.5:80")


# --------------------------------------------------------------------------- matches


def test_iptables_negated_in_interface_in_a_chain_called_from_output_is_true():
    rs = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :X - [0:0]
        -A OUTPUT -j X
        -A X ! -i eth0 -p udp -j DROP
        COMMIT
        """)
    assert verdicts(rs, [TCP_1, UDP_53]) == ["delivered", "blocked"]


def test_syn_and_tcp_flags_pick_the_right_packet():
    rs = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -s 127.0.0.53/32 -p tcp --tcp-flags SYN,ACK SYN,ACK -j DROP
        -A INPUT -d 127.0.0.1/32 -p tcp --dport 6000 --syn -j DROP
        COMMIT
        """)
    flows = [TCP_53, Flow("udp", "127.0.0.53", 5000), Flow("tcp", "127.0.0.1", 6000), TCP_1]
    result = Engine(rs).evaluate(TCP_53)
    assert result.deciding.packet == "reply"
    assert verdicts(rs, flows) == ["blocked", "delivered", "blocked", "delivered"]


def test_client_port_is_the_ephemeral_range():
    rs = ipt("""
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -p tcp --sport 1024:65535 --dport 5000 -j ACCEPT
        -A INPUT -p tcp --sport 5000 --dport 1024:65535 -j ACCEPT
        -A INPUT -p udp --sport 53 --dport 40000:50000 -j ACCEPT
        -A INPUT -p udp --dport 53 -j ACCEPT
        COMMIT
        """)
    engine = Engine(rs)
    assert engine.evaluate(TCP_1).verdict == "delivered"
    udp = engine.evaluate(UDP_53)
    assert udp.verdict == "unknown"  # the reply's port may or may not be in 40000:50000
    assert any("40000:50000" in u for u in udp.unknown)


def test_marks_set_in_mangle_output_are_seen_in_input():
    rs = ipt("""
        *mangle
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -p udp -j MARK --set-mark 0x7
        COMMIT
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m mark --mark 0x7 -j ACCEPT
        COMMIT
        """)
    assert verdicts(rs, [TCP_1, UDP_53]) == ["blocked", "delivered"]


def test_addrtype_local_covers_all_of_127_8():
    rs = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m addrtype ! --src-type LOCAL -j DROP
        -A INPUT -m addrtype --dst-type LOCAL -d 127.0.0.53/32 -j DROP
        COMMIT
        """)
    assert verdicts(rs, [TCP_1, TCP_BOUND, TCP_53]) == ["delivered", "delivered", "blocked"]


def test_ipv4_match_in_an_inet_table_does_not_touch_ipv6_even_negated():
    chain = Chain(
        "input",
        [rule([Match("ip.saddr", ((a4("127.0.0.1"), a4("127.0.0.1")),), negate=True)], Action("drop"))],
        hook="input",
        priority=0,
        type="filter",
        policy="accept",
    )
    rs = Ruleset(tables=[nft_table("inet", {"input": chain})])
    assert verdicts(rs, [Flow("tcp", "::1", 80), TCP_BOUND, TCP_1]) == ["delivered", "blocked", "delivered"]


def test_nft_iifname_negation_on_output_is_true():
    # measured: `iifname != "eth0"` counted every packet in an output chain
    chain = Chain(
        "output",
        [rule([Match("meta.iifname", ("eth0",), negate=True), Match("meta.l4proto", ((17, 17),))], Action("drop"))],
        hook="output",
        priority=0,
        type="filter",
        policy="accept",
    )
    rs = Ruleset(tables=[nft_table("inet", {"output": chain})])
    assert verdicts(rs, [TCP_1, UDP_53]) == ["delivered", "blocked"]


def test_verdict_map_picks_the_entry_of_the_key():
    entries = (
        VmapEntry((a4("127.0.0.1"), a4("127.0.0.1")), Action("accept")),
        VmapEntry((a4("127.0.0.2"), a4("127.0.0.2")), Action("drop")),
    )
    vm = rule([], Action("vmap", vmap_field="ip.saddr", vmap=entries), "ip saddr vmap {...}")
    chain = Chain(
        "input",
        [vm, rule([Match("meta.l4proto", ((17, 17),))], Action("accept"))],
        hook="input",
        priority=0,
        type="filter",
        policy="drop",
    )
    rs = Ruleset(tables=[nft_table("ip", {"input": chain})])
    # .1 -> accept; .2 -> drop; reply from .53 has no entry -> continues -> udp accepted, tcp policy
    assert verdicts(rs, [TCP_1, TCP_BOUND, TCP_53, UDP_53]) == ["delivered", "blocked", "blocked", "delivered"]


def test_concatenation_of_address_and_port():
    lo1 = (a4("127.0.0.1"), a4("127.0.0.1"))
    m = Match(("ip.daddr", "th.dport"), values=((lo1, (5000, 5000)), (lo1, (53, 53))))
    chain = Chain(
        "input",
        [rule([m], Action("accept")), rule([Match("ct.state", ("established",))], Action("accept"))],
        hook="input",
        priority=0,
        type="filter",
        policy="drop",
    )
    rs = Ruleset(tables=[nft_table("ip", {"input": chain})])
    flows = [TCP_1, Flow("udp", "127.0.0.1", 53), Flow("udp", "127.0.0.1", 54), TCP_53]
    assert verdicts(rs, flows) == ["delivered", "delivered", "blocked", "blocked"]


def test_ip6_flows_use_ip6_tables_only():
    v4 = ipt(NARROW)
    v6 = ipt(
        """
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -s ::1/128 -j ACCEPT
        COMMIT
        """,
        family="ip6",
    )
    rs = Ruleset(tables=v4.tables + v6.tables)
    engine = Engine(rs)
    six = engine.evaluate(Flow("udp", "::1", 53))
    assert six.verdict == "delivered" and six.client_addr == "::1"
    assert {s.family for s in six.steps} == {"ip6"}
    assert engine.evaluate(TCP_53).verdict == "blocked"


# --------------------------------------------------------------------------- unknowns

OWNER = """
    *filter
    :INPUT ACCEPT [0:0]
    :OUTPUT DROP [0:0]
    -A OUTPUT -d 127.0.0.1/32 -m owner --uid-owner 105 -j ACCEPT
    {extra}
    COMMIT
    """


def test_owner_match_without_a_user_is_answered_per_user():
    # others are blocked at the SYN; uid 105's SYN passes, but the SYN-ACK carries the listener's
    # uid (measured): the server is taken to run as a user no owner match names, so uid 105 is
    # blocked there, and the verdict says what it assumed
    result = Engine(ipt(OWNER.format(extra=""))).evaluate(TCP_1)
    assert result.verdict == "blocked" and result.by_user == ()
    assert SERVER_CAVEAT in result.caveats
    named = Engine(ipt(OWNER.format(extra=""))).evaluate(Flow("tcp", "127.0.0.1", 1, user="105", uid=105))
    assert named.verdict == "blocked" and named.deciding.packet == "reply" and SERVER_CAVEAT in named.caveats
    # the server's answers pass as ESTABLISHED: now the user decides
    both = Engine(ipt(OWNER.format(extra="-A OUTPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT"))).evaluate(TCP_1)
    (entry,) = both.by_user
    assert entry.who.startswith("uid 105") and entry.verdict == "delivered" and entry.uid == 105
    assert both.verdict_for(105) == "delivered" and both.verdict_for(0, 0) == "blocked"
    assert both.describe() == "delivered for " + entry.who + "; blocked for others"


def test_undecidable_match_whose_branches_agree_gives_the_verdict():
    result = Engine(ipt(OWNER.format(extra="-A OUTPUT -o lo -j ACCEPT"))).evaluate(TCP_1)
    assert result.verdict == "delivered"
    assert result.unknown == ()
    # a definite False beside the unknown match settles the rule
    assert Engine(ipt(OWNER.format(extra=""))).evaluate(TCP_53).verdict == "blocked"


def test_unknown_target_and_queue_explore_their_outcomes():
    rs = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -p udp -j NFQUEUE --queue-num 1
        COMMIT
        """)
    engine = Engine(rs)
    assert engine.evaluate(UDP_53).verdict == "unknown"
    assert engine.evaluate(TCP_1).verdict == "delivered"


def test_forks_are_bounded():
    lines = "\n".join(f"-A INPUT -m cpu --cpu {i} -j C{i}" for i in range(12))
    chains = "\n".join(f":C{i} - [0:0]" for i in range(12))
    body = "\n".join(f"-A C{i} -j RETURN" for i in range(12))
    text = f"*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{chains}\n{lines}\n{body}\nCOMMIT\n"
    rs = Ruleset(tables=iptables.parse(text, "forks", family="ip"))
    engine = Engine(rs, max_runs=16)
    # the cpu a packet is handled on is known only at run time: every rule forks
    result = engine.evaluate(TCP_1)
    assert engine.stats.runs == 16
    assert result.verdict == "unknown"
    assert result.unknown[-1] == "more than 16 undecidable branches: gave up"


# --------------------------------------------------------------------------- single packets


def test_walk_packet_anti_spoofing_narrow_vs_range():
    narrow = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT ! -i lo -s 127.0.0.1/32 -j DROP
        COMMIT
        """)
    wide = ipt("""
        *filter
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT ! -i lo -s 127.0.0.0/8 -j DROP
        COMMIT
        """)
    spoof = Packet(family="ip", saddr="127.0.0.2", daddr="127.0.0.1", proto="tcp", dport=22, iif="eth0")
    assert Engine(narrow).walk_packet(spoof, ("prerouting", "input")).verdict == "accept"
    dropped = Engine(wide).walk_packet(spoof, ("prerouting", "input"))
    assert dropped.verdict == "drop"
    assert dropped.deciding.rule.text == "-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP"
    # the same packet on lo passes
    on_lo = Packet(family="ip", saddr="127.0.0.2", daddr="127.0.0.1", proto="tcp", dport=22, iif="lo")
    assert Engine(wide).walk_packet(on_lo).verdict == "accept"


# --------------------------------------------------------------------------- work per flow


def _kube_like(services: int) -> Ruleset:
    lines = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-SERVICES - [0:0]",
    ]
    lines += [f":SVC{i} - [0:0]" for i in range(services)]
    lines += ["-A OUTPUT -j KUBE-SERVICES", "-A PREROUTING -j KUBE-SERVICES"]
    for i in range(services):
        lines.append(
            f"-A KUBE-SERVICES -d 10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}/32 -p tcp "
            f"--dport {80 + i % 7} -j SVC{i}"
        )
        lines.append(f"-A SVC{i} -p tcp -j DNAT --to-destination 10.244.{i // 256 % 256}.{i % 256}:8080")
    lines += [
        "COMMIT",
        "*filter",
        ":INPUT DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A INPUT -s 127.0.0.1/32 -j ACCEPT",
        "COMMIT",
        "",
    ]
    return Ruleset(tables=iptables.parse("\n".join(lines), "kube", family="ip"))


def test_rule_evaluations_per_flow_do_not_grow_with_unreachable_rules():
    counts = []
    for services in (500, 1000, 2000):
        engine = Engine(_kube_like(services))
        for flow in (TCP_1, TCP_53, UDP_53):
            engine.evaluate(flow)
        counts.append(engine.stats.rule_evals)
    assert counts[0] == counts[1] == counts[2]
    assert counts[0] < 40


def test_a_service_address_is_found_through_the_index():
    rs = _kube_like(1000)
    engine = Engine(rs)
    dest = Packet(
        family="ip", saddr="10.0.0.1", daddr="10.96.3.7", proto="tcp", dport=80 + (3 * 256 + 7) % 7, iif="eth0"
    )
    result = engine.walk_packet(dest, ("prerouting",))
    assert [s.note for s in result.steps if s.verdict == "dnat"] == ["dnat to 10.244.3.7"]
    assert engine.stats.rule_evals < 10


# --------------------------------------------------------------------------- assorted matches and targets


def test_undecidable_rules_that_only_log_do_not_fork():
    lines = "\n".join(f"-A INPUT -m owner --uid-owner {i} -j LOG" for i in range(30))
    rs = Ruleset(tables=iptables.parse(f"*filter\n:INPUT ACCEPT [0:0]\n{lines}\nCOMMIT\n", "log", family="ip"))
    engine = Engine(rs)
    assert engine.evaluate(TCP_1).verdict == "delivered"
    assert engine.stats.runs == 1


def test_multiport_ports_matches_either_port_and_wildcard_interfaces():
    rs = ipt("""
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -i l+ -p tcp -m multiport --ports 5000,6000 -j ACCEPT
        -A INPUT -i eth+ -j ACCEPT
        -A INPUT -p udp -m multiport ! --ports 53 -j ACCEPT
        COMMIT
        """)
    flows = [
        TCP_1,
        Flow("tcp", "127.0.0.1", 6000),
        Flow("tcp", "127.0.0.1", 7000),
        UDP_53,
        Flow("udp", "127.0.0.1", 5353),
    ]
    # udp 53: the request names 53 (no); udp 5353: the reply comes from 5353 and goes to an
    # ephemeral port, neither is 53 (yes)
    assert verdicts(rs, flows) == ["delivered", "delivered", "blocked", "blocked", "delivered"]


def test_ct_status_dnat_and_ctstate_dnat():
    rs = ipt("""
        *nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -d 127.0.0.11/32 -p udp --dport 53 -j DNAT --to-destination 127.0.0.11:5353
        COMMIT
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m conntrack --ctstate DNAT -j ACCEPT
        -A INPUT -m conntrack --ctstatus SEEN_REPLY -p tcp -j ACCEPT
        -A INPUT -p tcp --dport 5000 -m conntrack --ctstate NEW -j ACCEPT
        COMMIT
        """)
    assert verdicts(rs, [Flow("udp", "127.0.0.11", 53), Flow("udp", "127.0.0.1", 53), TCP_1]) == [
        "redirected",
        "blocked",
        "delivered",
    ]


def test_values_of_an_unexpected_shape_are_unknown_not_an_error():
    odd = Match("th.dport", values=("http",))
    vm = rule([], Action("vmap", vmap_field="th.dport", vmap=(VmapEntry(("x", "y", "z"), Action("drop")),)))
    chain = Chain("input", [rule([odd], Action("drop")), vm], hook="input", priority=0, type="filter", policy="accept")
    result = Engine(Ruleset(tables=[nft_table("ip", {"input": chain})])).evaluate(TCP_1)
    assert result.verdict == "unknown"


def test_walk_packet_from_input_alone_sees_the_given_conntrack_state():
    rs = ipt("""
        *filter
        :INPUT DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m conntrack --ctstate ESTABLISHED -p tcp --tcp-flags SYN,ACK ACK -j ACCEPT
        COMMIT
        """)
    engine = Engine(rs)
    est = Packet(
        saddr="127.0.0.53",
        daddr="127.0.0.1",
        proto="tcp",
        sport=53,
        dport=40000,
        iif="lo",
        ct_state="established",
        ct_direction="reply",
    )
    assert engine.walk_packet(est, ("input",)).verdict == "accept"
    new = Packet(saddr="127.0.0.53", daddr="127.0.0.1", proto="tcp", dport=53, iif="lo")
    assert engine.walk_packet(new, ("input",)).verdict == "drop"

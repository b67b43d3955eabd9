"""nft JSON -> model: every field and statement the model names, from JSON documents shaped
exactly as `nft -j list ruleset` (nftables 1.0.6) prints them. Pure: no kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbfw.errors import InputError, NeedRootError
from lbfw.model import Action, Origin, VmapEntry
from lbfw.read import hostfacts
from lbfw.read.live import handle_texts, read_live
from lbfw.read.nft import tables as nft_tables

LO = 0x7F000001


def _ip(a, b, c, d):
    return (a << 24) | (b << 16) | (c << 8) | d


def doc(rules, family="inet", table="filter", sets=(), chain=None):
    """A ruleset document: one table, one base chain "input", the given rule expr lists."""
    items = [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": family, "name": table, "handle": 1}},
    ]
    items += [{kind: dict(body, family=family, table=table)} for kind, body in sets]
    items.append(
        {
            "chain": chain
            or {
                "family": family,
                "table": table,
                "name": "input",
                "handle": 1,
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": "drop",
            }
        }
    )
    for i, expr in enumerate(rules):
        body = {"family": family, "table": table, "chain": "input", "handle": 10 + i}
        if isinstance(expr, dict):
            body.update(expr)
        else:
            body["expr"] = expr
        items.append({"rule": body})
    return {"nftables": items}


def rules_of(d, **kw):
    tables = nft_tables.parse(d, "test.json", **kw)
    return tables, tables[0].chains["input"].rules


def m(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
TCP_DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
ACCEPT = {"accept": None}


def test_base_chain_keeps_hook_priority_type_policy_and_table_identity():
    tables, _ = rules_of(doc([]))
    t = tables[0]
    assert (t.family, t.name, t.backend, t.syntax, t.source) == ("inet", "filter", "file", "nft", "test.json")
    c = t.chains["input"]
    assert (c.hook, c.priority, c.type, c.policy, c.is_base) == ("input", 0, "filter", "drop", True)


@pytest.mark.parametrize(
    "family,prio,expected",
    [
        ("inet", "raw", -300),
        ("ip", "mangle", -150),
        ("ip", "dstnat", -100),
        ("ip6", "filter", 0),
        ("inet", "security", 50),
        ("ip", "srcnat", 100),
        ("inet", "filter + 10", 10),
        ("ip", "mangle - 5", -155),
        ("bridge", "filter", -200),
        ("ip", -250, -250),
        ("ip", "7", 7),
    ],
)
def test_named_priorities_become_numbers(family, prio, expected):
    chain = {
        "family": family,
        "table": "t",
        "name": "input",
        "handle": 1,
        "type": "filter",
        "hook": "input",
        "prio": prio,
        "policy": "accept",
    }
    tables, _ = rules_of(doc([], family=family, table="t", chain=chain))
    assert tables[0].chains["input"].priority == expected


def test_user_chain_has_no_hook_or_policy():
    chain = {"family": "ip", "table": "t", "name": "input", "handle": 1}
    tables, _ = rules_of(doc([[ACCEPT]], family="ip", table="t", chain=chain))
    c = tables[0].chains["input"]
    assert (c.hook, c.priority, c.type, c.policy, c.is_base) == (None, None, None, None, False)


def test_addresses_plain_prefix_range_set_and_negation():
    _, rules = rules_of(
        doc(
            [
                [m(SADDR, "127.0.0.1"), ACCEPT],
                [m(SADDR, {"prefix": {"addr": "127.0.0.0", "len": 8}}, "!="), {"drop": None}],
                [m(DADDR, {"range": ["127.0.0.1", "127.0.0.9"]}), ACCEPT],
                [
                    m(
                        SADDR,
                        {
                            "set": [
                                "127.0.0.1",
                                {"prefix": {"addr": "10.0.0.0", "len": 8}},
                                {"range": ["192.168.1.1", "192.168.1.9"]},
                            ]
                        },
                    ),
                    ACCEPT,
                ],
                [m({"payload": {"protocol": "ip6", "field": "saddr"}}, "::1"), ACCEPT],
                [
                    m({"payload": {"protocol": "ip6", "field": "daddr"}}, {"prefix": {"addr": "fe80::", "len": 10}}),
                    ACCEPT,
                ],
            ]
        )
    )
    assert rules[0].matches[-1].field == "ip.saddr" and rules[0].matches[-1].values == ((LO, LO),)
    assert not rules[0].matches[-1].negate
    neg = rules[1].matches[-1]
    assert neg.negate and neg.values == ((_ip(127, 0, 0, 0), _ip(127, 255, 255, 255)),)
    assert rules[1].action.kind == "drop"
    assert rules[2].matches[-1].field == "ip.daddr"
    assert rules[2].matches[-1].values == ((LO, _ip(127, 0, 0, 9)),)
    assert rules[3].matches[-1].values == (
        (LO, LO),
        (_ip(10, 0, 0, 0), _ip(10, 255, 255, 255)),
        (_ip(192, 168, 1, 1), _ip(192, 168, 1, 9)),
    )
    assert rules[4].matches[-1].field == "ip6.saddr" and rules[4].matches[-1].values == ((1, 1),)
    lo6 = 0xFE80 << 112
    assert rules[5].matches[-1].values == ((lo6, lo6 | ((1 << 118) - 1)),)


def test_prefix_with_host_bits_is_masked_like_the_kernel():
    _, rules = rules_of(doc([[m(SADDR, {"prefix": {"addr": "127.0.0.1", "len": 8}}), ACCEPT]]))
    assert rules[0].matches[-1].values == ((_ip(127, 0, 0, 0), _ip(127, 255, 255, 255)),)


def test_ports_carry_their_protocol_but_th_does_not():
    _, rules = rules_of(
        doc(
            [
                [m(TCP_DPORT, {"set": [22, {"range": [80, 90]}]}), ACCEPT],
                [m({"payload": {"protocol": "udp", "field": "sport"}}, 53), ACCEPT],
                [
                    m({"meta": {"key": "l4proto"}}, {"set": ["tcp", "udp"]}),
                    m({"payload": {"protocol": "th", "field": "dport"}}, 53),
                    ACCEPT,
                ],
                [m(TCP_DPORT, 1024, "<"), ACCEPT],
                [m(TCP_DPORT, 1024, ">="), ACCEPT],
            ]
        )
    )
    assert [(x.field, x.values) for x in rules[0].matches] == [
        ("meta.l4proto", ((6, 6),)),
        ("th.dport", ((22, 22), (80, 90))),
    ]
    assert [(x.field, x.values) for x in rules[1].matches] == [("meta.l4proto", ((17, 17),)), ("th.sport", ((53, 53),))]
    assert [(x.field, x.values) for x in rules[2].matches] == [
        ("meta.l4proto", ((6, 6), (17, 17))),
        ("th.dport", ((53, 53),)),
    ]
    assert rules[3].matches[-1].values == ((0, 1023),)
    assert rules[4].matches[-1].values == ((1024, 65535),)


def test_protocol_fields_all_become_meta_l4proto():
    _, rules = rules_of(
        doc(
            [
                [m({"payload": {"protocol": "ip", "field": "protocol"}}, "icmp"), ACCEPT],
                [m({"payload": {"protocol": "ip6", "field": "nexthdr"}}, "ipv6-icmp"), ACCEPT],
                [m({"meta": {"key": "l4proto"}}, 132), ACCEPT],
                [m({"meta": {"key": "nfproto"}}, "ipv6"), ACCEPT],
                [m({"meta": {"key": "protocol"}}, "ip"), ACCEPT],
            ]
        )
    )
    assert [(r.matches[-1].field, r.matches[-1].values) for r in rules] == [
        ("meta.l4proto", ((1, 1),)),
        ("meta.l4proto", ((58, 58),)),
        ("meta.l4proto", ((132, 132),)),
        ("meta.nfproto", ("ipv6",)),
        ("meta.nfproto", ("ipv4",)),
    ]


def test_interfaces_by_name_with_wildcards_and_sets():
    _, rules = rules_of(
        doc(
            [
                [m({"meta": {"key": "iif"}}, "lo"), ACCEPT],
                [m({"meta": {"key": "iifname"}}, "lo*"), ACCEPT],
                [m({"meta": {"key": "oif"}}, "lo"), ACCEPT],
                [m({"meta": {"key": "oifname"}}, {"set": ["eth0", "wg*"]}, "!="), ACCEPT],
            ]
        )
    )
    assert [(r.matches[0].field, r.matches[0].values, r.matches[0].negate) for r in rules] == [
        ("meta.iifname", ("lo",), False),
        ("meta.iifname", ("lo*",), False),
        ("meta.oifname", ("lo",), False),
        ("meta.oifname", ("eth0", "wg*"), True),
    ]
    assert rules[0].text == 'iif "lo" accept'


def test_conntrack_fib_and_mark():
    _, rules = rules_of(
        doc(
            [
                [m({"ct": {"key": "state"}}, ["established", "related"], "in"), ACCEPT],
                [m({"ct": {"key": "state"}}, "invalid", "in"), {"drop": None}],
                [m({"ct": {"key": "status"}}, "dnat", "in"), ACCEPT],
                [m({"ct": {"key": "direction"}}, "reply"), ACCEPT],
                [m({"fib": {"result": "type", "flags": ["daddr"]}}, "local"), ACCEPT],
                [m({"&": [{"meta": {"key": "mark"}}, 255]}, 1), ACCEPT],
                [m({"meta": {"key": "mark"}}, 2), ACCEPT],
            ]
        )
    )
    got = [(r.matches[0].field, r.matches[0].values, r.matches[0].mask) for r in rules]
    assert got == [
        ("ct.state", ("established", "related"), None),
        ("ct.state", ("invalid",), None),
        ("ct.status", ("dnat",), None),
        ("ct.direction", ("reply",), None),
        ("fib.daddr.type", ("local",), None),
        ("meta.mark", ((1, 1),), 255),
        ("meta.mark", ((2, 2),), None),
    ]


def test_concatenation_with_anonymous_set():
    concat = {"concat": [SADDR, TCP_DPORT]}
    _, rules = rules_of(
        doc(
            [
                [
                    m(concat, {"set": [{"concat": ["127.0.0.1", 22]}, {"concat": ["127.0.0.2", {"range": [80, 90]}]}]}),
                    ACCEPT,
                ]
            ]
        )
    )
    nfproto, l4, match = rules[0].matches
    assert (nfproto.field, nfproto.values) == ("meta.nfproto", ("ipv4",))  # `ip saddr` in inet
    assert (l4.field, l4.values) == ("meta.l4proto", ((6, 6),))
    assert match.field == ("ip.saddr", "th.dport")
    assert match.values == (((LO, LO), (22, 22)), ((LO + 1, LO + 1), (80, 90)))


def test_named_sets_and_maps_are_resolved_from_the_table():
    sets = [
        (
            "set",
            {
                "name": "allowed",
                "type": "ipv4_addr",
                "handle": 2,
                "flags": ["interval"],
                "elem": [
                    {"prefix": {"addr": "10.0.0.0", "len": 8}},
                    "127.0.0.1",
                    {"range": ["192.168.1.1", "192.168.1.9"]},
                ],
            },
        ),
        (
            "set",
            {"name": "pa", "type": ["ipv4_addr", "inet_service"], "handle": 3, "elem": [{"concat": ["127.0.0.1", 53]}]},
        ),
        (
            "map",
            {
                "name": "vm",
                "type": "ipv4_addr",
                "handle": 4,
                "map": "verdict",
                "elem": [["10.0.0.1", {"drop": None}], ["127.0.0.1", {"jump": {"target": "other"}}]],
            },
        ),
        ("set", {"name": "dyn", "type": "ipv4_addr", "handle": 5, "flags": ["dynamic", "timeout"]}),
        ("set", {"name": "unused", "type": "ipv4_addr", "handle": 6, "elem": ["127.0.0.1"]}),
    ]
    tables, rules = rules_of(
        doc(
            [
                [m(SADDR, "@allowed"), ACCEPT],
                [m({"concat": [SADDR, TCP_DPORT]}, "@pa"), ACCEPT],
                [{"vmap": {"key": SADDR, "data": "@vm"}}],
                [m(SADDR, "@dyn"), ACCEPT],
            ],
            sets=sets,
        )
    )
    named = tables[0].sets
    assert named["allowed"].key == "ip.saddr" and named["allowed"].flags == frozenset({"interval"})
    assert named["allowed"].elements == (
        (_ip(10, 0, 0, 0), _ip(10, 255, 255, 255)),
        (LO, LO),
        (_ip(192, 168, 1, 1), _ip(192, 168, 1, 9)),
    )
    assert rules[0].matches[-1].set_name == "allowed"
    assert rules[0].matches[-1].values == named["allowed"].elements
    assert rules[1].matches[-1].field == ("ip.saddr", "th.dport")
    assert rules[1].matches[-1].values == (((LO, LO), (53, 53)),)
    vmap = rules[2].action
    assert vmap.kind == "vmap" and vmap.set_name == "vm" and vmap.vmap_field == "ip.saddr"
    assert vmap.vmap == (
        VmapEntry((_ip(10, 0, 0, 1),) * 2, Action("drop")),
        VmapEntry((LO, LO), Action("jump", target="other")),
    )
    assert named["vm"].is_map and named["vm"].map_type == "verdict"
    # a set filled at run time cannot be decided: opaque, and the set says it is not known
    assert named["dyn"].known is False
    assert rules[3].matches[-1].opaque and "@dyn" in rules[3].matches[-1].text
    # a set no rule uses is still converted from its type
    assert named["unused"].key == "ip.addr" and named["unused"].elements == ((LO, LO),)


def test_anonymous_verdict_map():
    _, rules = rules_of(
        doc(
            [
                [
                    {
                        "vmap": {
                            "key": SADDR,
                            "data": {
                                "set": [
                                    ["127.0.0.1", ACCEPT],
                                    [{"prefix": {"addr": "10.0.0.0", "len": 8}}, {"goto": {"target": "x"}}],
                                ]
                            },
                        }
                    }
                ]
            ]
        )
    )
    a = rules[0].action
    assert a.kind == "vmap" and a.set_name is None and a.vmap_field == "ip.saddr"
    assert [(e.value, e.action.kind, e.action.target) for e in a.vmap] == [
        ((LO, LO), "accept", None),
        ((_ip(10, 0, 0, 0), _ip(10, 255, 255, 255)), "goto", "x"),
    ]


def test_verdicts_and_neutral_statements():
    _, rules = rules_of(
        doc(
            [
                [
                    m(TCP_DPORT, 22),
                    {"counter": {"packets": 0, "bytes": 0}},
                    {"log": {"prefix": "x "}},
                    {"limit": {"rate": 5, "per": "second"}},
                    {"quota": {"val": 1, "val_unit": "mbytes"}},
                    ACCEPT,
                ],
                [{"jump": {"target": "other"}}],
                [{"goto": {"target": "other"}}],
                [{"return": None}],
                [{"continue": None}],
                [{"reject": {"type": "tcp reset"}}],
                [{"counter": None}],
                [{"notrack": None}],
                [{"queue": {"num": 3}}],
            ]
        )
    )
    kinds = [(r.action.kind, r.action.target) for r in rules]
    assert kinds == [
        ("accept", None),
        ("jump", "other"),
        ("goto", "other"),
        ("return", None),
        ("continue", None),
        ("reject", None),
        ("continue", None),
        ("notrack", None),
        ("queue", None),
    ]
    # counter and log: no matches; limit and quota: runtime conditions the engine words
    assert [x.field for x in rules[0].matches] == ["meta.l4proto", "th.dport", "limit", "quota"]


def test_nat_statements_say_where_the_packet_goes():
    _, rules = rules_of(
        doc(
            [
                [m(TCP_DPORT, 80), {"dnat": {"family": "ip", "addr": "127.0.0.1", "port": 8080}}],
                [{"redirect": {"port": 8081}}],
                [{"masquerade": None}],
                [{"snat": {"family": "ip", "addr": "10.0.0.1"}}],
                [{"dnat": {"family": "ip6", "addr": "::1", "port": 53}}],
            ]
        )
    )
    got = [(r.action.kind, r.action.to_addr, r.action.to_port) for r in rules]
    assert got == [
        ("dnat", LO, 8080),
        ("redirect", None, 8081),
        ("masquerade", None, None),
        ("snat", _ip(10, 0, 0, 1), None),
        ("dnat", 1, 53),
    ]


def test_meta_mark_set_runs_before_the_verdict():
    mark = {"meta": {"key": "mark"}}
    _, rules = rules_of(
        doc(
            [
                [{"mangle": {"key": mark, "value": 16}}, ACCEPT],
                [{"mangle": {"key": mark, "value": {"|": [{"&": [mark, 0xFFFF0005]}, 5]}}}],
            ]
        )
    )
    assert rules[0].action.kind == "accept"
    assert [b.set_mark for b in rules[0].before] == [(16, 0xFFFFFFFF)]
    assert all(b.kind == "continue" for b in rules[0].before)
    # meta mark set meta mark & 0xffff0000 | 0x5 (nft folds it to & 0xffff0005 | 5):
    # the low 16 bits become 5, the high 16 bits are kept
    assert rules[1].action.kind == "continue"
    assert rules[1].before[0].set_mark == (5, 0x0000FFFF)


def test_iptables_nft_xt_and_unknown_expressions_are_kept_opaque():
    _, rules = rules_of(
        doc(
            [
                [{"xt": {"type": "match", "name": "comment"}}, ACCEPT],
                [{"xt": {"type": "target", "name": "LOG"}}],
                [m({"meta": {"key": "skuid"}}, 0), ACCEPT],
                [m({"payload": {"protocol": "tcp", "field": "flags"}}, "syn", "<"), ACCEPT],
                [{"tproxy": {"port": 1}}],
                [m({"ct": {"key": "mark"}}, 1), ACCEPT],
            ]
        )
    )
    assert rules[0].matches[0].opaque and rules[0].matches[0].text == "xt match comment"
    assert rules[0].action.kind == "accept"
    assert (rules[1].action.kind, rules[1].action.target) == ("unknown", "LOG")
    assert (rules[2].matches[0].field, rules[2].matches[0].values, rules[2].matches[0].opaque) == (
        "meta.skuid",
        ((0, 0),),
        False,
    )
    assert rules[3].matches[-1].opaque and rules[3].matches[-1].text == "tcp flags < syn"
    assert (rules[4].action.kind, rules[4].action.target) == ("unknown", "tproxy")
    assert (rules[5].matches[0].field, rules[5].matches[0].values, rules[5].matches[0].opaque) == (
        "ct.mark",
        ((1, 1),),
        False,
    )


def test_comment_and_ignore_ids():
    _, rules = rules_of(
        doc(
            [
                {"expr": [m({"meta": {"key": "iif"}}, "lo"), ACCEPT], "comment": "lbfw: ignore LB002, lb003 (docker)"},
                {"expr": [ACCEPT], "comment": "plain"},
            ]
        )
    )
    assert rules[0].comment == "lbfw: ignore LB002, lb003 (docker)"
    assert rules[0].ignore == frozenset({"LB002", "LB003"})
    assert rules[0].text.endswith('comment "lbfw: ignore LB002, lb003 (docker)"')
    assert rules[1].comment == "plain" and rules[1].ignore == frozenset()


def test_origins_live_handles_file_lines_and_texts():
    d = doc([[ACCEPT], [{"drop": None}]])
    _, live_rules = rules_of(d, backend="nftables")
    assert [r.origin for r in live_rules] == [Origin("test.json", handle=10), Origin("test.json", handle=11)]
    seen = []

    def line_of(table, chain, handle):
        seen.append((table.family, table.name, chain, handle))
        return {10: 3}.get(handle)

    _, file_rules = rules_of(d, line_of=line_of, text_of={("inet", "filter", 11): "drop # as printed"})
    assert seen == [("inet", "filter", "input", 10), ("inet", "filter", "input", 11)]
    assert file_rules[0].origin == Origin("test.json", line=3)
    assert file_rules[1].origin == Origin("test.json", handle=11)
    assert file_rules[1].text == "drop # as printed" and file_rules[0].text == "accept"


@pytest.mark.parametrize(
    "bad", [{"x": 1}, [1, 2], {"nftables": {"table": 1}}, {"nftables": [{"chain": {"family": "ip", "table": "t"}}]}]
)
def test_a_document_that_is_not_a_ruleset_is_an_input_error(bad):
    with pytest.raises(InputError) as err:
        nft_tables.parse(bad, "bad.json")
    assert err.value.path == "bad.json"


def test_handle_texts_maps_handles_to_printed_rules_joining_wrapped_lines():
    text = (
        "table inet fw { # handle 7\n"
        "\tset s { # handle 3\n\t\ttype ipv4_addr\n\t\telements = { 127.0.0.1 }\n\t}\n\n"
        "\tchain in { # handle 1\n"
        "\t\ttype filter hook input priority filter; policy drop;\n"
        '\t\tiif "lo" accept # handle 4\n'
        "\t\ttcp dport { 1, 2, 3,\n\t\t\t     4, 5 } accept # handle 5\n"
        "\t}\n}\n"
    )
    assert handle_texts(text, "inet", "fw") == {
        ("inet", "fw", 4): 'iif "lo" accept',
        ("inet", "fw", 5): "tcp dport { 1, 2, 3, 4, 5 } accept",
    }


def test_host_facts_from_ip_json():
    addr = [
        {
            "ifname": "lo",
            "addr_info": [
                {"family": "inet", "local": "127.0.0.1", "prefixlen": 8},
                {"family": "inet6", "local": "::1", "prefixlen": 128},
            ],
        }
    ]
    full = [{"type": "local", "dst": "127.0.0.0/8", "dev": "lo"}, {"type": "local", "dst": "127.0.0.1", "dev": "lo"}]
    facts = hostfacts.facts_from(addr, full, {"all": 0, "eth0": 1}, ["lo", "eth0"])
    assert facts.lo_addrs == ("127.0.0.1/8", "::1/128")
    assert facts.local_127_route is True
    assert facts.route_localnet == {"all": 0, "eth0": 1} and facts.interfaces == ("lo", "eth0")
    narrow = hostfacts.facts_from(addr, [{"type": "local", "dst": "127.0.0.1", "dev": "lo"}], {}, [])
    assert narrow.local_127_route is False
    assert hostfacts.facts_from(None, None, {}, []).local_127_route is None


def test_live_reading_without_root_says_what_to_run():
    with pytest.raises(NeedRootError) as err:
        read_live(is_root=False)
    assert "root" in err.value.message and "sudo lbfw audit" in (err.value.hint or "")
    assert err.value.exit_code == 2


def test_unknown_reader_is_an_input_error():
    with pytest.raises(InputError):
        read_live("nope", is_root=False)


def test_a_port_verdict_map_keeps_its_protocol_as_a_match():
    _, rules = rules_of(
        doc(
            [
                [{"vmap": {"key": TCP_DPORT, "data": {"set": [[22, ACCEPT], [53, {"drop": None}]]}}}],
                [
                    {
                        "vmap": {
                            "key": {"ct": {"key": "state"}},
                            "data": {"set": [["established", ACCEPT], ["invalid", {"drop": None}]]},
                        }
                    }
                ],
            ]
        )
    )
    assert [(x.field, x.values) for x in rules[0].matches] == [("meta.l4proto", ((6, 6),))]
    assert rules[0].action.vmap_field == "th.dport"
    assert [(e.value, e.action.kind) for e in rules[0].action.vmap] == [((22, 22), "accept"), ((53, 53), "drop")]
    assert rules[1].matches == () and rules[1].action.vmap_field == "ct.state"
    assert [e.value for e in rules[1].action.vmap] == ["established", "invalid"]


def test_an_undecidable_port_match_keeps_its_certain_protocol():
    sets = [("set", {"name": "dyn", "type": "inet_service", "handle": 2, "flags": ["dynamic"]})]
    _, rules = rules_of(doc([[m(TCP_DPORT, "@dyn"), ACCEPT]], sets=sets))
    l4, unknown = rules[0].matches
    assert (l4.field, l4.values, l4.opaque) == ("meta.l4proto", ((6, 6),), False)
    assert unknown.opaque and unknown.text == "tcp dport @dyn"


def test_the_nft_j_f_command_form_is_read_too():
    d = {
        "nftables": [
            {"flush": {"ruleset": None}},
            {"add": {"table": {"family": "inet", "name": "f"}}},
            {
                "add": {
                    "chain": {
                        "family": "inet",
                        "table": "f",
                        "name": "input",
                        "type": "filter",
                        "hook": "input",
                        "prio": 0,
                        "policy": "drop",
                    }
                }
            },
            {
                "add": {
                    "rule": {
                        "family": "inet",
                        "table": "f",
                        "chain": "input",
                        "expr": [m({"meta": {"key": "iif"}}, "lo"), ACCEPT],
                    }
                }
            },
        ]
    }
    tables = nft_tables.parse(d, "cmds.json")
    chain = tables[0].chains["input"]
    assert (chain.hook, chain.policy) == ("input", "drop")
    assert [r.text for r in chain.rules] == ['iif "lo" accept']


# Match spellings of `tcp flags` and `fib ... oif` with the JSON nft 1.0.6 prints for each
# (measured: tests/kernel/test_nft_file_fields.py checks them against the real nft).
LOOKUPS = json.loads((Path(__file__).parent / "data" / "nft_lookups.json").read_text())["rows"]
FLAGSET = ("set", {"name": "flagset", "type": "tcp_flag", "handle": 2, "elem": ["syn", "ack"]})


def _tuples(values):
    return tuple(tuple(v) if isinstance(v, list) else v for v in values)


@pytest.mark.parametrize("row", LOOKUPS, ids=[r["nft"] for r in LOOKUPS])
def test_tcp_flags_and_fib_oif_lookups_become_fields_as_nft_prints_them(row):
    _, rules = rules_of(doc([[{"match": row["json"]}, ACCEPT]], sets=[FLAGSET]))
    (match,) = rules[0].matches
    if row.get("opaque"):
        assert match.opaque
    else:
        assert (match.field, match.values, match.negate, match.opaque) == (
            row["field"],
            _tuples(row["values"]),
            row["negate"],
            False,
        )
    assert match.text == rules[0].text.removesuffix(" accept")


def test_tcp_flags_keep_their_text_and_are_the_iptables_reader_field(tmp_path):
    from lbfw.read import read_sources

    ipt = tmp_path / "rules.v4"
    ipt.write_text(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT\n"
        "-A INPUT -p tcp ! --tcp-flags SYN,ACK ACK -j ACCEPT\nCOMMIT\n"
    )
    ipt_rules = read_sources([str(ipt)]).tables[0].chains["INPUT"].rules
    ipt_flags = [next(x for x in r.matches if x.field == "tcp.flags") for r in ipt_rules]
    flags = {"payload": {"protocol": "tcp", "field": "flags"}}
    _, rules = rules_of(
        doc(
            [
                [m({"&": [flags, ["fin", "syn", "rst", "ack"]]}, "syn"), ACCEPT],
                [m({"&": [flags, ["syn", "ack"]]}, "ack", "!="), ACCEPT],
            ]
        )
    )
    assert [(x.values, x.negate) for x in ipt_flags] == [(r.matches[0].values, r.matches[0].negate) for r in rules]
    assert [r.matches[0].text for r in rules] == ["tcp flags & fin,syn,rst,ack == syn", "tcp flags & syn,ack != ack"]


def test_tcp_flags_of_an_unknown_shape_stay_opaque_with_their_text():
    flags = {"payload": {"protocol": "tcp", "field": "flags"}}
    _, rules = rules_of(
        doc(
            [
                [m({"&": [flags, ["syn", "bogus"]]}, "syn"), ACCEPT],  # a flag name nft does not have
                [m({"&": [flags, "syn"]}, {"range": ["syn", "ack"]}), ACCEPT],
                [m(flags, {"set": []}), ACCEPT],
                [m({"&": [flags, 0x1FF]}, 2), ACCEPT],  # wider than the one-byte field
            ]
        )
    )
    assert all(r.matches[0].opaque and r.matches[0].field.startswith("tcp flags") for r in rules)
    assert rules[0].matches[0].text == "tcp flags & syn,bogus == syn"


def test_fib_oif_compared_with_an_interface_or_by_order_stays_as_it_was():
    fib = {"fib": {"result": "oif", "flags": ["saddr", "iif"]}}
    _, rules = rules_of(
        doc(
            [
                [m(fib, "eth0"), ACCEPT],
                [m(fib, 0, "<"), ACCEPT],
                [m(fib, False, "in"), ACCEPT],
                [m({"fib": {"result": "type", "flags": ["saddr"]}}, "local"), ACCEPT],
            ]
        )
    )
    assert [r.matches[0].opaque for r in rules] == [True, True, True, False]
    assert rules[3].matches[0].field == "fib.saddr.type"

"""Every recorded spelling of the issue-11 fields (tests/data/iptables_fields.json and
nft_fields.json: what iptables-save and `nft -j list ruleset` print, checked against the real
tools by tests/kernel/test_read_tools_print_field_spellings.py) gives the Matches and Actions stated there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbfw.errors import InputError
from lbfw.model import FIELDS
from lbfw.read.iptables.parser import parse
from lbfw.read.nft.exprs import TableContext
from lbfw.read.nft.stmts import rule_parts

DATA = Path(__file__).parent / "data"
IPT = json.loads((DATA / "iptables_fields.json").read_text())["rows"]
NFT = json.loads((DATA / "nft_fields.json").read_text())["rows"]


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _shape(m) -> dict:
    return {"field": m.field, "values": m.values, "negate": m.negate, "mask": m.mask, "opaque": m.opaque}


def _expected(rows: list) -> list:
    return [{k: _tuples(v) for k, v in row.items()} for row in rows]


def _action(a) -> dict:
    return {k: getattr(a, k) for k in ("kind", "set_mark", "set_ctmark", "copy_mark", "mark_unknown")}


def _ipt_rule(row: dict, line: str):
    text = f"*{row['table']}\n:{row['chain']} ACCEPT [0:0]\n-A {row['chain']} {line}\nCOMMIT\n"
    return parse(text, "rules", family=row["family"])[0].chains[row["chain"]].rules[0]


@pytest.mark.parametrize("row", IPT, ids=[f"{r['family']} {r['written']}" for r in IPT])
def test_iptables_save_spelling_gives_its_matches_and_action(row):
    rule = _ipt_rule(row, row["saved"])
    assert [_shape(m) for m in rule.matches] == _expected(row["matches"])
    assert _action(rule.action) == {k: _tuples(v) for k, v in row["action"].items()}
    # what was written by hand (names, old spellings) reads as what iptables-save prints back,
    # except where the written form is itself the text the Match carries (limit, time ...)
    written = _ipt_rule(row, row["written"] if " -j " in f" {row['written']}" else f"{row['written']} -j ACCEPT")
    assert [
        (m.field, m.values, m.negate, m.mask)
        for m in written.matches
        if m.field not in ("limit", "runtime", "connlimit")
    ] == [
        (m.field, m.values, m.negate, m.mask) for m in rule.matches if m.field not in ("limit", "runtime", "connlimit")
    ]


@pytest.mark.parametrize("row", NFT, ids=[f"{r['family']} {r['nft']}" for r in NFT])
def test_nft_json_spelling_gives_its_matches_and_actions(row):
    matches, action, before = rule_parts(row["json"], TableContext(row["family"], {}))
    assert [_shape(m) for m in matches] == _expected(row["matches"])
    assert action.kind == row["action"]
    assert [_action(b) for b in before] == [{k: _tuples(v) for k, v in b.items()} for b in row["before"]]
    assert all(b.kind == "continue" for b in before)


def test_every_emitted_field_is_in_the_model_table():
    emitted = {m["field"] for row in IPT + NFT for m in row["matches"] if not m["opaque"]}
    for field in emitted:
        for name in field if isinstance(field, list) else [field]:
            assert name in FIELDS, name


def test_inet_ip_protocol_is_ipv4_only_and_implied_matches_are_not_repeated():
    ctx = TableContext("inet", {})
    proto = {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}}, "right": "tcp"}}
    dport = {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}
    matches, _, _ = rule_parts([proto, dport, {"accept": None}], ctx)
    assert [(m.field, m.values) for m in matches] == [
        ("meta.nfproto", ("ipv4",)),
        ("meta.l4proto", ((6, 6),)),
        ("th.dport", ((22, 22),)),
    ]
    matches, _, _ = rule_parts([proto, {"accept": None}], TableContext("ip", {}))
    assert [m.field for m in matches] == ["meta.l4proto"]


def test_wg_quick_mark_restore_is_a_copy_not_a_verdict():
    stmts = [
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "udp"}},
        {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"ct": {"key": "mark"}}}},
    ]
    matches, action, before = rule_parts(stmts, TableContext("inet", {}))
    assert action.kind == "continue"
    assert [b.copy_mark for b in before] == [("ct->meta", 0xFFFFFFFF)]


def test_owner_names_resolve_here_and_unknown_names_stay_opaque():
    row = {"family": "ip", "table": "filter", "chain": "OUTPUT"}
    (m,) = _ipt_rule(row, "-m owner --uid-owner root -j ACCEPT").matches
    assert (m.field, m.values, m.opaque) == ("meta.skuid", ((0, 0),), False)
    (m,) = _ipt_rule(row, "-m owner --gid-owner lbfw-no-such-group -j ACCEPT").matches
    assert (m.field, m.values, m.opaque) == ("meta.skgid", (), True)
    assert m.text == "-m owner --gid-owner lbfw-no-such-group"


@pytest.mark.parametrize(
    "line",
    [
        "-m statistic --mode nth --every 3",
        "-m statistic ! --mode nth --every 2 --packet 1",
        "-p icmp -m icmp --icmp-type bogus",
        "-m ttl --ttl-eq 300",
        "-m dscp --dscp 64",
        "-m pkttype --pkt-type sometimes",
        "-m connlimit --connlimit-mask 24",
    ],
)
def test_what_iptables_restore_refuses_is_refused(line):
    with pytest.raises(InputError):
        _ipt_rule({"family": "ip", "table": "filter", "chain": "INPUT"}, f"{line} -j ACCEPT")

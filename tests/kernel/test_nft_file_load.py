"""nft ruleset files read by libnftables in a throwaway network namespace: defines,
includes, sets, verdict maps and interface names load; every rule is mapped to its line;
nft's own errors come back as PATH:LINE; nft JSON files give the same model."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest

from lbfw.errors import InputError
from lbfw.read.nft import files as nft_files
from lbfw.read.nft import tables as nft_tables

pytestmark = pytest.mark.kernel

LO = 0x7F000001

MAIN = """#!/usr/sbin/nft -f
# a multi-line ruleset: defines, an include, sets, a verdict map, interface names
define LO4 = 127.0.0.1
define WAN = "eth7"
define PORTS = { 22, 80 }

include "parts/nat.nft"

table inet filter {
	set allowed {
		type ipv4_addr
		flags interval
		elements = {
			127.0.0.1,
			10.0.0.0/8
		}
	}

	chain input {
		type filter hook input priority filter; policy drop;

		iif lo accept  # loopback
		iif $WAN tcp dport $PORTS accept
		ip saddr @allowed accept
		ip saddr {
			127.0.0.1,
			127.0.0.2
		} counter accept
		ip saddr vmap { $LO4 : accept, 10.0.0.1 : drop }; ct state established,related accept
		oif { "wg0", lo } return
		jump user
	}

	chain user {
		ip saddr $LO4 accept comment "lbfw: ignore LB002"
	}
}
add rule inet filter user drop
"""

NAT = """table ip nat {
	chain out {
		type nat hook output priority -100;
		ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:46635
	}
}
"""


@pytest.fixture
def ruleset_dir(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "nat.nft").write_text(NAT)
    (tmp_path / "main.nft").write_text(MAIN)
    return tmp_path


def by_key(tables):
    return {(t.family, t.name): t for t in tables}


def test_multi_line_file_with_defines_include_sets_vmap_and_iif_names_loads_and_maps_lines(ruleset_dir):
    path = str(ruleset_dir / "main.nft")
    tables = by_key(nft_files.read(path, path))
    assert set(tables) == {("inet", "filter"), ("ip", "nat")}
    filt = tables[("inet", "filter")]
    assert all(t.backend == "file" and t.syntax == "nft" for t in tables.values())
    rules = filt.chains["input"].rules
    got = [(r.origin.source, r.origin.line, r.text) for r in rules]
    assert got == [
        (path, 22, "iif lo accept"),
        (path, 23, "iif $WAN tcp dport $PORTS accept"),
        (path, 24, "ip saddr @allowed accept"),
        (path, 25, "ip saddr {\n\t\t\t127.0.0.1,\n\t\t\t127.0.0.2\n\t\t} counter accept"),
        (path, 29, "ip saddr vmap { $LO4 : accept, 10.0.0.1 : drop }"),
        (path, 29, "ct state established,related accept"),
        (path, 30, 'oif { "wg0", lo } return'),
        (path, 31, "jump user"),
    ]
    # the model comes from libnftables: defines expanded, the named set resolved, names kept
    assert rules[0].matches[0].field == "meta.iifname" and rules[0].matches[0].values == ("lo",)
    assert [(m.field, m.values) for m in rules[1].matches] == [
        ("meta.iifname", ("eth7",)),
        ("meta.l4proto", ((6, 6),)),
        ("th.dport", ((22, 22), (80, 80))),
    ]
    assert (rules[2].matches[0].field, rules[2].matches[0].values) == ("meta.nfproto", ("ipv4",))  # inet
    assert rules[2].matches[1].set_name == "allowed"
    assert (LO, LO) in rules[2].matches[1].values
    assert rules[3].matches[1].values == ((LO, LO), (LO + 1, LO + 1))
    assert rules[4].action.kind == "vmap"
    assert [(e.value, e.action.kind) for e in rules[4].action.vmap] == [
        ((0x0A000001, 0x0A000001), "drop"),
        ((LO, LO), "accept"),
    ]
    assert sorted(rules[6].matches[0].values) == ["lo", "wg0"]  # the kernel orders set elements
    assert (rules[7].action.kind, rules[7].action.target) == ("jump", "user")
    user = filt.chains["user"].rules
    assert [(r.origin.line, r.text) for r in user] == [
        (35, 'ip saddr $LO4 accept comment "lbfw: ignore LB002"'),
        (38, "drop"),
    ]
    assert user[0].ignore == frozenset({"LB002"})
    chain = filt.chains["input"]
    assert (chain.hook, chain.priority, chain.policy, chain.type) == ("input", 0, "drop", "filter")
    nat = tables[("ip", "nat")].chains["out"]
    inc = (
        os.path.relpath(str(ruleset_dir / "parts" / "nat.nft"))
        if not os.path.isabs(path)
        else str(ruleset_dir / "parts" / "nat.nft")
    )
    assert [(r.origin.source, r.origin.line) for r in nat.rules] == [(inc, 4)]
    assert (nat.rules[0].action.kind, nat.rules[0].action.to_addr, nat.rules[0].action.to_port) == (
        "dnat",
        0x7F00000B,
        46635,
    )
    # tables, chains and sets point at their block headers (a policy finding needs a line too)
    assert (filt.origin.source, filt.origin.line) == (path, 9)
    assert filt.sets["allowed"].origin.line == 10
    assert {n: c.origin.line for n, c in filt.chains.items()} == {"input": 19, "user": 34}
    assert (nat.origin.source, nat.origin.line) == (inc, 2)


def test_every_line_points_at_the_rule_it_names(ruleset_dir):
    """The mapped line of each rule holds the first word of its text (no off-by-one anywhere)."""
    path = str(ruleset_dir / "main.nft")
    for table in nft_files.read(path, path):
        for chain in table.chains.values():
            for rule in chain.rules:
                with open(rule.origin.source) as f:
                    line = f.read().split("\n")[rule.origin.line - 1]
                assert rule.text.split()[0] in line


def test_text_input_is_read_and_named_as_given():
    text = "table ip t {\n\tchain c {\n\t\ttype filter hook output priority 0;\n\t\toif lo accept\n\t}\n}\n"
    tables = nft_files.read(text, "-")
    rule = tables[0].chains["c"].rules[0]
    assert (rule.origin.source, rule.origin.line, rule.text) == ("-", 4, "oif lo accept")


def test_syntax_error_is_reported_at_its_line(tmp_path):
    bad = tmp_path / "bad.nft"
    bad.write_text("table ip t {\n\tchain c {\n\t\tip saddr 127.0.0.1 acept\n\t}\n}\n")
    with pytest.raises(InputError) as err:
        nft_files.read(str(bad), str(bad))
    assert (err.value.path, err.value.line) == (str(bad), 3)
    assert "syntax error" in err.value.message


def test_syntax_error_in_standard_input_names_standard_input():
    with pytest.raises(InputError) as err:
        nft_files.read("table ip t {\n\tchain c {\n\t\tbogus\n\t}\n}\n", "-")
    assert (err.value.path, err.value.line) == ("-", 3)


def test_missing_include_is_an_input_error(tmp_path):
    f = tmp_path / "x.nft"
    f.write_text('include "nope.nft"\n')
    with pytest.raises(InputError) as err:
        nft_files.read(str(f), str(f))
    assert err.value.line == 1 and "nope.nft" in err.value.message


def test_2015_nft_list_ruleset_text_reads_without_error(corpus_dir):
    """nftables 1.0.6 still accepts this 2015 `nft list ruleset` text as it is (no rewrite is
    needed: `type nat hook postrouting priority 0;`, `snat A-B`, `dnat A`, the unquoted
    counters and `reject with icmp type net-prohibited` all load)."""
    path = str(corpus_dir / "config_ongy_flat_share__2015_aug_nft-ruleset")
    tables = by_key(nft_files.read(path, path))
    assert set(tables) == {("ip", "nat"), ("ip", "filter")}
    counts = {(t.name, c.name): len(c.rules) for t in tables.values() for c in t.chains.values()}
    assert counts == {
        ("nat", "post"): 1,
        ("nat", "pre"): 2,
        ("filter", "ssh-chain"): 3,
        ("filter", "input"): 1,
        ("filter", "wgpc"): 11,
        ("filter", "wgfilter"): 3,
        ("filter", "forward"): 2,
    }
    lines = [r.origin.line for t in tables.values() for c in t.chains.values() for r in c.rules]
    assert None not in lines and len(set(lines)) == len(lines)
    pre = tables[("ip", "nat")].chains["pre"]
    assert pre.rules[0].origin.line == 10 and pre.rules[0].matches[0].values == ("eth0",)
    assert pre.priority == 0 and pre.type == "nat"


def _strip_origins(tables):
    out = []
    for t in tables:
        chains = {n: [dataclasses.replace(r, origin=None, text="") for r in c.rules] for n, c in t.chains.items()}
        out.append(
            (
                t.family,
                t.name,
                {n: (c.hook, c.priority, c.policy) for n, c in t.chains.items()},
                chains,
                {n: (s.key, s.elements) for n, s in t.sets.items()},
            )
        )
    return out


def test_nft_json_file_gives_the_same_model_as_the_nft_file(ruleset_dir, tmp_path):
    path = str(ruleset_dir / "main.nft")
    argv = [
        "unshare",
        "-n",
        "sh",
        "-c",
        "ip link add eth7 type dummy 2>/dev/null || ip link add eth7 type veth peer name p7;"
        "ip link add wg0 type dummy 2>/dev/null || ip link add wg0 type veth peer name p8;"
        'nft -I "$1" -f "$2" && nft -j list ruleset',
        "sh",
        str(ruleset_dir),
        path,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    json_file = tmp_path / "ruleset.json"
    json_file.write_text(out)
    from_json = nft_tables.parse(json.loads(json_file.read_text()), str(json_file))
    from_nft = nft_files.read(path, path)
    assert _strip_origins(from_json) == _strip_origins(from_nft)
    # JSON files have no lines: rules say their handle, and a text rendered from the JSON
    rule = by_key(from_json)[("inet", "filter")].chains["input"].rules[0]
    assert rule.origin.handle is not None and rule.text == 'iif "lo" accept'


def test_every_nft_example_loads_with_each_rule_on_its_line(examples_dir):
    files = sorted(examples_dir.glob("*.nft"))
    assert files, "rules/examples has nft files"
    for f in files:
        tables = nft_files.read(str(f), str(f))
        source_lines = f.read_text().split("\n")
        rules = [r for t in tables for c in t.chains.values() for r in c.rules]
        assert rules, f
        for r in rules:
            assert r.origin.line is not None, (f, r.text)
            assert r.text.split()[0] in source_lines[r.origin.line - 1], (f, r.origin.line, r.text)


def test_nft_json_of_iptables_nft_tables_keeps_xt_expressions_opaque(tmp_path):
    """`nft -j list ruleset` of iptables-nft tables hides comment and conntrack matches as
    bare `xt` expressions (DOMAIN.md): read as opaque matches, never guessed, never an error."""
    script = (
        "iptables-nft -A INPUT -s 127.0.0.1 -m comment --comment x -m conntrack --ctstate NEW -j ACCEPT"
        " && iptables-nft -A INPUT -i lo -j ACCEPT && nft -j list ruleset"
    )
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, check=True).stdout
    tables = by_key(nft_tables.parse(json.loads(out), "dump.json"))
    rules = tables[("ip", "filter")].chains["INPUT"].rules
    first = rules[0]
    assert (first.matches[0].field, first.matches[0].values) == ("ip.saddr", ((LO, LO),))
    xt = [m for m in first.matches if m.opaque]
    assert [m.text for m in xt] == ["xt match comment", "xt match conntrack"]
    assert first.action.kind == "accept"
    assert rules[1].matches[0].values == ("lo",) and not rules[1].matches[0].opaque

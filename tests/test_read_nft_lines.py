"""Where each rule of an nft file is written (map_rule_lines): the walk over the source that
lets findings say PATH:LINE and the fixer edit the right line. Pure: no kernel (the kernel
tests in tests/kernel/test_nft_file_load.py check the same mapping against libnftables)."""

from __future__ import annotations

from lbfw.read.nft.lines import RuleLine, map_rule_lines, place

MULTI = """#!/usr/sbin/nft -f
flush ruleset
define LO = 127.0.0.1
define PORTS = { 22, 80 }

table inet filter {
	set allowed {
		type ipv4_addr
		flags interval
		elements = {
			127.0.0.1,
			10.0.0.0/8
		}
	}

	# loopback first
	chain input {
		type filter hook input priority filter; policy drop;
		comment "the input chain"

		iif lo accept  # the right way
		ip saddr $LO tcp dport $PORTS accept
		ip saddr {
			127.0.0.1,
			127.0.0.2
		} accept
		ip saddr vmap { 127.0.0.1 : accept, 10.0.0.1 : drop }; ct state established accept
		tcp dport 22 \\
			accept
	}
	chain output { type filter hook output priority 0; policy accept; oif lo accept; }
}
table ip nat {
	chain out {
		type nat hook output priority -100;
		ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:5353
	}
}
add rule inet filter input ip saddr 10.0.0.0/8 drop
insert rule inet filter input iif lo counter
add rule filter forward accept
"""


def texts(lines):
    return [(x.line, x.text) for x in lines]


def test_rules_are_found_in_blocks_across_lines_semicolons_and_continuations():
    got = map_rule_lines(MULTI, "rules.nft", base_dir="/nonexistent")
    assert texts(got[("inet", "filter", "input")]) == [
        (40, "iif lo counter"),
        (21, "iif lo accept"),
        (22, "ip saddr $LO tcp dport $PORTS accept"),
        (23, "ip saddr {\n\t\t\t127.0.0.1,\n\t\t\t127.0.0.2\n\t\t} accept"),
        (27, "ip saddr vmap { 127.0.0.1 : accept, 10.0.0.1 : drop }"),
        (27, "ct state established accept"),
        (28, "tcp dport 22 \\\n\t\t\taccept"),
        (39, "ip saddr 10.0.0.0/8 drop"),
    ]
    assert texts(got[("inet", "filter", "output")]) == [(31, "oif lo accept")]
    assert texts(got[("ip", "nat", "out")]) == [(36, "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:5353")]
    # `add rule` without a family is the ip family
    assert texts(got[("ip", "filter", "forward")]) == [(41, "accept")]
    assert all(x.path == "rules.nft" for v in got.values() for x in v)
    # sets, defines, chain properties and comments are not rules
    assert set(got) == {
        ("inet", "filter", "input"),
        ("inet", "filter", "output"),
        ("ip", "nat", "out"),
        ("ip", "filter", "forward"),
    }


def test_flush_and_delete_forget_what_came_before():
    text = (
        "table ip t {\n chain c {\n  accept\n }\n}\nflush ruleset\n"
        "table ip t {\n chain c {\n  drop\n }\n chain d {\n  accept\n }\n}\ndelete chain ip t d\n"
    )
    got = map_rule_lines(text, "f.nft", base_dir="/nonexistent")
    assert got == {("ip", "t", "c"): [RuleLine("f.nft", 9, "drop")]}


def test_includes_are_followed_relative_to_the_file(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.nft").write_text("table ip t {\n\tchain c {\n\t\tip saddr 127.0.0.1 accept\n\t}\n}\n")
    (tmp_path / "parts" / "b.nft").write_text("add rule ip t c drop\n")
    (tmp_path / "rules.nft").write_text('include "parts/*.nft"\ntable ip t {\n\tchain c {\n\t\taccept\n\t}\n}\n')
    inner = tmp_path / "inner.nft"
    inner.write_text("\t\tiif lo accept\n")
    (tmp_path / "blocks.nft").write_text(f'table ip u {{\n\tchain c {{\n\t\tinclude "{inner}"\n\t\tdrop\n\t}}\n}}\n')
    main = str(tmp_path / "rules.nft")
    got = map_rule_lines((tmp_path / "rules.nft").read_text(), main)
    assert [(x.path, x.line, x.text) for x in got[("ip", "t", "c")]] == [
        (str(tmp_path / "parts" / "a.nft"), 3, "ip saddr 127.0.0.1 accept"),
        (str(tmp_path / "parts" / "b.nft"), 1, "drop"),
        (main, 4, "accept"),
    ]
    got = map_rule_lines((tmp_path / "blocks.nft").read_text(), str(tmp_path / "blocks.nft"))
    assert [(x.path, x.line, x.text) for x in got[("ip", "u", "c")]] == [
        (str(inner), 1, "iif lo accept"),
        (str(tmp_path / "blocks.nft"), 4, "drop"),
    ]


def test_the_2015_nft_list_ruleset_text_is_mapped(corpus_dir):
    path = corpus_dir / "config_ongy_flat_share__2015_aug_nft-ruleset"
    got = map_rule_lines(path.read_text(), str(path))
    assert {k: len(v) for k, v in got.items()} == {
        ("ip", "nat", "post"): 1,
        ("ip", "nat", "pre"): 2,
        ("ip", "filter", "ssh-chain"): 3,
        ("ip", "filter", "input"): 1,
        ("ip", "filter", "wgpc"): 11,
        ("ip", "filter", "wgfilter"): 3,
        ("ip", "filter", "forward"): 2,
    }
    assert got[("ip", "filter", "ssh-chain")][0] == RuleLine(
        str(path), 16, "ip saddr { 10.13.37.0/25, 10.149.107.128} accept"
    )


def test_a_chain_whose_rule_count_differs_gets_no_lines_rather_than_shifted_ones():

    def rule(chain, handle):
        return {"rule": {"family": "ip", "table": "t", "chain": chain, "handle": handle, "expr": []}}

    doc = {"nftables": [rule("c", 4), rule("d", 5), rule("d", 6)]}
    lines = {
        ("ip", "t", "c"): [RuleLine("f", 3, "a"), RuleLine("f", 4, "b")],  # 2 found, 1 loaded
        ("ip", "t", "d"): [RuleLine("f", 7, "x"), RuleLine("f", 8, "y")],
    }
    assert place(doc, lines) == {("ip", "t", "d", 5): RuleLine("f", 7, "x"), ("ip", "t", "d", 6): RuleLine("f", 8, "y")}


def test_a_missing_nft_file_is_an_input_error_not_ruleset_text(tmp_path):
    import pytest

    from lbfw.errors import InputError
    from lbfw.read.nft import files as nft_files

    missing = str(tmp_path / "missing.nft")
    with pytest.raises(InputError) as err:
        nft_files.read(missing, missing)
    assert (err.value.path, err.value.message) == (missing, "no such file")
    with pytest.raises(InputError) as err:
        nft_files.read(str(tmp_path), "dir")
    assert err.value.path == "dir"

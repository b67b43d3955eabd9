"""lbfw's own nft text reader (read/nft/text.py, grammar.py): pure tests, no kernel.

The kernel tests (tests/kernel/test_nft_text_reader.py) prove the reader builds the model the
libnftables path builds; these hold its grammar to the JSON nft 1.0.6 printed for the recorded
spellings (tests/data/nft_*.json), its refusals (Unsupported: libnftables reads the file then),
its errors (PATH:LINE) and its work as files grow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))

import generate_nft  # noqa: E402

from lbfw.errors import InputError  # noqa: E402
from lbfw.read.nft import files, grammar, textvalues  # noqa: E402
from lbfw.read.nft.text import _TOKEN, Unsupported, parse_text  # noqa: E402
from lbfw.read.nft.textvalues import split_colons  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def _rows(name: str) -> list:
    return json.loads((DATA / name).read_text())["rows"]


def _statements(text: str, family: str, sets: dict | None = None) -> list:
    toks = split_colons([t for t in _TOKEN.findall(text) if t[0] != "#"])
    return grammar.RuleGrammar(family, sets or {}).parse(toks)[0]


@pytest.mark.parametrize("data", ["nft_fields.json", "nft_lookups.json"])
def test_recorded_spellings_give_the_json_nft_printed_or_are_left_to_libnftables(data):
    accepted = 0
    for row in _rows(data):
        want = row["json"] if isinstance(row["json"], list) else [{"match": row["json"]}]
        try:
            got = _statements(row["nft"], row.get("family") or "inet")
        except (textvalues.Unsupported, textvalues.Invalid):
            continue
        accepted += 1
        assert got == want, row["nft"]
    # the reader implements a part of the grammar; that part is not empty
    assert accepted >= (50 if data == "nft_fields.json" else 1)


@pytest.mark.parametrize(
    "rule, json_",
    [
        (
            "ct state established,related accept",
            [
                {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
                {"accept": None},
            ],
        ),
        (
            "ip saddr { 10.0.0.1/32 } drop",
            [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.0.0.1"}},
                {"drop": None},
            ],
        ),
        (
            "ip saddr 10.1.2.3/8 accept",
            [
                {
                    "match": {
                        "op": "==",
                        "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                        "right": {"prefix": {"addr": "10.0.0.0", "len": 8}},
                    }
                },
                {"accept": None},
            ],
        ),
        (
            "tcp dport { 443, 22, 80 } accept",
            [
                {
                    "match": {
                        "op": "==",
                        "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                        "right": {"set": [22, 80, 443]},
                    }
                },
                {"accept": None},
            ],
        ),
        (
            "numgen random mod 2 vmap { 0 : goto a, 1 : goto b }",
            [
                {
                    "vmap": {
                        "key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}},
                        "data": {"set": [[0, {"goto": {"target": "a"}}], [1, {"goto": {"target": "b"}}]]},
                    }
                }
            ],
        ),
        (
            "meta l4proto tcp dnat to 10.244.0.2:8306",
            [
                {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
                {"dnat": {"addr": "10.244.0.2", "port": 8306}},
            ],
        ),
        (
            "mark and 0x00004000 == 0 return",
            [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]}, "right": 0}}, {"return": None}],
        ),
        ("masquerade fully-random", [{"masquerade": {"flags": "fully-random"}}]),
        ("reject", [{"reject": {"type": "icmp", "expr": "port-unreachable"}}]),
    ],
)
def test_spellings_measured_on_nft_1_0_6(rule, json_):
    """Pairs seen with `nft -j list ruleset` after `nft -f` (kube-proxy's and the examples')."""
    assert _statements(rule, "ip") == json_


@pytest.mark.parametrize(
    "rule",
    [
        "meta nfproto ipv4 ip saddr 127.0.0.1 accept",  # nft lists it without the nfproto match
        "meta l4proto tcp tcp dport 22 accept",
        "meta mark set meta mark & 0xff00 | 0x1",  # nft folds the two operations
        "limit rate 5/second accept",
        "ip saddr 127.0.0.1 counter name foo",
        "tcp flags syn accept",
        'iifname "eth*" accept',
    ],
)
def test_what_the_reader_does_not_implement_is_left_to_libnftables(rule):
    with pytest.raises(textvalues.Unsupported):
        _statements(rule, "inet")


def _ruleset(body: str, family: str = "inet") -> str:
    return (
        f"table {family} t {{\n\tset s {{\n\t\ttype ipv4_addr\n\t}}\n\tchain c {{\n\t\ttype filter hook input "
        f"priority 0; policy drop;\n{body}\n\t}}\n\tchain other {{\n\t\treturn\n\t}}\n}}\n"
    )


@pytest.mark.parametrize(
    "body, message",
    [
        ("\t\tip saddr 10.0.0.256 accept", "invalid IPv4 address"),
        ("\t\tip saddr 10.0.0.0/33 accept", "prefix length"),
        ("\t\tip6 saddr ::1::2 accept", "invalid IPv6 address"),
        ("\t\ttcp dport 70000 accept", "out of range"),
        ("\t\ttcp dport 30-20 accept", "negative"),
        ("\t\tjump nowhere", "nowhere"),
        ("\t\tip saddr @missing drop", "unknown set"),
        ("\t\tip daddr vmap @s", "not a verdict map"),
    ],
)
def test_values_nft_refuses_are_errors_at_their_line(tmp_path, body, message):
    path = tmp_path / "bad.nft"
    path.write_text(_ruleset("\t\tiif lo accept\n" + body))
    with pytest.raises(InputError) as err:
        files.read(str(path), str(path), parser="lbfw")
    assert err.value.line == 8 and message in err.value.message, err.value.message


def test_an_unclosed_block_is_an_error():
    with pytest.raises(InputError):
        parse_text("table ip t {\n\tchain c {\n\t\taccept\n", "x.nft")


def test_structure_defines_includes_and_origins(tmp_path):
    (tmp_path / "inc.nft").write_text("define LOOP = 127.0.0.1\n")
    main = tmp_path / "main.nft"
    main.write_text(
        'include "inc.nft"\nflush ruleset\n# lbfw: ignore LB002\ntable inet f {\n\tchain input {\n'
        "\t\ttype filter hook input priority filter; policy drop;\n"
        "\t\tip saddr $LOOP accept # the agent\n\t\tct state established,related accept; tcp dport 22 accept\n"
        "\t}\n}\n"
    )
    tables = files.read(str(main), str(main), parser="lbfw")
    chain = tables[0].chains["input"]
    assert (chain.hook, chain.priority, chain.policy) == ("input", 0, "drop")
    assert [(r.origin.line, r.text) for r in chain.rules] == [
        (7, "ip saddr $LOOP accept"),
        (8, "ct state established,related accept"),
        (8, "tcp dport 22 accept"),
    ]
    assert chain.rules[0].matches[-1].values == ((0x7F000001, 0x7F000001),)


def test_auto_reads_big_files_itself_and_says_so(tmp_path):
    text = generate_nft.kube_nft(1000)
    assert len(text) >= files.TEXT_PARSE_MIN_BYTES  # the bench's smallest kube-proxy input crosses it
    path = tmp_path / "k.nft"
    path.write_text(text)
    warnings: list = []
    tables = files.read(str(path), str(path), warnings=warnings)
    assert sum(c.rule_count for t in tables for c in t.chains.values()) == generate_nft.nft_rule_count(text)
    assert len(warnings) == 1 and "lbfw's own nft reader" in warnings[0] and "nft -c -f" in warnings[0]


def test_a_big_file_with_grammar_the_reader_lacks_raises_unsupported_when_forced(tmp_path):
    path = tmp_path / "limit.nft"
    path.write_text(_ruleset("\t\tlimit rate 5/second accept"))
    with pytest.raises(Unsupported):
        files.read(str(path), str(path), parser="lbfw")


# --------------------------------------------------------------------------- work, counted


def _count_rule_parses(monkeypatch) -> list:
    calls = [0]
    real = grammar.RuleGrammar.parse

    def counting(self, toks):
        calls[0] += 1
        return real(self, toks)

    monkeypatch.setattr(grammar.RuleGrammar, "parse", counting)
    return calls


def test_each_rule_is_parsed_once_whatever_the_size(monkeypatch):
    """One grammar parse per rule (a rule naming a set is parsed early, to learn the set's
    field, and that parse is kept), and the elements of every map parsed once, at 250 and 2000
    services alike."""
    calls = _count_rule_parses(monkeypatch)
    for services in (250, 2000):
        calls[0] = 0
        text = generate_nft.kube_nft(services)
        parsed = parse_text(text, "k.nft")
        rules = sum(c.rule_count for t in parsed.tables for c in t.chains.values())
        assert rules == generate_nft.nft_rule_count(text)
        assert calls[0] == rules


def test_a_million_element_set_is_read_without_a_parse_per_element(monkeypatch):
    """The elements of a plain ban list go through one value check each, no rule grammar."""
    calls = _count_rule_parses(monkeypatch)
    text = generate_nft.nft_ban_sets(20_000)
    parsed = parse_text(text, "b.nft")
    table = parsed.tables[0]
    assert len(table.sets["crowdsec-blacklists"].elements) == 20_000
    assert calls[0] == sum(c.rule_count for c in table.chains.values())


def test_a_bad_value_in_a_big_file_is_path_line_and_exit_2(tmp_path):
    """No kernel load and still nft's verdict on a value: `PATH:LINE: ...`, exit 2."""
    import subprocess

    text = generate_nft.kube_nft(1000)
    bad = "table inet typo {\n\tchain c {\n\t\tip saddr 10.0.0.999 accept\n\t}\n}\n"
    path = tmp_path / "big.nft"
    path.write_text(text + bad)
    line = text.count("\n") + 3
    proc = subprocess.run(
        [sys.executable, "-m", "lbfw", "audit", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert f"{path}:{line}: invalid IPv4 address '10.0.0.999'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_element_is_an_error_at_its_sets_line(tmp_path):
    path = tmp_path / "set.nft"
    path.write_text(
        "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1, 10.0.0.300 }\n\t}\n}\n"
        "add element ip t s { 10.0.0.2 }\n"
    )
    with pytest.raises(InputError) as err:
        files.read(str(path), str(path), parser="lbfw")
    assert (err.value.line, err.value.path) == (2, str(path)) and "10.0.0.300" in err.value.message


def test_commands_outside_blocks_need_their_table(tmp_path):
    path = tmp_path / "cmd.nft"
    path.write_text("add rule inet nowhere input accept\n")
    with pytest.raises(InputError) as err:
        files.read(str(path), str(path), parser="lbfw")
    assert err.value.line == 1 and "nowhere" in err.value.message


# what nf_tables refuses when it commits the ruleset (tests/kernel/test_nft_text_reader.py loads them)
KERNEL_REFUSES = [
    # NAT outside a nat chain: the kernel says "Operation not supported"
    "\tchain c {\n\t\ttype filter hook input priority 0;\n\t\tmeta l4proto tcp redirect to :8080\n\t}\n",
    # dnat reached from postrouting
    "\tchain c {\n\t\ttype nat hook postrouting priority 100;\n\t\tjump d\n\t}\n"
    "\tchain d {\n\t\tmeta l4proto tcp dnat to 10.0.0.1\n\t}\n",
    # a jump loop: "Too many links"
    "\tchain c {\n\t\ttype filter hook input priority 0;\n\t\tjump d\n\t}\n\tchain d {\n\t\tjump c\n\t}\n",
    # reject on postrouting
    "\tchain c {\n\t\ttype filter hook postrouting priority 0;\n\t\treject\n\t}\n",
]


@pytest.mark.parametrize("chains", KERNEL_REFUSES)
def test_what_the_kernel_refuses_on_commit_is_left_to_it(tmp_path, chains):
    path = tmp_path / "refused.nft"
    path.write_text(f"table ip t {{\n{chains}}}\n")
    with pytest.raises(Unsupported):
        files.read(str(path), str(path), parser="lbfw")


def test_jumps_deeper_than_the_kernels_stack_are_left_to_it(tmp_path):
    """nf_tables refuses a path of more than 16 chains (its jump stack): lbfw's reader does not
    claim such a file is fine (measured on 6.18: 15 jumps below the base chain load, 16 do not)."""

    def ruleset(depth: int) -> str:
        chains = "".join(f"\tchain c{i} {{\n\t\tjump c{i + 1}\n\t}}\n" for i in range(1, depth))
        return (
            f"table ip t {{\n\tchain c0 {{\n\t\ttype filter hook input priority 0;\n\t\tjump c1\n\t}}\n{chains}"
            f"\tchain c{depth} {{\n\t\taccept\n\t}}\n}}\n"
        )

    path = tmp_path / "deep.nft"
    path.write_text(ruleset(15))
    files.read(str(path), str(path), parser="lbfw")
    path.write_text(ruleset(16))
    with pytest.raises(Unsupported):
        files.read(str(path), str(path), parser="lbfw")

"""The iptables-save reader defers rule lines it has proven well-formed (issue 6).

A line of ``_SIMPLE_RULE``'s shape is checked when read and built when its chain's ``rules``
is first read. These tests hold the reader to its promise: the model is equal to building
every rule at once (including origins, ignores, comments and live indexes), every error is
raised when the file is read, the shape admits nothing the full parser rejects, and an audit
of a kube-proxy dump builds only the chains loopback flows reach.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from lbfw.errors import InputError
from lbfw.model import LazyRules
from lbfw.read.iptables import parse
from lbfw.read.iptables.deferred import _SIMPLE_RULE

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))

import generate  # noqa: E402


def _texts(corpus_dir: Path, examples_dir: Path) -> list:
    out = [
        (p.name, p.read_text(errors="replace"))
        for p in sorted(corpus_dir.iterdir())
        if p.is_file() and p.name != "README.md"
    ]
    out += [(p.name, p.read_text()) for p in sorted(examples_dir.iterdir()) if p.is_file()]
    out += [("kube-3k", generate.kube_dump(3_000)), ("filter-2k", generate.filter_dump(2_000, services=30))]
    return out


def _read_both(text: str, backend: str = "file"):
    """(eager tables, lazy tables), or (error text, error text) when the eager reader refuses."""
    try:
        eager = parse(text, "rules.txt", backend=backend, lazy=False)
    except InputError as err:
        with pytest.raises(InputError) as lazy_err:
            parse(text, "rules.txt", backend=backend, lazy=True)
        return str(err), str(lazy_err.value)
    return eager, parse(text, "rules.txt", backend=backend, lazy=True)


def _unbuilt(chain) -> int:
    return chain.rules.unbuilt_count() if isinstance(chain.rules, LazyRules) else 0


def _deferred(tables) -> int:
    return sum(_unbuilt(c) for t in tables for c in t.chains.values())


@pytest.mark.parametrize("backend", ["file", "legacy"])
def test_deferred_reading_gives_the_model_of_reading_at_once(corpus_dir, examples_dir, backend):
    deferred = 0
    compared = 0
    for name, text in _texts(corpus_dir, examples_dir):
        if "*filter" not in text and "*nat" not in text and "*raw" not in text and "*mangle" not in text:
            continue  # nft rulesets
        eager, lazy = _read_both(text, backend)
        if isinstance(eager, str):
            assert eager == lazy, name
            continue
        deferred += _deferred(lazy)
        assert len(eager) == len(lazy), name
        for a, b in zip(eager, lazy):
            assert list(a.chains) == list(b.chains), name
            for chain_name in a.chains:
                ca, cb = a.chains[chain_name], b.chains[chain_name]
                assert cb.rule_count == len(ca.rules), (name, chain_name)
                # field by field, so a difference names itself (Rule equality covers all fields)
                for ra, rb in zip(ca.rules, cb.rules):
                    assert (ra.matches, ra.action, ra.text, ra.origin, ra.comment, ra.ignore, ra.before) == (
                        rb.matches,
                        rb.action,
                        rb.text,
                        rb.origin,
                        rb.comment,
                        rb.ignore,
                        rb.before,
                    ), (name, ra.origin)
                assert ca == cb, (name, chain_name)
            assert a == b, name
            compared += 1
    # the check is not vacuous: most lines of these inputs were deferred, and got built
    assert compared > 20 and deferred > 3_000


def _random_simple_line(rng: random.Random, chains: list) -> str:
    def octet():
        return str(rng.choice([0, 1, 9, 10, 99, 100, 127, 199, 200, 249, 250, 255, rng.randrange(256)]))

    def addr(prefix_ok=True):
        text = ".".join(octet() for _ in range(4))
        if prefix_ok and rng.random() < 0.7:
            text += f"/{rng.choice([0, 1, 8, 9, 16, 19, 24, 29, 30, 31, 32])}"
        return text

    def port():
        return str(
            rng.choice(
                [
                    0,
                    1,
                    9,
                    10,
                    99,
                    999,
                    1000,
                    9999,
                    10000,
                    59999,
                    60000,
                    64999,
                    65000,
                    65499,
                    65500,
                    65529,
                    65530,
                    65535,
                    rng.randrange(65536),
                ]
            )
        )

    parts = []
    if rng.random() < 0.5:
        parts.append(("! " if rng.random() < 0.3 else "") + "-s " + addr())
    if rng.random() < 0.5:
        parts.append(("! " if rng.random() < 0.3 else "") + "-d " + addr())
    proto = rng.choice([None, "tcp", "udp", "sctp"])
    if proto:
        parts.append(f"-p {proto}")
    if rng.random() < 0.6:
        parts.append(
            '-m comment --comment "'
            + rng.choice(
                ["ns/svc:http", "a -j DROP b", "", "x ! -s 1.2.3.4", "lbfw: ignore LB002", "port 22 -> 10.0.0.1:80"]
            )
            + '"'
        )
    if proto and rng.random() < 0.7:
        parts.append(f"-m {proto}")
        if rng.random() < 0.7:
            parts.append(("! " if rng.random() < 0.2 else "") + f"--dport {port()}")
    if rng.random() < 0.3:
        parts.append(
            "-m statistic --mode random --probability "
            + rng.choice(["0.5", "0.33333333349", "0.0", "1.0", "0.99999999999", "1.00000000000"])
        )
    target = rng.choice(["DNAT", "REJECT", "ACCEPT", "DROP", "RETURN", "MASQUERADE"] + chains)
    if target == "DNAT":
        parts.append(f"-j DNAT --to-destination {addr(False)}:{port()}")
    elif target == "REJECT":
        parts.append("-j REJECT --reject-with icmp-port-unreachable")
    else:
        parts.append(f"-j {target}")
    return " ".join(parts)


def test_every_line_of_the_deferred_shape_reads_as_the_full_parser_reads_it():
    """Random lines of _SIMPLE_RULE's shape, edge values included (octets 0..255, prefixes
    /0../32, ports 0..65535 and their digit boundaries): each matches the shape, the full
    parser accepts it, and deferred reading gives the same rules."""
    rng = random.Random(6)
    chains = ["KUBE-SEP-ABC", "KUBE-MARK-MASQ", "user.chain_1"]
    for _ in range(40):
        lines = [_random_simple_line(rng, chains) for _ in range(50)]
        for line in lines:
            assert _SIMPLE_RULE.fullmatch(" " + line), line
        for table, chain in (("nat", "OUTPUT"), ("filter", "INPUT")):
            text = "\n".join(
                [f"*{table}", f":{chain} ACCEPT [0:0]"]
                + [f":{c} - [0:0]" for c in chains]
                + [f"-A {chain} {line}" for line in lines]
                + ["COMMIT", ""]
            )
            eager, lazy = _read_both(text)
            assert not isinstance(eager, str), eager
            assert _deferred(lazy) == len(lines)
            assert eager == lazy


@pytest.mark.parametrize(
    "line, message",
    [
        ("-A INPUT -s 10.0.0.256/32 -j ACCEPT", "not an IPv4 address"),
        ("-A INPUT -s 10.0.0.1/33 -j ACCEPT", "not an IPv4 address"),
        ("-A INPUT -p tcp -m tcp --dport 65536 -j ACCEPT", "bad port"),
        ("-A INPUT -p tcp -m tcp --dport 1000:99 -j ACCEPT", "min > max"),
        ("-A INPUT -p tcp -m tcp --dport -j ACCEPT", "needs an argument"),
        ("-A INPUT -p tcp -m tcp --dport 7 -j KUBE-NOWHERE", None),
        ("-A INPUT -p tcp -m tcp --dport 22 -j DNAT --to-destination 10.0.0.1:65536", "port 65536 is not valid"),
        ("-A INPUT -s 10.0.0.1 -j ACCEPT --bogus", "takes no options"),
        ("-A NOCHAIN -s 10.0.0.1/32 -j ACCEPT", "never declared"),  # of the shape, but no such chain
    ],
)
def test_lines_just_outside_the_shape_are_read_at_once_with_their_errors(line, message):
    text = f"*filter\n:INPUT DROP [0:0]\n:SEP - [0:0]\n-A SEP -s 10.0.0.9/32 -j ACCEPT\n{line}\nCOMMIT\n"
    if "NOCHAIN" not in line:
        assert _SIMPLE_RULE.fullmatch(line, line.find(" ", 3)) is None or message is None
    if message is None:
        # no chain of that name and no known target: not deferred, read as an unknown target
        tables = parse(text, "rules.txt")
        rule = tables[0].chains["INPUT"].rules[-1]
        assert rule.action.kind == "unknown" and rule.action.target == "KUBE-NOWHERE"
        return
    with pytest.raises(InputError) as err:
        parse(text, "rules.txt")
    assert "rules.txt:5:" in str(err.value) and message in str(err.value)


def test_a_chain_declared_after_a_deferred_line_named_its_target_reads_as_written():
    """`-j MASQUERADE` before `-N MASQUERADE` is the target; after it, a jump. Declaring the
    chain builds the deferred lines first, so each reads as it did when written."""
    text = (
        "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE\n"
        "-N MASQUERADE\n-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE\nCOMMIT\n"
    )
    eager, lazy = _read_both(text)
    assert eager == lazy
    kinds = [r.action.kind for r in lazy[0].chains["POSTROUTING"].rules]
    assert kinds == ["masquerade", "jump"]


def test_deleting_a_chain_after_deferred_jumps_to_it_keeps_what_was_read():
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FOO - [0:0]\n-A INPUT -s 10.0.0.1/32 -j FOO\n-X FOO\n"
        "-A INPUT -s 10.0.0.2/32 -j ACCEPT\nCOMMIT\n"
    )
    eager, lazy = _read_both(text)
    assert eager == lazy
    assert [r.action.kind for r in lazy[0].chains["INPUT"].rules] == ["jump", "accept"]


def test_live_indexes_count_deferred_and_built_rules_alike():
    """Live rules carry their 1-based index (`iptables -R CHAIN N`): a rule built at once
    between deferred ones, and an `-I` that renumbers the chain, keep the kernel's count."""
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.1/32 -j ACCEPT\n"
        "-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\n-A INPUT -s 10.0.0.3/32 -j DROP\n"
        "-I INPUT 2 -s 10.0.0.2/32 -j ACCEPT\n-A INPUT -s 10.0.0.4/32 -j DROP\nCOMMIT\n"
    )
    eager, lazy = _read_both(text, backend="legacy")
    assert eager == lazy
    assert [r.origin.index for r in lazy[0].chains["INPUT"].rules] == [1, 2, 3, 4, 5]


def test_an_audit_of_a_kube_proxy_dump_builds_only_what_loopback_flows_reach(tmp_path):
    """The point of deferring (issue 6): the engine, the flow picker and the checks of an
    audit leave the per-endpoint chains unbuilt, and the findings are those of building
    everything."""
    from lbfw.analyze.engine import Engine
    from lbfw.analyze.flows import default_flows
    from lbfw.checks import run_checks
    from lbfw.read import read_sources

    path = tmp_path / "kube.rules"
    path.write_text(generate.kube_dump(6_000))

    def audit(lazy: bool):
        if not lazy:
            import lbfw.read.iptables as reader

            original = reader.parse
            reader.parse = lambda *a, **k: original(*a, **{**k, "lazy": False})
            try:
                ruleset = read_sources([str(path)])
            finally:
                reader.parse = original
        else:
            ruleset = read_sources([str(path)])
        engine = Engine(ruleset)
        flows = default_flows(ruleset)
        results = [engine.evaluate(f) for f in flows]
        findings = run_checks(ruleset, engine=engine, results=results)
        return ruleset, flows, results, findings

    ruleset, flows, results, findings = audit(lazy=True)
    total = ruleset.rule_count()
    unbuilt = _deferred(ruleset.tables)
    assert total > 5_000
    assert unbuilt > 0.8 * total, f"only {unbuilt} of {total} rules left unbuilt"
    _, flows_e, results_e, findings_e = audit(lazy=False)
    assert flows == flows_e
    assert [(r.flow, r.verdict) for r in results] == [(r.flow, r.verdict) for r in results_e]
    assert findings and [(f.check, f.message, f.line) for f in findings] == [
        (f.check, f.message, f.line) for f in findings_e
    ]


def test_engine_index_keys_read_from_unbuilt_lines_are_those_of_the_built_rules(corpus_dir, examples_dir):
    """The engine indexes a big chain's unbuilt lines by their text (`-d 10.96.0.1/32`,
    `--dport 53`) and builds only those a packet reaches: the keys must be the built rule's,
    in the same order (the index picks the first of equally long runs)."""
    from lbfw.analyze.compile import _exact_keys

    rng = random.Random(7)
    fuzz = "\n".join(
        ["*nat", ":OUTPUT ACCEPT [0:0]", ":KUBE-SEP-ABC - [0:0]"]
        + [f"-A OUTPUT {_random_simple_line(rng, ['KUBE-SEP-ABC'])}" for _ in range(2_000)]
        + ["COMMIT", ""]
    )
    checked = with_keys = 0
    for name, text in _texts(corpus_dir, examples_dir) + [("fuzz", fuzz)]:
        if "*filter" not in text and "*nat" not in text:
            continue
        try:
            tables = parse(text, "rules.txt")
        except InputError:
            continue
        for table in tables:
            for chain in table.chains.values():
                rules = chain.rules
                if not isinstance(rules, LazyRules):
                    continue
                for position in range(len(rules)):
                    if rules.built_at(position) is not None:
                        continue
                    from_text = rules.index_keys(position)
                    rule = rules[position]
                    assert rules[position] is rule and rules.built_at(position) is rule
                    assert list(from_text.items()) == list(_exact_keys(rule).items()), (name, rule.text)
                    checked += 1
                    with_keys += bool(from_text)
                assert rules.unbuilt_count() == 0 and all(r.__class__ is not tuple for r in rules)
    assert checked > 3_000 and with_keys > 1_000


def test_the_default_flows_are_those_of_the_fully_built_ruleset(corpus_dir, examples_dir):
    """The flow picker skips unbuilt chains that name no port a loopback packet can meet
    (``LazyRules.may_name_loopback_port``): on every input, the flows are those of reading everything at once."""
    from lbfw.analyze.flows import default_flows
    from lbfw.model import Ruleset

    compared = 0
    for name, text in _texts(corpus_dir, examples_dir):
        if "*filter" not in text and "*nat" not in text:
            continue
        eager, lazy = _read_both(text)
        if isinstance(eager, str):
            continue
        assert default_flows(Ruleset(tables=lazy)) == default_flows(Ruleset(tables=eager)), name
        compared += 1
    assert compared > 20


def _kube6(text: str) -> str:
    """An ip6tables-save dump of the kube-proxy shape, from the IPv4 generator's text: every
    address becomes one in fd00::/64 (127.0.0.1 becomes ::1), prefixes grow by 96, DNAT
    targets are bracketed, ICMP matches and rejects become ICMPv6 ones. ip6tables-restore
    loads it (tests/kernel/test_read_iptables_kernel.py)."""
    import re

    def v6(a, b, c, d):
        if (a, b, c, d) == ("127", "0", "0", "1"):
            return "::1"
        return "fd00::" + ":".join(f"{int(x):x}" for x in (a, b, c, d))

    text = re.sub(
        r"--to-destination (\d+)\.(\d+)\.(\d+)\.(\d+):(\d+)",
        lambda m: f"--to-destination [{v6(*m.groups()[:4])}]:{m.group(5)}",
        text,
    )
    text = re.sub(
        r"(?<![\d.])(\d+)\.(\d+)\.(\d+)\.(\d+)(?:/(\d+))?(?![\d.])",
        lambda m: v6(*m.groups()[:4]) + (f"/{int(m.group(5)) + 96}" if m.group(5) else ""),
        text,
    )
    text = re.sub(r"-p icmp -m icmp --icmp-type (\S+)", r"-p ipv6-icmp -m icmp6 --icmpv6-type \1", text)
    text = text.replace("# Generated by iptables-save", "# Generated by ip6tables-save")
    return text.replace("icmp-port-unreachable", "icmp6-port-unreachable")


def test_ip6tables_dumps_are_deferred_too_with_the_same_model_and_keys():
    from lbfw.analyze.compile import _exact_keys

    text = _kube6(generate.kube_dump(3_000))
    assert "[fd00::a:f4:" in text and "/112" in text
    eager = parse(text, "kube6.rules", family="ip6", lazy=False)
    lazy = parse(text, "kube6.rules", family="ip6", lazy=True)
    deferred = _deferred(lazy)
    assert deferred > 2_000
    keyed = 0
    for table in lazy:
        for chain in table.chains.values():
            rules = chain.rules
            if not isinstance(rules, LazyRules):
                continue
            for position in range(len(rules)):
                if rules.built_at(position) is None:
                    keys = rules.index_keys(position)
                    assert list(keys.items()) == list(_exact_keys(rules[position]).items()), rules[position].text
                    keyed += bool(keys)
    assert keyed > 1_000
    assert eager == lazy


def test_ip6_lines_of_the_shape_with_addresses_ip6tables_refuses_are_read_at_once():
    """The IPv6 shape's addresses are checked with the parser's own reading (_ip6) before a
    line is deferred: one it cannot read is read at once and refused with its line."""
    rng = random.Random(8)
    good = ["::1", "fd00::1", "fd00::a:f4:0:2", "2001:db8::", "::", "::ffff:10.0.0.1", "fe80::1:2:3:4"]
    bad = ["1::2::3", "12345::1", "fd00:::1", "fd00::g", ":1", "1.2.3.4", "fd00::1.2.3"]
    for _ in range(300):
        address = rng.choice(good + bad)
        prefix = rng.choice(["", "/128", "/64", "/0", "/112"])
        where = rng.choice(["-s", "-d", "dnat"])
        if where == "dnat":
            line = f"-A OUTPUT -p tcp -m tcp --dport 80 -j DNAT --to-destination [{address}]:8080"
        else:
            line = f"-A OUTPUT {where} {address}{prefix} -p tcp -m tcp --dport 80 -j ACCEPT"
        text = f"*nat\n:OUTPUT ACCEPT [0:0]\n{line}\nCOMMIT\n"
        try:
            eager = parse(text, "r6.rules", family="ip6", lazy=False)
        except InputError as err:
            assert address in bad, (line, err)
            with pytest.raises(InputError) as lazy_err:
                parse(text, "r6.rules", family="ip6", lazy=True)
            assert str(lazy_err.value) == str(err) and "r6.rules:3:" in str(err)
            continue
        lazy = parse(text, "r6.rules", family="ip6", lazy=True)
        assert _deferred(lazy) == (1 if address in good else 0), line
        assert eager == lazy

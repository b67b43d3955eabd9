"""lbfw's own nft reader (read/nft/text.py) against libnftables: the same model, the same audit.

Every nft file in rules/examples and ../shared/corpus, the recorded spellings of
tests/data/nft_*.json (the rows the reader implements, as one ruleset per family), the files
of tests/test_nft_file_load.py's shapes and the bench generators at small sizes are read twice:
``files.read(parser="kernel")`` (loaded with `nft -f` into a throwaway namespace and listed back
as JSON, the reference) and ``parser="lbfw"`` (no kernel). The audits (findings, every flow's
verdict and path), the rules' origins and texts and the model itself must be identical.

One difference is explained and normalised: the elements of a named verdict map come back from
the kernel in its hash order, not in the file's; both are the same exact keys, and the engine
indexes them (analyze/vmaps), so only the order of ``Action.vmap`` differs.
Found on the way, not normalised: at 100,000 elements (nft-ban-100k) `nft -j list ruleset`
listed some elements of the timeout set twice and left others out; the file's text is the truth
there, and the sizes here stay far below it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import generate_nft  # noqa: E402

from lbfw.errors import InputError  # noqa: E402
from lbfw.model import Ruleset, SourceInfo  # noqa: E402
from lbfw.pipeline import audit_ruleset  # noqa: E402
from lbfw.read.detect import detect_format  # noqa: E402
from lbfw.read.nft import files, grammar, textvalues  # noqa: E402
from lbfw.read.nft.text import _TOKEN, Unsupported  # noqa: E402
from lbfw.read.nft.textvalues import split_colons  # noqa: E402
from lbfw.render.json import render_audit, render_flows  # noqa: E402
from test_read_nft_text import KERNEL_REFUSES  # noqa: E402

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"


def _nft_samples() -> list:
    found = sorted((ROOT / "rules" / "examples").glob("*.nft"))
    if CORPUS.is_dir():
        for path in sorted(CORPUS.iterdir()):
            try:
                if path.is_file() and detect_format(path.read_text(errors="replace")) == "nft":
                    found.append(path)
            except InputError:
                continue
    return found


def _spelling_rulesets() -> dict:
    """The recorded spellings the reader implements, one input chain per family."""
    rules: dict = {}
    for name in ("nft_fields.json", "nft_lookups.json"):
        for row in json.loads((ROOT / "tests" / "data" / name).read_text())["rows"]:
            family = row.get("family") or "inet"
            toks = split_colons([t for t in _TOKEN.findall(row["nft"]) if t[0] != "#"])
            try:
                grammar.RuleGrammar(family, {}).parse(toks)
            except (textvalues.Unsupported, textvalues.Invalid):
                continue
            rules.setdefault(family, []).append(row["nft"])
    return {
        f"spellings-{family}.nft": f"table {family} spellings {{\n\tchain input {{\n"
        f"\t\ttype filter hook input priority 0; policy drop;\n"
        + "".join(f"\t\t{r}\n" for r in found)
        + "\t\tiif lo accept\n\t}\n}\n"
        for family, found in rules.items()
    }


# the command form of nft -f files (scripts, fail2ban-style element additions)
COMMANDS = """flush ruleset
add table inet filter
add chain inet filter input { type filter hook input priority 0; policy drop; }
add chain inet filter f2b
add set inet filter banned { type ipv4_addr; flags interval; }
add element inet filter banned { 192.0.2.0/24, 198.51.100.7 }
add element inet filter banned { 203.0.113.9 }
add rule inet filter input ct state established,related accept
add rule inet filter input ip saddr @banned drop
insert rule inet filter input iif lo accept
add rule inet filter input tcp dport { 22, 2222 } jump f2b
add rule inet filter f2b ip saddr 127.0.0.1 return
table inet filter {
\tchain output {
\t\ttype filter hook output priority 0; policy accept;
\t\tip daddr @banned reject
\t}
}
"""


# spellings nft normalises when it lists them (prefix host bits, /32 sets, names, a-a ranges)
NORMALISED = """define PORTS = { 22, 80 }
table ip t {
\tchain c {
\t\ttype filter hook input priority 0; policy drop;
\t\tip saddr 10.1.2.3/8 accept
\t\tip saddr { 10.0.0.1/32 } drop
\t\ttcp dport $PORTS accept
\t\tip daddr 127.0.0.1-127.0.0.1 accept
\t\ttcp dport 80-80 accept
\t\tmeta l4proto 6 accept
\t\tip protocol 200 accept
\t\tct state { established, related } accept
\t\tmark set 0x10
\t\treject with tcp reset
\t\ttcp dport ssh accept
\t\tip saddr 127.0.0.1 counter packets 3 bytes 4 log prefix "x " accept comment "c"
\t}
\tchain out {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr 127.0.0.53 meta l4proto tcp redirect to :8080
\t}
}
"""


def _generated() -> dict:
    return {
        "commands.nft": COMMANDS,
        "normalised.nft": NORMALISED,
        "kube-nft-20.nft": generate_nft.kube_nft(20),
        "kube-nft-150.nft": generate_nft.kube_nft(150),
        "nft-ban-300.nft": generate_nft.nft_ban_sets(300),
        **_spelling_rulesets(),
    }


def _canonical_model(tables: list) -> list:
    out = []
    for t in tables:
        out.append(("table", t.family, t.name, t.backend, t.syntax, t.origin))
        for name, s in sorted(t.sets.items()):
            out.append(
                ("set", name, s.key, sorted(map(repr, s.elements)), s.flags, s.is_map, s.map_type, s.known, s.origin)
            )
        for c in t.chains.values():
            out.append(("chain", c.name, c.hook, c.priority, c.type, c.policy, c.origin, c.policy_ignore))
            for r in c.rules:
                action = r.action
                if action.set_name:  # a named map's elements: the kernel lists them in hash order
                    action = dataclasses.replace(action, vmap=tuple(sorted(action.vmap, key=repr)))
                out.append(("rule", r.matches, action, r.text, r.origin, r.comment, r.ignore, r.before))
    return out


def _audit(path: Path, parser: str) -> tuple:
    tables = files.read(str(path), str(path), parser=parser)
    ruleset = Ruleset(tables=tables)
    ruleset.sources = [
        SourceInfo(
            source=str(path),
            format="nft",
            tables=len(tables),
            chains=sum(len(t.chains) for t in tables),
            rules=sum(c.rule_count for t in tables for c in t.chains.values()),
        )
    ]
    findings, results = audit_ruleset(ruleset)
    origins = [(r.origin, r.text) for t in tables for c in t.chains.values() for r in c.rules]
    return (
        render_audit(findings, results, ruleset.sources),
        render_flows(results, explain=True),
        origins,
        _canonical_model(tables),
    )


def _compare(path: Path) -> None:
    try:
        mine = _audit(path, "lbfw")
    except Unsupported as why:
        pytest.skip(f"lbfw's reader leaves this file to libnftables: {why}")
    reference = _audit(path, "kernel")
    assert mine[0] == reference[0], "audit JSON differs"
    assert mine[1] == reference[1], "flow verdicts or paths differ"
    assert mine[2] == reference[2], "rule origins or texts differ"
    assert mine[3] == reference[3], "model differs"


@pytest.mark.parametrize("path", _nft_samples(), ids=lambda p: p.name)
def test_samples_give_the_same_audit_through_both_readers(path):
    _compare(path)


@pytest.mark.parametrize("name", sorted(_generated()))
def test_generated_rulesets_give_the_same_audit_through_both_readers(tmp_path, name):
    path = tmp_path / name
    path.write_text(_generated()[name])
    _compare(path)


def test_every_example_is_read_by_lbfws_reader():
    """The examples are the shapes users write: none of them may fall back silently."""
    for path in sorted((ROOT / "rules" / "examples").glob("*.nft")):
        files.read(str(path), str(path), parser="lbfw")


@pytest.mark.parametrize(
    "rule",
    [
        "ip saddr 10.0.0.256 accept",
        "ip saddr 10.0.0.0/33 accept",
        "tcp dport 70000 accept",
        "tcp dport 30-20 accept",
        "jump nowhere",
        "ip saddr @missing drop",
    ],
)
def test_what_lbfws_reader_refuses_nft_refuses_too(tmp_path, rule):
    path = tmp_path / "bad.nft"
    path.write_text(f"table inet t {{\n\tchain c {{\n\t\ttype filter hook input priority 0;\n\t\t{rule}\n\t}}\n}}\n")
    with pytest.raises(InputError) as mine:
        files.read(str(path), str(path), parser="lbfw")
    with pytest.raises(InputError) as kernels:
        files.read(str(path), str(path), parser="kernel")
    assert mine.value.line == 4
    assert kernels.value.line in (4, None)


# --------------------------------------------------------------------------- the live host

_LIVE = r"""
import dataclasses, json, pickle, subprocess, sys
from lbfw.read import live
texts = json.loads(sys.stdin.read())
out = {}
for name, text in texts:
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    subprocess.run(["nft", "-f", "-"], input=text, text=True, check=True, capture_output=True)
    got = {}
    for native in ("text", "json"):
        try:
            rs = live.read_live(native=native)
        except Exception as err:  # the text reader's Unsupported: reported, judged by the test
            got[native] = repr(err)
            continue
        model = []
        for t in rs.tables:
            model.append((t.family, t.name, t.handle, t.origin, t.backend))
            for n, s in sorted(t.sets.items()):
                model.append((n, s.key, sorted(map(repr, s.elements)), s.flags, s.known, s.origin))
            for c in t.chains.values():
                model.append((c.name, c.hook, c.priority, c.policy, c.handle, c.origin))
                for r in c.rules:
                    a = r.action
                    if a.set_name:
                        a = dataclasses.replace(a, vmap=tuple(sorted(a.vmap, key=repr)))
                    model.append((r.matches, a, r.text, r.origin, r.comment, r.before))
        got[native] = model
    out[name] = got
sys.stdout.buffer.write(pickle.dumps(out))
"""


def test_the_live_text_listing_gives_the_model_the_live_json_gives():
    """Loaded with `nft -f` in a private namespace, each ruleset read live twice: parsed from
    `nft -a list table` by lbfw's reader and from libnftables JSON. Same tables, handles,
    sets, chains, rules, rule texts (the kernel's own in both) and origins (handles)."""
    import pickle
    import subprocess

    inputs = [(p.name, p.read_text()) for p in sorted((ROOT / "rules" / "examples").glob("*.nft"))]
    inputs += sorted(_generated().items())
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", _LIVE],
        input=json.dumps(inputs).encode(),
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    results = pickle.loads(proc.stdout)
    read_by_text = 0
    for name, got in results.items():
        if isinstance(got["text"], str):
            assert "Unsupported" in got["text"], (name, got["text"])
            continue
        read_by_text += 1
        assert got["text"] == got["json"], name
    assert read_by_text == len(results), [n for n, g in results.items() if isinstance(g["text"], str)]


def test_a_typo_in_a_big_file_gets_nfts_own_error(tmp_path):
    """What lbfw's reader does not know (`acept`) is left to libnftables: nft's own message and
    line, exit 2, as for any file."""
    import subprocess

    text = generate_nft.kube_nft(1000)
    assert len(text) >= files.TEXT_PARSE_MIN_BYTES
    path = tmp_path / "big.nft"
    path.write_text(text + "table inet typo {\n\tchain c {\n\t\tip saddr 10.0.0.1 acept\n\t}\n}\n")
    line = text.count("\n") + 3
    proc = subprocess.run(
        [sys.executable, "-m", "lbfw", "audit", str(path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 2
    assert f"{path}:{line}:" in proc.stderr and "syntax error" in proc.stderr


_LIVE_AUTO = r"""
import json, subprocess, sys
from lbfw.read import live
subprocess.run(["nft", "-f", "-"], input=sys.stdin.read(), text=True, check=True)
ruleset = live.read_live()
print(json.dumps({"rules": ruleset.rule_count(), "warnings": [w for s in ruleset.sources for w in s.warnings]}))
"""


def test_a_big_live_table_with_grammar_the_reader_lacks_comes_from_json():
    """`limit rate` is not in lbfw's grammar: the big table is read from libnftables JSON
    instead (the texts from the listing), whole, and the sources say why."""
    import subprocess

    text = generate_nft.kube_nft(1000).replace(
        "\tchain reject-chain {", "\tchain limited {\n\t\tlimit rate 5/second accept\n\t}\n\n\tchain reject-chain {", 1
    )
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", _LIVE_AUTO], input=text, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["rules"] == generate_nft.nft_rule_count(text)
    assert any("kube-proxy" in w and "does not implement" in w and "libnftables JSON" in w for w in got["warnings"])


@pytest.mark.parametrize("chains", KERNEL_REFUSES)
def test_what_lbfws_reader_leaves_to_the_kernel_the_kernel_refuses(tmp_path, chains):
    path = tmp_path / "refused.nft"
    path.write_text(f"table ip t {{\n{chains}}}\n")
    with pytest.raises(Unsupported):
        files.read(str(path), str(path), parser="lbfw")
    with pytest.raises(InputError):
        files.read(str(path), str(path), parser="kernel")

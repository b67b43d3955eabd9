"""`tcp flags` and `fib ... oif` as the real nft prints and compiles them: the JSON in
tests/data/nft_lookups.json is what `nft -j list ruleset` lists for each spelling, the reader
gives the Match that file states for it, and each tcp.flags (mask, comp) item is the
bitwise-and and compare (or set lookup) nft hands the kernel (`nft --debug=netlink`)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from lbfw.read.nft import files as nft_files

pytestmark = pytest.mark.kernel

ROWS = json.loads((Path(__file__).resolve().parents[1] / "data" / "nft_lookups.json").read_text())["rows"]


def _ruleset() -> str:
    rules = "".join(f"\t\t{row['nft']} accept\n" for row in ROWS)
    return (
        "table inet t {\n\tset flagset {\n\t\ttype tcp_flag\n\t\telements = { syn, ack }\n\t}\n\n"
        "\tchain c {\n\t\ttype filter hook prerouting priority filter; policy accept;\n" + rules + "\t}\n}\n"
    )


@pytest.fixture(scope="module")
def ruleset_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lookups") / "lookups.nft"
    path.write_text(_ruleset())
    return str(path)


def test_nft_prints_each_spelling_as_the_json_the_pure_tests_read(ruleset_file):
    doc = nft_files.load_json(ruleset_file, ruleset_file)
    exprs = [obj["rule"]["expr"] for obj in doc["nftables"] if "rule" in obj]
    assert [e[0]["match"] for e in exprs] == [row["json"] for row in ROWS]


def test_the_reader_gives_each_spelling_its_field(ruleset_file):
    (table,) = nft_files.read(ruleset_file, ruleset_file)
    rules = table.chains["c"].rules
    assert len(rules) == len(ROWS)
    for row, rule in zip(ROWS, rules, strict=True):
        (match,) = rule.matches
        assert rule.text == f"{row['nft']} accept"
        if row.get("opaque"):
            assert match.opaque, row["nft"]
        else:
            values = tuple(tuple(v) if isinstance(v, list) else v for v in row["values"])
            assert (match.field, match.values, match.negate) == (row["field"], values, row["negate"]), row["nft"]


_BITWISE = re.compile(r"bitwise reg 1 = \( reg 1 & 0x([0-9a-f]+) \)")
_CMP = re.compile(r"cmp (eq|neq) reg 1 0x([0-9a-f]+)")
_LOOKUP = re.compile(r"lookup reg 1 set \S+( 0x1)?")
_ELEMENT = re.compile(r"element ([0-9a-f]+)\s")


def _compiled_flag_tests(text: str) -> list:
    """Per rule of ``text``: (mask, [comp, ...], negate) of the tcp flags test nft compiles."""
    proc = subprocess.run(
        ["unshare", "-n", "nft", "--debug=netlink", "-c", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tests = []
    elements: list = []
    for block in ("\n" + proc.stdout).split("\ninet t c\n")[1:]:
        body = block.split("\n__set", 1)[0]  # an anonymous set of the next rule starts here
        mask = _BITWISE.search(body)
        cmp = _CMP.findall(body)[-1:]  # the last compare: the first one checks l4proto == tcp
        lookup = _LOOKUP.search(body)
        if lookup is not None:
            tests.append((int(mask.group(1), 16) if mask else 0xFF, sorted(elements), bool(lookup.group(1))))
        else:
            op, comp = cmp[0]
            tests.append((int(mask.group(1), 16) if mask else 0xFF, [int(comp, 16)], op == "neq"))
        elements = [int(e, 16) for e in _ELEMENT.findall(block.split("\n__set", 1)[1])] if "\n__set" in block else []
    return tests


def test_each_mask_and_compare_is_what_nft_hands_the_kernel():
    rows = [r for r in ROWS if r.get("field") == "tcp.flags"]
    text = "table inet t {\n\tchain c {\n" + "".join(f"\t\t{r['nft']} accept\n" for r in rows) + "\t}\n}\n"
    compiled = _compiled_flag_tests(text)
    assert len(compiled) == len(rows)
    for row, (mask, comps, neq) in zip(rows, compiled, strict=True):
        values = row["values"]
        assert {v[0] for v in values} == {mask}, row["nft"]
        # one compare, or a lookup in the set of comps; `tcp flags syn` is `& syn != 0`
        assert (sorted(v[1] for v in values), row["negate"]) == (comps, neq), row["nft"]

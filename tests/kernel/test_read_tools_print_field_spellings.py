"""The spellings recorded in tests/data/iptables_fields.json and nft_fields.json are what the real
tools print today: each written rule, loaded with iptables-restore (legacy and nft) or nft -f,
is listed back as the saved text / JSON the pure tests (tests/test_read_field_spellings.py) read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbfw.sandbox.netns import Namespace

pytestmark = pytest.mark.kernel

DATA = Path(__file__).resolve().parents[1] / "data"
IPT = json.loads((DATA / "iptables_fields.json").read_text())["rows"]
NFT = json.loads((DATA / "nft_fields.json").read_text())["rows"]
_HEADS = {"filter": ":INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n", "mangle": ":PREROUTING ACCEPT [0:0]\n"}


def _dump(rows: list) -> str:
    out = []
    for table in ("filter", "mangle"):
        lines = [
            f"-A {r['chain']} {r['written']}" + ("" if " -j " in f" {r['written']}" else " -j ACCEPT")
            for r in rows
            if r["table"] == table
        ]
        if lines:
            out.append(f"*{table}\n{_HEADS[table]}" + "\n".join(lines) + "\nCOMMIT\n")
    return "".join(out)


def _saved(save_text: str) -> list:
    return [line.split(" ", 2)[2] for line in save_text.splitlines() if line.startswith("-A ")]


@pytest.mark.parametrize("backend", ["legacy", "nft"])
@pytest.mark.parametrize("family", ["ip", "ip6"])
def test_iptables_save_prints_the_recorded_spellings(family, backend):
    rows = [r for r in IPT if r["family"] == family]
    with Namespace() as ns:
        if backend == "legacy" and not ns.legacy_available():
            pytest.skip("no legacy xtables in this kernel")
        ns.load_iptables(_dump(rows), family=family, backend=backend)
        tool = ("iptables" if family == "ip" else "ip6tables") + f"-{backend}-save"
        saved = _saved(ns.dump()[tool])
    # the tables' order differs between legacy and nft (and -A lines do not name their table)
    assert sorted(saved) == sorted(r["saved"] for r in rows)


def test_nft_lists_the_recorded_json():
    with Namespace() as ns:
        for row in NFT:
            hook = (
                "type filter hook prerouting priority -150;"
                if row["hook"] == "prerouting"
                else "type filter hook input priority 0;"
            )
            last = "" if row["hook"] == "prerouting" else " accept"
            ns.load_nft(f"table {row['family']} t {{\n chain c {{\n {hook}\n {row['nft']}{last}\n }}\n}}\n")
            listed = json.loads(ns.run(["nft", "-j", "list", "ruleset"]).stdout)["nftables"]
            (rule,) = [o["rule"] for o in listed if "rule" in o]
            exprs = rule["expr"] if row["hook"] == "prerouting" else rule["expr"][:-1]
            assert exprs == row["json"], row["nft"]
            ns.run(["nft", "flush", "ruleset"])

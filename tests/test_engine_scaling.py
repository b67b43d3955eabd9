"""Work per flow is bounded by the rules a flow can reach, not by the size of the dump: kube-proxy-like
and filter-heavy generated rulesets (tests/benchmarks/generate.py) at two sizes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lbfw.analyze.engine import Engine
from lbfw.analyze.flows import MAX_PORT_CLASSES, default_flows
from lbfw.model import Ruleset
from lbfw.read import iptables

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
generate = pytest.importorskip("generate")


def _work(text: str) -> tuple:
    ruleset = Ruleset(tables=iptables.parse(text, "generated", family="ip"))
    flows = default_flows(ruleset)
    engine = Engine(ruleset)
    verdicts = [engine.evaluate(f).verdict for f in flows]
    return ruleset.rule_count(), len(flows), engine.stats.rule_evals, verdicts


def test_kube_dump_work_does_not_grow_with_the_number_of_services():
    small = _work(generate.kube_dump(3_000))
    big = _work(generate.kube_dump(12_000))
    assert big[0] >= 3.5 * small[0]
    # the flow set is bounded, and so is the work per flow
    assert small[1] <= 22 * (MAX_PORT_CLASSES + 1) and big[1] <= 22 * (MAX_PORT_CLASSES + 1)
    assert big[2] / big[1] <= 1.3 * small[2] / small[1]
    # the narrow `-s 127.0.0.1/32` accept under INPUT DROP blocks something in both
    assert "blocked" in small[3] and "blocked" in big[3]


def test_filter_heavy_work_grows_less_than_the_ruleset():
    small = _work(generate.filter_dump(1_000))
    big = _work(generate.filter_dump(4_000))
    assert big[0] >= 3.5 * small[0]
    # four times the rules: the flows reach more of them (more service chains), but far from 4x
    assert big[2] / max(1, big[1]) <= 2.5 * small[2] / max(1, small[1])

"""`lbfw check [SOURCE...] --to ADDR:PORT[/proto] [--from ADDR] | --plan PLAN.toml`:
will these loopback bindings work here? Exit 1 when any flow is not delivered."""

from __future__ import annotations

import sys

from ..errors import UsageError
from ..pipeline import evaluate, read_ruleset
from ._common import choose, describe_sources, progress, write_output

FORMATS = ("text", "json")


def run(
    sources=(),
    to=(),
    from_=None,
    plan=None,
    user=None,
    explain: bool = False,
    format: str = "text",
    input_format: str = "auto",
    reader: str = "auto",
    quiet: bool = False,
) -> int:
    """Evaluate the flows asked for; 0 when every one is delivered, else 1."""
    choose("--format", format, FORMATS)
    to = list(to or [])
    if not to and plan is None:
        raise UsageError("say which flows to check: --to ADDR:PORT[/tcp|/udp] (repeatable) or --plan PLAN.toml")
    if to and plan is not None:
        raise UsageError("use --to or --plan, not both")
    if from_ is not None and plan is not None:
        raise UsageError("--from goes with --to; a plan names each flow's client itself")

    from ..analyze.flows import parse_plan, parse_to

    if user is not None and plan is not None:
        raise UsageError("--user goes with --to; a plan names each flow's user itself")
    flows = parse_plan(plan) if plan is not None else [parse_to(spec, from_, user) for spec in to]
    if not flows:
        raise UsageError("the plan holds no [[flow]] table", path=plan)

    with progress(describe_sources(sources), quiet):
        ruleset = read_ruleset(sources, input_format, reader)
    _, results = evaluate(ruleset, flows)
    from ..results import DELIVERED

    code = 0 if all(r.verdict == DELIVERED for r in results) else 1
    if quiet and code == 0:
        return 0
    if format == "json":
        from ..render import json as as_json

        text = as_json.render_flows(results, explain=explain)
    else:
        from ..render.common import terminal_for
        from ..render.text import render_flows

        text = render_flows(results, explain=explain, term=terminal_for(sys.stdout))
    write_output(text, None)
    return code

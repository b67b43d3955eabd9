"""`lbfw verify [SOURCE...] [--plan PLAN.toml] [--format text|json]`: the engine's predicted
verdicts against real traffic.

With SOURCE the ruleset is loaded into a private network namespace (lbfw.sandbox.verify);
without, the live host is probed harmlessly (loopback listeners on free ports only).
Exit 0 when every observed flow agrees with its prediction, 1 when one disagrees (a bug in
lbfw: the report says what to attach), 2 on errors. An "unknown" prediction, or a flow that
could not be observed (busy port), never disagrees; it is listed as such.

JSON: ``{"flows": [{"proto", "client", "server", "port", "predicted", "observed", "agree",
"reason"}], "agree": bool, "bug_report": null | {...}}`` where ``agree`` per flow is true,
false, or null (not comparable).

Glue only: the rows come from lbfw.pipeline.verify_rows, the report from lbfw.render.verify.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

from ..pipeline import verify_rows
from ._common import choose, progress, write_output

FORMATS = ("text", "json")


def run(
    sources: Sequence[str] = (),
    plan: Optional[str] = None,
    format: str = "text",
    input_format: str = "auto",
    reader: str = "auto",
    timeout: float = 1.0,
    quiet: bool = False,
) -> int:
    """Compare predicted and observed verdicts, print the report; 1 when one disagrees."""
    from ..render.verify import bug_report, render_json, render_text
    from ..sandbox.verify import tool_versions

    choose("--format", format, FORMATS)
    sources = list(sources or [])
    from ..read import source_bytes

    stdin_data = source_bytes("-") if "-" in sources else None
    with progress("verifying the predicted verdicts with real traffic", quiet):
        rows, results, mode, ruleset = verify_rows(sources, plan, input_format, reader, timeout, stdin_data)
    wrong = any(r["agree"] is False for r in rows)
    report = bug_report(rows, results, tool_versions(), ruleset) if wrong else None
    if format == "json":
        text = render_json(rows, report)
    else:
        from ..render.common import use_color

        text = render_text(rows, report, mode, color=use_color(sys.stdout))
    if not (quiet and report is None):
        write_output(text, None)
    return 1 if report is not None else 0

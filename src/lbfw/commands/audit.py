"""`lbfw audit [SOURCE...]`: read, follow the default loopback flows, run the checks, report.

Exit 0 when no finding is at or above --fail-on, 1 when one is, 2 on errors (raised as
LbfwError and turned into `PATH:LINE: message` by the CLI).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import Optional

from ..pipeline import audit_ruleset, read_ruleset, verify_results
from ._common import FAIL_ON, choose, write_output

FORMATS = ("text", "json", "sarif")


def _read_stdin_once() -> str:
    """Standard input, read once and put back, so both the reader and --verify can use it."""
    data = sys.stdin.buffer.read()
    sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    return data.decode("utf-8", errors="replace")


def run(
    sources: Sequence[str] = (),
    format: str = "text",
    fail_on: str = "warning",
    input_format: str = "auto",
    reader: str = "auto",
    verify: bool = False,
    output: Optional[str] = None,
) -> int:
    """Audit ``sources`` (the live host when empty) and write the report; the exit code."""
    choose("--format", format, FORMATS)
    choose("--fail-on", fail_on, FAIL_ON)
    from ..checks import at_or_above

    stdin_text = _read_stdin_once() if verify and "-" in sources else None
    ruleset = read_ruleset(sources, input_format, reader)
    findings, results = audit_ruleset(ruleset)
    verified = verify_results(list(sources), results, stdin_text) if verify else None
    if verified is not None:
        from ..checks import escalate_verified
        findings = escalate_verified(findings, verified)

    if format == "json":
        from ..render.json import render_audit

        text = render_audit(findings, results, ruleset.sources, verified)
    elif format == "sarif":
        from ..render.sarif import render

        text = render(findings)
    else:
        from ..render.text import render_findings, use_color

        color = output in (None, "-") and use_color(sys.stdout)
        text = render_findings(findings, results, ruleset.sources, color=color, verified=verified)
    write_output(text, output)
    return 1 if at_or_above(findings, fail_on) else 0

"""`lbfw audit [SOURCE...]`: read, follow the default loopback flows, run the checks, report.

Exit 0 when no finding is at or above --fail-on (default warning, or the configuration's
`fail-on`), 1 when one is, 2 on errors (raised as LbfwError and turned into `PATH:LINE:
message` by the CLI).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from typing import Optional

from ..pipeline import audit, read_ruleset, verify_results
from ._common import choose, describe_sources, load_config, progress, write_output

FORMATS = ("text", "concise", "github", "json", "sarif")


def run(
    sources: Sequence[str] = (),
    format: str = "text",
    fail_on: Optional[str] = None,
    input_format: str = "auto",
    reader: str = "auto",
    verify: bool = False,
    output: Optional[str] = None,
    select: Optional[str] = None,
    ignore: Optional[str] = None,
    quiet: bool = False,
    statistics: bool = False,
    flows: bool = False,
    config: Optional[str] = None,
) -> int:
    """Audit ``sources`` (the live host when empty) and write the report; the exit code."""
    choose("--format", format, FORMATS)
    settings = load_config(config, select, ignore, fail_on)
    from ..checks import at_or_above

    sources = list(sources)
    with progress(describe_sources(sources), quiet):
        ruleset = read_ruleset(sources, input_format, reader)
    with progress("following loopback flows through the rules", quiet):
        found = audit(ruleset, settings)
    verified = None
    if verify:
        with progress(f"verifying {len(found.results)} flows with real traffic", quiet):
            verified = verify_results(sources, found.results)
    findings, results = found.findings, found.results
    if verified is not None:
        from ..checks import escalate_verified

        findings = escalate_verified(findings, verified)

    if format == "json":
        from ..render.json import render_audit

        text = render_audit(findings, results, ruleset.sources, verified)
    elif format == "sarif":
        from ..render.sarif import render

        text = render(findings, host=None if sources else socket.gethostname())
    elif format == "concise":
        from ..render.concise import render as concise

        text = concise(findings, results, found.any_port)
    elif format == "github":
        from ..render.github import render as github

        text = github(findings, results, found.any_port)
    else:
        from ..render.common import Terminal, terminal_for
        from ..render.text import render_findings, render_statistics

        term = terminal_for(sys.stdout) if output in (None, "-") else Terminal.plain()
        if statistics:
            text = render_statistics(findings, term)
        else:
            text = render_findings(
                findings,
                results,
                ruleset.sources,
                term=term,
                verified=verified,
                any_port=found.any_port,
                quiet=quiet,
                show_flows=flows,
            )
    write_output(text, output)
    return 1 if at_or_above(findings, settings.fail_on or "warning") else 0

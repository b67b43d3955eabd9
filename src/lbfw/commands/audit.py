"""`lbfw audit [SOURCE...]`: read, follow the default loopback flows, run the checks, report.

Exit 0 when no finding is at or above --fail-on, 1 when one is, 2 on errors (raised as
LbfwError and turned into `PATH:LINE: message` by the CLI).
"""

from __future__ import annotations

import io
import sys
from typing import Optional

from ._common import FAIL_ON, choose, read_ruleset, write_output

FORMATS = ("text", "json", "sarif")


def analyse(ruleset):
    """(engine, flow results) for the default flow set of ``ruleset``."""
    from ..analyze.engine import Engine
    from ..analyze.flows import default_flows

    engine = Engine(ruleset)
    results = [engine.evaluate(flow) for flow in default_flows(ruleset)]
    return engine, results


def audit_ruleset(ruleset):
    """(findings, results) for a ruleset already read: what the command and the tests run."""
    from ..checks import run_checks

    engine, results = analyse(ruleset)
    return run_checks(ruleset, engine, results), results


def verify_results(sources, results, stdin_text: Optional[str] = None) -> dict:
    """Flow -> verdict observed with real traffic: the sources loaded into a private network
    namespace (lbfw.sandbox.verify), or for the live host harmless probes on loopback."""
    from ..sandbox import verify as sandbox

    flows = []
    for r in results:
        if r.flow not in flows:
            flows.append(r.flow)
    if sources:
        loadable = [sandbox.RulesetText("-", stdin_text) if s == "-" else s for s in sources]
        observed = sandbox.observe_files(loadable, flows)
    else:
        observed = sandbox.verify_live(flows)
    return dict(zip(flows, observed))


def _read_stdin_once() -> str:
    """Standard input, read once and put back, so both the reader and --verify can use it."""
    data = sys.stdin.buffer.read()
    sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    return data.decode("utf-8", errors="replace")


def run(sources=(), format: str = "text", fail_on: str = "warning", input_format: str = "auto",
        reader: str = "auto", verify: bool = False, output: Optional[str] = None) -> int:
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

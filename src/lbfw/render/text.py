"""Findings and flows as text for people (rich): grouped by source, colour only when asked.

The caller decides colour (`use_color`: a TTY and no NO_COLOR); without it the output is
plain text, lines never wrapped, so it greps and diffs.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Optional

from rich.console import Console
from rich.text import Text

from ..results import BLOCKED, DELIVERED, UNKNOWN
from .common import counts, plural, where

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}
FLOW_LINES = 20  # blocked/unknown flows listed in the text report
VERDICT_STYLE = {DELIVERED: "green", BLOCKED: "bold red", UNKNOWN: "magenta"}


def use_color(stream=None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("NO_COLOR", "") != "":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _captured(console: Console) -> str:
    """What ``console`` (one of `_console`'s) has printed."""
    buffer = console.file
    assert isinstance(buffer, io.StringIO)
    return buffer.getvalue()


def _console(color: bool) -> Console:
    return Console(
        file=io.StringIO(),
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        width=120,
        highlight=False,
        emoji=False,
        markup=False,
        legacy_windows=False,
    )


def _flow_label(result) -> str:
    flow = result.flow
    client = flow.client or result.client_addr or ("::1" if ":" in flow.server else "127.0.0.1")
    default = "" if flow.client else " (default source)"
    server = f"[{flow.server}]" if ":" in flow.server else flow.server
    return f"{flow.proto} {client}{default} -> {server}:{flow.port}"


def render_findings(findings, results=(), sources=(), color: bool = False, verified: Optional[dict] = None) -> str:
    """The audit report. ``verified`` maps id(FlowResult) or flow -> observed verdict, when --verify ran."""
    console = _console(color)
    out = console.print
    groups: dict = {}
    for f in findings:
        groups.setdefault(f.source or "(host)", []).append(f)
    for source, items in groups.items():
        out(Text(source, style="bold"), soft_wrap=True)
        for f in items:
            line = Text("  ")
            line.append(where(f), style="bold")
            line.append(": ")
            line.append(f.check, style=SEVERITY_STYLE.get(f.severity, ""))
            line.append(" ")
            line.append(f.severity, style=SEVERITY_STYLE.get(f.severity, ""))
            if f.table or f.chain:
                line.append(f" [{' '.join(x for x in (f.table, f.chain) if x)}]", style="dim")
            if f.owner:
                line.append(f" (managed by {f.owner})", style="dim")
            out(line, soft_wrap=True)
            if f.rule is not None:
                out(Text("    " + f.rule.text, style="dim"), soft_wrap=True)
            out(Text("    " + f.message), soft_wrap=True)
        out("", soft_wrap=True)

    results = list(results)
    if results:
        bad = [r for r in results if r.verdict != DELIVERED]
        n_ok = len(results) - len(bad)
        head = Text("Loopback flows: ", style="bold")
        head.append(f"{n_ok} delivered", style=VERDICT_STYLE[DELIVERED])
        head.append(", ")
        head.append(f"{sum(r.verdict == BLOCKED for r in results)} blocked", style=VERDICT_STYLE[BLOCKED])
        head.append(", ")
        head.append(f"{sum(r.verdict == UNKNOWN for r in results)} unknown", style=VERDICT_STYLE[UNKNOWN])
        if verified is not None:
            agree = sum(1 for r in results if verified.get(r.flow) == r.probed())
            head.append(f"; verified by real traffic: {agree} of {len(results)} agree")
        out(head, soft_wrap=True)
        for r in bad[:FLOW_LINES]:
            line = Text("  ")
            line.append(r.verdict, style=VERDICT_STYLE.get(r.verdict, ""))
            line.append("  " + _flow_label(r))
            if r.deciding is not None:
                d = r.deciding
                loc = d.origin.where() if d.origin is not None else f"{d.table} {d.chain}"
                line.append(
                    f"  ({d.packet} dropped by {d.verdict} in {d.family} {d.table} {d.chain}, {loc})", style="dim"
                )
            elif r.unknown:
                line.append(f"  (undecided: {'; '.join(r.unknown)})", style="dim")
            if r.describe() != r.verdict:
                line.append(f"  [{r.describe()}]")
            if verified is not None and r.flow in verified:
                line.append(f"  observed: {verified[r.flow]}")
            out(line, soft_wrap=True)
        if len(bad) > FLOW_LINES:
            out(f"  ... and {len(bad) - FLOW_LINES} more (all of them: --format json)", soft_wrap=True)
        if bad:
            out("", soft_wrap=True)

    c = counts(findings)
    if findings:
        summary = Text(f"Found {plural(len(findings), 'finding')}: ", style="bold")
        summary.append(", ".join(plural(c[s], s) for s in ("error", "warning", "note") if c[s]))
        summary.append(". `lbfw rules ID` explains a check; `lbfw fix` shows the fix.")
    else:
        n = sum(getattr(s, "rules", 0) for s in sources)
        summary = Text("No loopback problems found" + (f" in {plural(n, 'rule')}." if sources else "."), style="green")
    out(summary, soft_wrap=True)
    return _captured(console)


def render_flows(results, explain: bool = False, color: bool = False) -> str:
    """`lbfw check`: one line per flow in plan order, and with ``explain`` each packet's path."""
    console = _console(color)
    for r in results:
        line = Text()
        line.append(f"{r.verdict:<9}", style=VERDICT_STYLE.get(r.verdict, ""))
        line.append(" " + _flow_label(r))
        if r.verdict == BLOCKED and r.deciding is not None:
            d = r.deciding
            loc = d.origin.where() if d.origin is not None else f"{d.table} {d.chain}"
            line.append(f"  ({d.packet} dropped by {d.verdict} in {d.family} {d.table} {d.chain}, {loc})")
        elif r.verdict == UNKNOWN and r.unknown:
            line.append(f"  (undecided: {'; '.join(r.unknown)})")
        if r.describe() != r.verdict:
            line.append(f"  [{r.describe()}]")
        if r.caveats:
            line.append(f"  (assuming: {'; '.join(r.caveats)})")
        console.print(line, soft_wrap=True)
        if explain:
            for s in r.steps:
                loc = s.origin.where() if s.origin is not None else "policy" if s.rule is None else ""
                rule = f"  {s.rule.text}" if s.rule is not None else ""
                note = f"  ({s.note})" if s.note else ""
                console.print(
                    Text(
                        f"    {s.packet:<7} {s.hook:<11} {s.family} {s.table} {s.chain}: "
                        f"{s.verdict}  {loc}{rule}{note}",
                        style="dim",
                    ),
                    soft_wrap=True,
                )
    return _captured(console)

"""`lbfw verify`'s report: the predicted and observed verdict per flow, as text or JSON, and
what to attach to a bug report when they disagree (pure: strings and dicts)."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

from rich.table import Table
from rich.text import Text

from .. import __version__
from ..results import BLOCKED, DELIVERED, UNKNOWN
from .common import Terminal, captured
from .text import VERDICT_STYLE

if TYPE_CHECKING:
    from ..model import Ruleset
    from ..results import FlowResult


def _path_lines(result: FlowResult) -> list[str]:
    """The engine's path for a flow, one step a line (for a bug report)."""
    lines = []
    for s in result.steps:
        where = s.origin.where() if s.origin is not None else ("policy" if s.rule is None else "")
        rule = f"  {s.rule.text}" if s.rule is not None else ""
        note = f"  ({s.note})" if s.note else ""
        lines.append(f"{s.packet} {s.hook} {s.family} {s.table} {s.chain}: {s.verdict}  {where}{rule}{note}")
    return lines


def _tables(ruleset: Optional[Ruleset]) -> list[str]:
    """The tables the engine saw, e.g. "ip filter (legacy, live:legacy): 3 chains, 12 rules"."""
    out = []
    for t in getattr(ruleset, "tables", None) or []:
        rules = sum(c.rule_count for c in t.chains.values())
        out.append(f"{t.family} {t.name} ({t.backend}, {t.source}): {len(t.chains)} chains, {rules} rules")
    return out


def bug_report(
    rows: Sequence[dict], results: Sequence[FlowResult], versions: dict, ruleset: Optional[Ruleset] = None
) -> Optional[dict]:
    """What to attach to a bug report when a prediction disagrees with the kernel, or None."""
    wrong = [(row, result) for row, result in zip(rows, results) if row["agree"] is False]
    if not wrong:
        return None
    return {
        "message": "lbfw predicted a verdict the kernel does not give: this is a bug in lbfw. "
        "Please report it with the details below and the ruleset (or the lines the path names).",
        "lbfw": __version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "tools": versions,
        "tables": _tables(ruleset),
        "warnings": [w for info in (getattr(ruleset, "sources", None) or []) for w in info.warnings],
        "flows": [
            dict(
                flow=row_flow(row),
                predicted=row["predicted"],
                observed=row["observed"],
                reason=row["reason"],
                path=_path_lines(result),
            )
            for row, result in wrong
        ],
    }


def row_flow(row: dict) -> str:
    """A row's flow as people write it: "tcp 127.0.0.1 -> [::1]:22"."""
    client = row["client"] or "default"
    server = f"[{row['server']}]" if ":" in row["server"] else row["server"]
    return f"{row['proto']} {client} -> {server}:{row['port']}"


def render_json(rows: Sequence[dict], report: Optional[dict]) -> str:
    """``{"flows": rows, "agree": bool, "bug_report": report}`` (the stable `--format json`)."""
    doc = {"flows": rows, "agree": not any(r["agree"] is False for r in rows), "bug_report": report}
    return json.dumps(doc, indent=2) + "\n"


def render_text(rows: Sequence[dict], report: Optional[dict], mode: str, color: bool = False) -> str:
    """A table of the flows, a summary line, and the bug report when there is one."""
    console = (Terminal("standard", 120, True) if color else Terminal.plain(120)).console()
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for name in ("flow", "predicted", "observed", "agree"):
        table.add_column(name, no_wrap=True)
    for row in rows:
        agree = {True: Text("yes", style="green"), False: Text("NO", style="bold red"), None: Text("-", style="dim")}[
            row["agree"]
        ]
        observed = Text(row["observed"], style=VERDICT_STYLE.get(row["observed"], "dim"))
        if row["reason"] and row["observed"] == BLOCKED:
            observed.append(f" ({row['reason']})", style="dim")
        table.add_row(
            row_flow(row), Text(row["predicted"], style=VERDICT_STYLE.get(row["predicted"], "")), observed, agree
        )
    console.print(table, soft_wrap=True)
    agreeing = sum(1 for r in rows if r["agree"] is True)
    unknown = sum(1 for r in rows if r["predicted"] == UNKNOWN)
    unobserved = sum(1 for r in rows if r["observed"] not in (DELIVERED, BLOCKED))
    wrong = sum(1 for r in rows if r["agree"] is False)
    summary = f"{len(rows)} flows, observed {mode}: {agreeing} agree, {wrong} disagree"
    if unknown:
        summary += f", {unknown} predicted unknown (not compared)"
    if unobserved:
        summary += f", {unobserved} not observed"
    console.print(Text(summary, style="bold red" if wrong else "bold"), soft_wrap=True)
    if report is not None:
        console.print(Text(report["message"], style="bold red"), soft_wrap=True)
        console.print(
            f"Attach: lbfw {report['lbfw']}, Python {report['python']}, kernel {report['kernel']}",
            soft_wrap=True,
            markup=False,
        )
        for tool, version in report["tools"].items():
            console.print(f"  {tool}: {version}", soft_wrap=True, markup=False)
        console.print("  tables lbfw read:" + ("" if report.get("tables") else " none"), soft_wrap=True, markup=False)
        for line in report.get("tables") or ():
            console.print(f"    {line}", soft_wrap=True, markup=False)
        for line in report.get("warnings") or ():
            console.print(f"  reader warning: {line}", soft_wrap=True, markup=False)
        for item in report["flows"]:
            console.print(
                f"  flow {item['flow']}: predicted {item['predicted']}, observed {item['observed']}"
                + (f" ({item['reason']})" if item["reason"] else ""),
                soft_wrap=True,
                markup=False,
            )
            for line in item["path"] or ["(no base chain of the ruleset lbfw read saw this flow)"]:
                console.print(f"    {line}", soft_wrap=True, markup=False)
    return captured(console)

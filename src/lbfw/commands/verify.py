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
"""

from __future__ import annotations

import json
import platform
import sys
from typing import Optional

from ..results import BLOCKED, DELIVERED, UNKNOWN
from ..sandbox.verify import nat_rewritten as live_nat_flows  # noqa: F401 (the command's rule, named here)
from ._common import UsageError, choose, read_ruleset, write_output

FORMATS = ("text", "json")
BUG_URL = "the lbfw issue tracker"


# --------------------------------------------------------------------------- pure: comparing

def agreement(predicted: str, observed: str) -> Optional[bool]:
    """True / False when both verdicts are definite; None when the engine said unknown or the
    flow could not be observed (nothing to compare, so never a disagreement)."""
    if predicted not in (DELIVERED, BLOCKED) or observed not in (DELIVERED, BLOCKED):
        return None
    return predicted == observed


def compare(results, observed) -> list[dict]:
    """One row per flow: the flow's JSON plus predicted, observed, agree and reason.
    ``observed`` items are verdict strings or {"observed", "reason"} dicts."""
    rows = []
    for result, seen in zip(results, observed):
        seen = seen if isinstance(seen, dict) else {"observed": seen, "reason": ""}
        row = result.flow.to_json()
        row["predicted"] = result.verdict
        row["observed"] = seen["observed"]
        row["agree"] = agreement(result.verdict, seen["observed"])
        row["reason"] = seen.get("reason") or ""
        rows.append(row)
    return rows


def _path_lines(result) -> list[str]:
    lines = []
    for s in result.steps:
        where = s.origin.where() if s.origin is not None else ("policy" if s.rule is None else "")
        rule = f"  {s.rule.text}" if s.rule is not None else ""
        note = f"  ({s.note})" if s.note else ""
        lines.append(f"{s.packet} {s.hook} {s.family} {s.table} {s.chain}: {s.verdict}  {where}{rule}{note}")
    return lines


def _tables(ruleset) -> list[str]:
    """The tables the engine saw, e.g. "ip filter (legacy, live:legacy): 3 chains, 12 rules"."""
    out = []
    for t in getattr(ruleset, "tables", None) or []:
        rules = sum(c.rule_count for c in t.chains.values())
        out.append(f"{t.family} {t.name} ({t.backend}, {t.source}): {len(t.chains)} chains, {rules} rules")
    return out


def bug_report(rows, results, versions: dict, ruleset=None) -> Optional[dict]:
    """What to attach to a bug report when a prediction disagrees with the kernel, or None."""
    wrong = [(row, result) for row, result in zip(rows, results) if row["agree"] is False]
    if not wrong:
        return None
    from .. import __version__
    return {
        "message": "lbfw predicted a verdict the kernel does not give: this is a bug in lbfw. "
                   "Please report it with the details below and the ruleset (or the lines the path names).",
        "lbfw": __version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "tools": versions,
        "tables": _tables(ruleset),
        "warnings": [w for info in (getattr(ruleset, "sources", None) or []) for w in info.warnings],
        "flows": [dict(flow=row_flow(row), predicted=row["predicted"], observed=row["observed"],
                       reason=row["reason"], path=_path_lines(result)) for row, result in wrong],
    }


def row_flow(row: dict) -> str:
    client = row["client"] or "default"
    server = f"[{row['server']}]" if ":" in row["server"] else row["server"]
    return f"{row['proto']} {client} -> {server}:{row['port']}"


def render_json(rows, report: Optional[dict]) -> str:
    doc = {"flows": rows, "agree": not any(r["agree"] is False for r in rows), "bug_report": report}
    return json.dumps(doc, indent=2) + "\n"


def render_text(rows, report: Optional[dict], mode: str, color: bool = False) -> str:
    from rich.table import Table
    from rich.text import Text

    from ..render.text import VERDICT_STYLE, _console

    console = _console(color)
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for name in ("flow", "predicted", "observed", "agree"):
        table.add_column(name, no_wrap=True)
    for row in rows:
        agree = {True: Text("yes", style="green"), False: Text("NO", style="bold red"),
                 None: Text("-", style="dim")}[row["agree"]]
        observed = Text(row["observed"], style=VERDICT_STYLE.get(row["observed"], "dim"))
        if row["reason"] and row["observed"] == BLOCKED:
            observed.append(f" ({row['reason']})", style="dim")
        table.add_row(row_flow(row), Text(row["predicted"], style=VERDICT_STYLE.get(row["predicted"], "")),
                      observed, agree)
    console.print(table, soft_wrap=True)
    agree = sum(1 for r in rows if r["agree"] is True)
    unknown = sum(1 for r in rows if r["predicted"] == UNKNOWN)
    unobserved = sum(1 for r in rows if r["observed"] not in (DELIVERED, BLOCKED))
    wrong = sum(1 for r in rows if r["agree"] is False)
    summary = f"{len(rows)} flows, observed {mode}: {agree} agree, {wrong} disagree"
    if unknown:
        summary += f", {unknown} predicted unknown (not compared)"
    if unobserved:
        summary += f", {unobserved} not observed"
    console.print(Text(summary, style="bold red" if wrong else "bold"), soft_wrap=True)
    if report is not None:
        console.print(Text(report["message"], style="bold red"), soft_wrap=True)
        console.print(f"Attach: lbfw {report['lbfw']}, Python {report['python']}, kernel {report['kernel']}",
                      soft_wrap=True, markup=False)
        for tool, version in report["tools"].items():
            console.print(f"  {tool}: {version}", soft_wrap=True, markup=False)
        console.print("  tables lbfw read:" + ("" if report.get("tables") else " none"), soft_wrap=True,
                      markup=False)
        for line in report.get("tables") or ():
            console.print(f"    {line}", soft_wrap=True, markup=False)
        for line in report.get("warnings") or ():
            console.print(f"  reader warning: {line}", soft_wrap=True, markup=False)
        for item in report["flows"]:
            console.print(f"  flow {item['flow']}: predicted {item['predicted']}, observed {item['observed']}"
                          + (f" ({item['reason']})" if item["reason"] else ""), soft_wrap=True, markup=False)
            for line in item["path"] or ["(no base chain of the ruleset lbfw read saw this flow)"]:
                console.print(f"    {line}", soft_wrap=True, markup=False)
    return console.file.getvalue()


# --------------------------------------------------------------------------- edges

def tool_versions() -> dict:
    """iptables and nft versions, asked inside a throwaway namespace (the host's tables are
    never queried)."""
    from ..sandbox.netns import Namespace

    versions = {}
    try:
        with Namespace() as ns:
            for argv in (["iptables-legacy", "-V"], ["iptables-nft", "-V"], ["nft", "-v"]):
                try:
                    proc = ns.run(argv, check=False, timeout=10)
                    versions[argv[0]] = (proc.stdout or proc.stderr).strip() or f"exit {proc.returncode}"
                except Exception as err:  # a missing tool is itself worth reporting
                    versions[argv[0]] = f"unavailable: {err}"
    except Exception as err:
        versions["sandbox"] = f"unavailable: {err}"
    return versions


def _loadable(sources, ruleset, stdin_data: Optional[bytes]):
    """Sources for the sandbox, in the formats the reader found (so both see the same thing)."""
    from ..sandbox.verify import RulesetText

    formats = {info.source: info.format for info in getattr(ruleset, "sources", [])}
    out = []
    for source in sources:
        fmt = formats.get(source)
        if source == "-":
            out.append(RulesetText("-", (stdin_data or b"").decode("utf-8", errors="replace").lstrip("\ufeff"),
                                   format=fmt))
        elif fmt is not None:
            from pathlib import Path
            path = Path(source)
            text = path.read_text(encoding="utf-8").lstrip("\ufeff")
            # nft files load from their path: relative includes resolve beside them
            out.append(RulesetText(source, text, format=fmt, path=path if fmt == "nft" else None))
        else:
            out.append(source)
    return out


def verify_rows(sources, plan=None, input_format: str = "auto", reader: str = "auto", timeout: float = 1.0,
                stdin_data: Optional[bytes] = None, with_ruleset: bool = False):
    """(rows, results, mode): predicted (engine) and observed (sandbox or live) per flow
    (and the Ruleset read, fourth, when ``with_ruleset``). Standard input, when a source is
    "-", must already be read into ``stdin_data``."""
    sources = list(sources or [])
    if stdin_data is not None:
        import io
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin_data), encoding="utf-8")
    ruleset = read_ruleset(sources, input_format, reader)

    from ..analyze.engine import Engine
    from ..analyze.flows import default_flows, parse_plan
    flows = parse_plan(plan) if plan is not None else default_flows(ruleset)
    if not flows:
        raise UsageError("no flow to verify" + (": the plan holds no [[flow]] table" if plan else ""), path=plan)
    engine = Engine(ruleset)
    results = [engine.evaluate(flow) for flow in flows]

    from ..sandbox import verify as sandbox
    if sources:
        observed = sandbox.observe_files_detailed(_loadable(sources, ruleset, stdin_data), flows, timeout=timeout)
        mode = "in a private network namespace"
    else:
        observed = sandbox.verify_live_detailed(flows, timeout=timeout, results=results, ruleset=ruleset)
        mode = "on the live host"
    rows = compare(results, observed)
    return (rows, results, mode, ruleset) if with_ruleset else (rows, results, mode)


def run(sources=(), plan=None, format: str = "text", input_format: str = "auto", reader: str = "auto",
        timeout: float = 1.0) -> int:
    choose("--format", format, FORMATS)
    sources = list(sources or [])
    stdin_data = sys.stdin.buffer.read() if "-" in sources else None
    rows, results, mode, ruleset = verify_rows(sources, plan, input_format, reader, timeout, stdin_data,
                                               with_ruleset=True)
    wrong = any(r["agree"] is False for r in rows)
    report = bug_report(rows, results, tool_versions(), ruleset) if wrong else None
    if format == "json":
        text = render_json(rows, report)
    else:
        from ..render.text import use_color
        text = render_text(rows, report, mode, color=use_color(sys.stdout))
    write_output(text, None)
    return 1 if report is not None else 0

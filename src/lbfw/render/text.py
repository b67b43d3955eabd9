"""Findings and flows as text for people (rich): the findings first, one block each, then a
closing summary; the flows as a clients x servers matrix when asked (`--flows`).

Every string from a ruleset goes through `common.printable` before rich sees it; rich wraps
to the `Terminal`'s width and colours only when the terminal decision (`common.terminal_for`)
says so.
"""

from __future__ import annotations

from typing import Optional

from rich.table import Table
from rich.text import Text

from ..results import BLOCKED, DELIVERED, UNKNOWN
from .common import (
    Terminal,
    brief_message,
    captured,
    client_of,
    counts,
    fixable,
    plural,
    port_label,
    position,
    printable,
)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}
VERDICT_STYLE = {DELIVERED: "green", BLOCKED: "bold red", UNKNOWN: "magenta"}
INDENT = "  "


def _wrapped(console, text: Text, indent: str = INDENT) -> None:
    """Print ``text`` wrapped at the console's width, every line indented (no trailing padding)."""
    width = max(20, console.width - len(indent))
    for line in text.wrap(console, width, overflow="fold"):
        line.rstrip()
        console.print(Text(indent) + line, soft_wrap=True)


def _group_key(f) -> tuple:
    """Findings about the same rule (or the same policy) share a block."""
    if f.rule is not None:
        return ("rule", f.source, f.line, f.handle, f.index, id(f.rule))
    if f.chain is not None:
        return ("policy", f.source, f.family, f.table, f.chain)
    return ("finding", id(f))


def _header(items: list) -> Text:
    first = items[0]
    head = Text(printable(position(first)), style="bold")
    head.append(": ")
    for n, f in enumerate(items):
        if n:
            head.append(" + ")
        style = SEVERITY_STYLE.get(f.severity, "")
        head.append(f.check, style=style)
        head.append(f" {f.severity}", style=style)
    place = " ".join(x for x in (first.table, first.chain) if x)
    if place:
        head.append(f"  {printable(place)}" + (" policy" if first.rule is None else ""), style="dim")
    if first.owner:
        head.append(f"  (managed by {printable(first.owner)})", style="dim")
    return head


def _blocks(console, findings, results, any_port) -> None:
    groups: dict = {}
    for f in findings:
        groups.setdefault(_group_key(f), []).append(f)
    for items in groups.values():
        console.print(_header(items), soft_wrap=True)
        rule = items[0].rule
        if rule is not None:
            _wrapped(console, Text(printable(rule.text), style="dim"))
        for f in items:
            message = Text()
            if len(items) > 1:
                message.append(f"{f.check}: ", style=SEVERITY_STYLE.get(f.severity, ""))
            message.append(printable(brief_message(f, results, any_port)))
            _wrapped(console, message)
        console.print("", soft_wrap=True)


def _flow_counts(results, verified: Optional[dict]) -> Text:
    head = Text("Loopback flows: ")
    n = {v: sum(r.verdict == v for r in results) for v in (DELIVERED, BLOCKED, UNKNOWN)}
    head.append(f"{n[DELIVERED]} delivered", style=VERDICT_STYLE[DELIVERED])
    head.append(", ")
    head.append(f"{n[BLOCKED]} blocked", style=VERDICT_STYLE[BLOCKED] if n[BLOCKED] else "")
    head.append(", ")
    head.append(f"{n[UNKNOWN]} unknown", style=VERDICT_STYLE[UNKNOWN] if n[UNKNOWN] else "")
    if verified is not None:
        agree = sum(1 for r in results if verified.get(r.flow) == r.probed())
        head.append(f"; verified by real traffic: {agree} of {len(results)} agree")
    return head


def render_findings(
    findings,
    results=(),
    sources=(),
    term: Optional[Terminal] = None,
    verified: Optional[dict] = None,
    any_port: Optional[int] = None,
    quiet: bool = False,
    show_flows: bool = False,
) -> str:
    """The audit report: one block per rule (or policy) with findings, the flow matrix with
    ``show_flows``, then the summary (counts, what `lbfw fix` can fix, the flows' verdicts).
    ``quiet``: the blocks alone, and nothing at all when there is no finding. ``verified`` maps
    flow -> observed verdict when --verify ran; ``any_port`` is the port no rule names."""
    term = term or Terminal.plain()
    console = term.console()
    results = list(results)
    _blocks(console, findings, results, any_port)
    if quiet:
        return captured(console)
    if show_flows and results:
        console.print(flow_matrix(results, any_port), soft_wrap=True)
        console.print("", soft_wrap=True)
    c = counts(findings)
    if findings:
        summary = Text(f"Found {plural(len(findings), 'finding')}", style="bold")
        summary.append(" (" + ", ".join(plural(c[s], s) for s in ("error", "warning", "note") if c[s]) + ")")
        n_fix = sum(fixable(f) for f in findings)
        summary.append(f"; {n_fix} fixable with `lbfw fix`" if n_fix else "; none `lbfw fix` can fix")
        summary.append(". `lbfw rules ID` explains a check.")
    else:
        n = sum(getattr(s, "rules", 0) for s in sources)
        summary = Text("No loopback problems found" + (f" in {plural(n, 'rule')}." if sources else "."), style="green")
    _wrapped(console, summary, indent="")
    if results:
        line = _flow_counts(results, verified)
        if not show_flows and any(r.verdict != DELIVERED for r in results):
            line.append(" (`--flows` shows which)")
        _wrapped(console, line, indent="")
    return captured(console)


def render_statistics(findings, term: Optional[Terminal] = None) -> str:
    """`--statistics`: how many findings of each check, `[*]` on the checks `lbfw fix` fixes."""
    from ..checks import get

    console = (term or Terminal.plain()).console()
    seen: dict = {}
    for f in findings:
        seen.setdefault(f.check, []).append(f)
    width = max((len(str(len(v))) for v in seen.values()), default=1)
    for check_id, items in sorted(seen.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        check = get(check_id)
        mark = "[*]" if any(fixable(f) for f in items) else "   "
        line = Text(f"{len(items):>{width}}  ")
        line.append(check_id, style=SEVERITY_STYLE.get(items[0].severity, ""))
        line.append(f"  {mark}  {check.NAME if check is not None else ''}")
        console.print(line, soft_wrap=True)
    if any(fixable(f) for f in findings):
        console.print("[*] fixable with `lbfw fix`", soft_wrap=True)
    return captured(console)


def _cell(flows_results, any_port) -> Text:
    verdicts = {r.verdict for r in flows_results}
    if len(verdicts) == 1:
        (verdict,) = verdicts
        return Text(verdict, style=VERDICT_STYLE.get(verdict, ""))
    cell = Text()
    for verdict in (BLOCKED, UNKNOWN):
        labels = [f"{r.flow.proto} {port_label(r.flow.port, any_port)}" for r in flows_results if r.verdict == verdict]
        if labels:
            if cell:
                cell.append("; ")
            cell.append(f"{verdict}: ", style=VERDICT_STYLE[verdict])
            cell.append(", ".join(labels))
    cell.append("; else delivered", style="dim")
    return cell


def flow_matrix(results, any_port: Optional[int] = None) -> Table:
    """Clients (rows) x servers (columns); a cell is the verdict of every flow between them, or
    which protocol and port got which verdict when they differ."""
    clients: list = []
    servers: list = []
    cells: dict = {}
    for r in results:
        client = ("default " if r.flow.client is None else "") + client_of(r.flow)
        server = f"[{r.flow.server}]" if ":" in r.flow.server else r.flow.server
        if client not in clients:
            clients.append(client)
        if server not in servers:
            servers.append(server)
        cells.setdefault((client, server), []).append(r)
    table = Table(title=None, show_edge=False, box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    table.add_column("client \\ server")
    for server in servers:
        table.add_column(server)
    for client in clients:
        row: list = [Text(client)]
        for server in servers:
            found = cells.get((client, server))
            row.append(_cell(found, any_port) if found else Text("-", style="dim"))
        table.add_row(*row)
    return table


def render_flows(
    results, explain: bool = False, term: Optional[Terminal] = None, any_port: Optional[int] = None
) -> str:
    """`lbfw check`: one line per flow in plan order, and with ``explain`` each packet's path."""
    console = (term or Terminal.plain()).console()
    for r in results:
        line = Text()
        line.append(f"{r.verdict:<9}", style=VERDICT_STYLE.get(r.verdict, ""))
        flow = r.flow
        client = (flow.client or r.client_addr or client_of(flow)) + ("" if flow.client else " (default source)")
        server = f"[{flow.server}]" if ":" in flow.server else flow.server
        line.append(f" {flow.proto} {client} -> {server}:{port_label(flow.port, any_port)}")
        if r.verdict == BLOCKED and r.deciding is not None:
            d = r.deciding
            loc = d.origin.where() if d.origin is not None else f"{d.table} {d.chain}"
            line.append(printable(f"  ({d.packet} dropped by {d.verdict} in {d.family} {d.table} {d.chain}, {loc})"))
        elif r.verdict == UNKNOWN and r.unknown:
            line.append(printable(f"  (undecided: {'; '.join(r.unknown)})"))
        if r.describe() != r.verdict:
            line.append(printable(f"  [{r.describe()}]"))
        if r.caveats:
            line.append(printable(f"  (assuming: {'; '.join(r.caveats)})"))
        console.print(line, soft_wrap=True)
        if explain:
            for s in r.steps:
                loc = s.origin.where() if s.origin is not None else "policy" if s.rule is None else ""
                rule = f"  {s.rule.text}" if s.rule is not None else ""
                note = f"  ({s.note})" if s.note else ""
                console.print(
                    Text(
                        printable(
                            f"    {s.packet:<7} {s.hook:<11} {s.family} {s.table} {s.chain}: "
                            f"{s.verdict}  {loc}{rule}{note}"
                        ),
                        style="dim",
                    ),
                    soft_wrap=True,
                )
    return captured(console)

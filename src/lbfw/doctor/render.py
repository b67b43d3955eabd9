"""doctor's report as text (problems first, each with why and fix; passed checks one line each) and
as JSON (every item, for fleets to aggregate). Pure: items in, a string out."""

from __future__ import annotations

import json

from .items import RANK, SEVERITIES, counts

JSON_VERSION = 1
_STYLE = {"error": "\x1b[1;31m", "warning": "\x1b[33m", "note": "\x1b[36m", "ok": "\x1b[32m", "skipped": "\x1b[2m"}
_RESET = "\x1b[0m"


def ordered(items) -> list:
    """Worst first; within a severity, by check id, in the order the checks made them."""
    return sorted(items, key=lambda i: (-RANK[i.severity], i.severity == "skipped", i.id))


def render_json(items, context: dict) -> str:
    """``context``: platform, root, plan, user ... (printed as given)."""
    doc = {"version": JSON_VERSION, **context, "summary": counts(items), "items": [i.to_json() for i in ordered(items)]}
    return json.dumps(doc, indent=2) + "\n"


def _paint(text: str, severity: str, color: bool) -> str:
    return f"{_STYLE[severity]}{text}{_RESET}" if color else text


def render_text(items, context: dict, color: bool = False) -> str:
    """The report people read: a header, the problems with why and fix, the passed checks, a summary."""
    head = [f"lbfw doctor: {context.get('platform')}"]
    if context.get("plan"):
        head.append(f"plan {context['plan']} ({context.get('flows', 0)} flows)")
    if context.get("user"):
        head.append(f"user {context['user']['name']} (uid {context['user']['uid']})")
    if not context.get("root"):
        head.append("not root: checks that need root are skipped")
    out = [", ".join(head), ""]
    width = max(len(s) for s in SEVERITIES)
    for item in ordered(items):
        label = _paint(item.severity.ljust(width), item.severity, color)
        out.append(f"{label}  {item.id} {item.check.name}  {item.subject}: {item.message}")
        if item.severity in ("ok", "skipped"):
            continue
        if item.why:
            out.append(f"{'':{width}}  why: {item.why}")
        for n, line in enumerate(item.fix):
            out.append(f"{'':{width}}  {'fix: ' if n == 0 else '     '}{line}")
    c = counts(items)
    summary = ", ".join(f"{c[s]} {s}" for s in SEVERITIES if c[s])
    out += ["", summary or "nothing checked"]
    return "\n".join(out) + "\n"

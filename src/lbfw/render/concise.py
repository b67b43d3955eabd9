"""`--format concise`: one line a finding, `PATH:LINE:COL: CODE message`, as ruff's concise and
shellcheck's gcc formats print them (editors and `grep` read it); live findings name the
table, chain and rule instead of a path."""

from __future__ import annotations

from .common import brief_message, position, printable


def render(findings, results=(), any_port=None) -> str:
    """One line per finding, in the findings' order; the flows in brief, never wrapped."""
    return "".join(
        f"{printable(position(f))}: {f.check} {printable(brief_message(f, results, any_port))}\n" for f in findings
    )

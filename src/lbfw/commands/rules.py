"""`lbfw rules [CHECK]`: list the checks, or print one check's documentation."""

from __future__ import annotations

import json

from ..errors import UsageError
from ._common import choose, write_output

FORMATS = ("text", "json", "markdown")


def _json(check) -> dict:
    return {
        "id": check.ID,
        "name": check.NAME,
        "severity": check.SEVERITY,
        "summary": check.SUMMARY,
        "fix": check.FIX.to_json(),
        "doc": check.DOC,
    }


def run(check_id=None, format: str = "text") -> int:
    choose("--format", format, FORMATS)
    from ..checks import ALL, get
    from ..checks.docs import check_markdown, fix_line, render

    if check_id is None:
        if format == "json":
            text = json.dumps({"checks": [_json(c) for c in ALL]}, indent=2) + "\n"
        elif format == "markdown":
            text = render()
        else:
            width = max(len(c.NAME) for c in ALL)
            text = "".join(
                f"{c.ID}  {c.NAME:<{width}}  {c.SEVERITY:<7}  fix: {c.FIX.availability:<9}  {c.SUMMARY}\n" for c in ALL
            )
            text += "\n`lbfw rules ID` prints one check's documentation.\n"
        write_output(text, None)
        return 0

    check = get(check_id)
    if check is None:
        known = ", ".join(c.ID for c in ALL)
        raise UsageError(f"no check named {check_id!r} (known: {known})")
    if format == "json":
        text = json.dumps(_json(check), indent=2) + "\n"
    elif format == "markdown":
        text = check_markdown(check, level=1)
    else:
        text = (
            f"{check.ID} {check.NAME} ({check.SEVERITY}): {check.SUMMARY}\n{fix_line(check)}\n\n{check.DOC.rstrip()}\n"
        )
    write_output(text, None)
    return 0

"""`lbfw report DIR|FILE...`: merge per-host audit (and doctor) JSON into one fleet report.

Exit 0 when no host has a finding at or above --fail-on and every host was audited, 1 otherwise
(a host not audited is not a clean one; `--fail-on never` always exits 0), 2 on bad input.
"""

from __future__ import annotations

from typing import Optional

from ..errors import UsageError
from ._common import FAIL_ON, choose, write_output

FORMATS = ("text", "json", "sarif", "html")


def run(paths=(), format: str = "text", fail_on: str = "warning", output: Optional[str] = None) -> int:
    choose("--format", format, FORMATS)
    choose("--fail-on", fail_on, FAIL_ON)
    if not paths:
        raise UsageError("name a directory of per-host JSON files, or the files (e.g. `lbfw report reports/`)")
    from ..fleet.load import read_reports
    from ..fleet.merge import fails, merge

    fleet = merge(read_reports(list(paths)))
    if not fleet.hosts:
        raise UsageError(f"no host report found in {', '.join(paths)} (looked for *.json)")
    if format == "json":
        from ..render.fleet_json import render
    elif format == "sarif":
        from ..render.fleet_sarif import render
    elif format == "html":
        from ..render.fleet_html import render
    else:
        from ..render.fleet_text import render
    write_output(render(fleet), output)
    return 1 if fails(fleet, fail_on) else 0

"""`lbfw report --format html`: one self-contained page (inline CSS, no script, no request to
anywhere: a Content-Security-Policy forbids it) with a host x check matrix, the offending rules,
the flows not delivered and the owning managers. Every value from the hosts' files is escaped."""

from __future__ import annotations

from html import escape

from .. import __version__ as _version
from ..fleet.merge import CLEAN, NOT_AUDITED
from .common import plural

_RANK = {"error": 0, "warning": 1, "note": 2}
CSS = """
:root { color-scheme: light; --err: #c62828; --warn: #ef8f00; --note: #1565c0; --ok: #2e7d32; --na: #6d6d6d; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px; color: #1d1d1f; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #555; margin-bottom: 16px; }
.tiles { display: flex; gap: 12px; flex-wrap: wrap; }
.tile { border: 1px solid #ddd; border-radius: 8px; padding: 10px 16px; min-width: 110px; }
.tile b { display: block; font-size: 24px; }
table { border-collapse: collapse; margin-top: 4px; }
th, td { border: 1px solid #e0e0e0; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f5f5f7; font-weight: 600; }
td.n { text-align: center; min-width: 48px; font-weight: 600; }
.error { background: #fde3e3; color: var(--err); } .warning { background: #fff1d6; color: #a15c00; }
.note { background: #e3eefc; color: var(--note); } .zero { color: #bbb; }
.st-clean { color: var(--ok); font-weight: 600; } .st-findings { color: var(--err); font-weight: 600; }
.st-na { color: var(--na); font-weight: 600; } tr.na td { background: #f7f7f7; color: var(--na); }
code { font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace; background: #f5f5f7; padding: 1px 4px;
       border-radius: 3px; white-space: pre-wrap; overflow-wrap: anywhere; }
.hosts { color: #555; font-size: 12.5px; } .msg { color: #444; font-size: 12.5px; max-width: 640px; }
footer { margin-top: 32px; color: #888; font-size: 12px; }
"""


def _e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def _worst(findings, check: str):
    levels = [f.get("severity") for f in findings if f.get("check") == check]
    return min(levels, key=lambda s: _RANK.get(s, 9)) if levels else None


def _hosts(names, limit: int = 8) -> str:
    shown = ", ".join(_e(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _matrix(fleet, checks) -> list:
    head = "".join(f'<th title="{_e(c.SUMMARY)}">{_e(c.ID)}</th>' for c in checks)
    doctor = any(h.doctor for h in fleet.hosts)
    out = [
        '<table id="matrix"><tr><th>host</th><th>status</th>'
        + head
        + ("<th>doctor</th>" if doctor else "")
        + "<th>backends</th><th>rules</th><th>lbfw</th></tr>"
    ]
    for h in fleet.hosts:
        if h.status == NOT_AUDITED:
            span = len(checks) + (1 if doctor else 0) + 3
            out.append(
                f'<tr class="na" data-host="{_e(h.host)}"><th>{_e(h.host)}</th>'
                f'<td class="st-na">not audited</td><td colspan="{span}">{_e(h.reason)}</td></tr>'
            )
            continue
        status = "st-clean" if h.status == CLEAN else "st-findings"
        cells = []
        for c in checks:
            n = h.checks.get(c.ID, 0)
            worst = _worst(h.findings, c.ID)
            cells.append(
                f'<td class="n {worst}" title="{_e(c.ID)} on {_e(h.host)}">{n}</td>'
                if n
                else '<td class="n zero">&middot;</td>'
            )
        if doctor:
            problems = [i for i in h.doctor if i.get("severity") in _RANK]
            worst = min((i["severity"] for i in problems), key=_RANK.__getitem__) if problems else None
            cells.append(
                f'<td class="n {worst}">{len(problems)}</td>' if problems else '<td class="n zero">&middot;</td>'
            )
        out.append(
            f'<tr data-host="{_e(h.host)}"><th>{_e(h.host)}</th><td class="{status}">{_e(h.status)}</td>'
            + "".join(cells)
            + f"<td>{_e(', '.join(h.backends) or 'no tables')}</td>"
            f"<td>{h.rules}</td><td>{_e(h.lbfw_version)}</td></tr>"
        )
    out.append("</table>")
    return out


def _rules(fleet) -> list:
    if not fleet.rules:
        return []
    out = [
        "<h2>Offending rules</h2>",
        '<table id="rules"><tr><th>hosts</th><th>check</th><th>where</th><th>rule</th><th>what breaks</th></tr>',
    ]
    for g in fleet.rules:
        where = " ".join(_e(x) for x in (g.backend, g.family, g.table, g.chain) if x) or "host"
        if g.owner:
            where += f"<br>managed by {_e(g.owner)}"
        rule = f"<code>{_e(g.rule)}</code>" if g.rule is not None else "<i>(chain policy)</i>"
        out.append(
            f'<tr><td class="n">{len(g.hosts)}<div class="hosts">{_hosts(g.hosts)}</div></td>'
            f'<td class="{_e(g.severity)}">{_e(g.check)} {_e(g.severity)}</td><td>{where}</td>'
            f'<td>{rule}</td><td class="msg">{_e(g.message)}</td></tr>'
        )
    out.append("</table>")
    return out


def _flows(fleet) -> list:
    if not fleet.flows:
        return []
    out = [
        "<h2>Loopback flows not delivered</h2>",
        '<table id="flows"><tr><th>flow</th><th>verdict</th><th>hosts</th></tr>',
    ]
    for g in fleet.flows:
        out.append(
            f"<tr><td><code>{_e(g.label())}</code></td><td>{_e(g.verdict)}</td>"
            f'<td>{len(g.hosts)} <span class="hosts">{_hosts(g.hosts)}</span></td></tr>'
        )
    out.append("</table>")
    return out


def _owners(fleet) -> list:
    if not fleet.owners:
        return []
    out = ["<h2>By owning manager</h2>", '<table id="owners"><tr><th>manager</th><th>findings</th><th>hosts</th></tr>']
    for o in fleet.owners:
        name = _e(o.owner) if o.owner else "<i>none: fix the rules themselves</i>"
        out.append(f"<tr><td>{name}</td><td>{o.findings}</td><td>{len(o.hosts)}</td></tr>")
    out.append("</table>")
    return out


def _doctor(fleet) -> list:
    if not fleet.doctor:
        return []
    out = [
        "<h2>Doctor</h2>",
        '<table id="doctor"><tr><th>item</th><th>severity</th><th>hosts</th><th>message</th></tr>',
    ]
    for g in fleet.doctor:
        out.append(
            f'<tr><td>{_e(g.id)} {_e(g.name)}</td><td class="{_e(g.severity)}">{_e(g.severity)}</td>'
            f'<td>{len(g.hosts)} <span class="hosts">{_hosts(g.hosts)}</span></td>'
            f'<td class="msg">{_e(g.message)}</td></tr>'
        )
    out.append("</table>")
    return out


def render(fleet, checks=None) -> str:
    """The page, as one string."""
    if checks is None:
        from ..checks import ALL as checks
    s = fleet.summary
    tiles = [
        ("hosts", s["hosts"]),
        ("clean", s["clean"]),
        ("with findings", s["findings"]),
        ("not audited", s["not_audited"]),
        ("errors", s["error"]),
        ("warnings", s["warning"]),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>lbfw fleet report: {plural(s['hosts'], 'host')}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Loopback firewall audit: fleet report</h1>",
        f'<div class="sub">{plural(s["hosts"], "host")}: {s["clean"]} clean, {s["findings"]} with findings, '
        f"{s['not_audited']} not audited</div>",
        '<div class="tiles">'
        + "".join(f'<div class="tile" id="tile-{_e(k.replace(" ", "-"))}"><b>{v}</b>{_e(k)}</div>' for k, v in tiles)
        + "</div>",
        "<h2>Hosts and checks</h2>",
    ]
    parts += _matrix(fleet, checks) + _rules(fleet) + _flows(fleet) + _owners(fleet) + _doctor(fleet)
    parts.append(
        f"<footer>lbfw {_e(_version)} &middot; <code>lbfw report --format html</code> &middot; "
        "each finding is explained by <code>lbfw rules ID</code></footer></body></html>"
    )
    return "\n".join(parts) + "\n"

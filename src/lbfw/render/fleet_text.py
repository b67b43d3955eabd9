"""`lbfw report` as text for people: hosts, then what the fleet has in common. Plain text, no
colour, lines never wrapped (it is written to fleet.txt as often as it is read on a terminal)."""

from __future__ import annotations

from ..fleet.merge import NOT_AUDITED
from .common import plural

TOP = 20  # offending rules and blocked flows listed; --format json has them all
HOSTS_NAMED = 5


def _hosts(names) -> str:
    shown = ", ".join(names[:HOSTS_NAMED])
    return shown + (f" and {len(names) - HOSTS_NAMED} more" if len(names) > HOSTS_NAMED else "")


def _severities(summary: dict) -> str:
    return ", ".join(plural(n, s) for s, n in summary.items() if n)


def _where(g) -> str:
    parts = [x for x in (g.backend, g.family, g.table, g.chain) if x]
    return " ".join(parts) or "host"


def render(fleet) -> str:
    """The whole report as one string."""
    s = fleet.summary
    out = [
        f"lbfw fleet report: {plural(s['hosts'], 'host')}: {s['clean']} clean, {s['findings']} with findings, "
        f"{s['not_audited']} not audited"
    ]
    width = max(len(h.host) for h in fleet.hosts)
    out += ["", "Hosts"]
    for h in fleet.hosts:
        if h.status == NOT_AUDITED:
            out.append(f"  {h.host:<{width}}  not audited: {h.reason}")
            continue
        status = h.status if not _severities(h.summary) else f"{h.status} ({_severities(h.summary)})"
        backends = ", ".join(h.backends) or "no tables"
        checks = " ".join(f"{c}x{n}" if n > 1 else c for c, n in h.checks.items())
        line = f"  {h.host:<{width}}  {status}  lbfw {h.lbfw_version or '?'}  {backends}  {plural(h.rules, 'rule')}"
        out.append(line + (f"  {checks}" if checks else ""))
    if fleet.checks:
        out += ["", "Findings by check"]
        for c in fleet.checks:
            out.append(f"  {c.check}  {_severities(c.severities)} on {plural(len(c.hosts), 'host')}")
    if fleet.rules:
        out += ["", "Top offending rules (check, where, rule: hosts)"]
        for g in fleet.rules[:TOP]:
            rule = g.rule if g.rule is not None else "(policy)"
            owner = f" (managed by {g.owner})" if g.owner else ""
            out.append(f"  {plural(len(g.hosts), 'host'):>9}  {g.check} {g.severity}  {_where(g)}{owner}: {rule}")
            out.append(f"             {_hosts(g.hosts)}")
        if len(fleet.rules) > TOP:
            out.append(f"  ... {len(fleet.rules) - TOP} more (see --format json)")
    if fleet.owners:
        out += ["", "By owning manager"]
        for o in fleet.owners:
            name = o.owner or "no manager (edit the rules themselves)"
            out.append(f"  {name}: {plural(o.findings, 'finding')} on {plural(len(o.hosts), 'host')}")
    if fleet.flows:
        out += ["", "Loopback flows not delivered"]
        for g in fleet.flows[:TOP]:
            out.append(f"  {g.label()} {g.verdict} on {plural(len(g.hosts), 'host')} ({_hosts(g.hosts)})")
        if len(fleet.flows) > TOP:
            out.append(f"  ... {len(fleet.flows) - TOP} more (see --format json)")
    if fleet.doctor:
        out += ["", "Doctor"]
        for g in fleet.doctor:
            out.append(
                f"  {g.id} {g.name} {g.severity} on {plural(len(g.hosts), 'host')} ({_hosts(g.hosts)}): {g.message}"
            )
    return "\n".join(out) + "\n"

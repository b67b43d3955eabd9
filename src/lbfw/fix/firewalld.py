"""firewalld's part of `lbfw fix` on the live host: the planner refuses a kernel rule that a direct
rule, passthrough or zone rich rule of /etc/firewalld put there (firewalld would put it back on its
next reload); it becomes a ManagerChange (fix/managed.py) instead: `firewall-cmd --permanent`
commands, then `firewall-cmd --reload`, which `--apply` runs inside its transaction with direct.xml
or the zone file (and firewalld's FILE.old) in the backup: a revert puts them back and reloads firewalld.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..checks.owners import FIREWALLD
from ..managers import firewalld
from ..results import Finding
from .managed import ManagerChange
from .plan import Refusal


def firewalld_changes(
    refusals: Sequence[Refusal], findings: Sequence[Finding], style: str = "interface"
) -> dict[Refusal, ManagerChange]:
    """{Refusal: ManagerChange} for the refusals of rules whose finding names the firewalld entry
    behind them (``extra["firewalld"]``, set by the checks from the host's /etc/firewalld)."""
    out: dict[Refusal, ManagerChange] = {}
    for refusal in refusals:
        if refusal.owner != FIREWALLD:
            continue
        finding = next((f for f in findings if _refused(refusal, f)), None)
        if finding is None:
            continue
        entry = finding.extra["firewalld"]
        change = firewalld.replacement(entry, style)
        if change is None:
            continue
        why = f"{refusal.where}: {refusal.check}: {change.where}"
        # firewalld keeps the previous text as FILE.old: in the backup too, so a revert leaves /etc/firewalld as it was
        files = (entry.path, entry.path + ".old")
        out[refusal] = ManagerChange(FIREWALLD, files, (*change.commands, firewalld.RELOAD), (), why)
    return out


def _refused(refusal: Refusal, finding: Finding) -> bool:
    """Whether ``refusal`` is the planner's for ``finding`` (same check, rule and place)."""
    rule = finding.rule
    if rule is None or "firewalld" not in finding.extra or finding.check != refusal.check:
        return False
    if rule.text != refusal.rule or rule.origin is None:
        return False
    where = rule.origin.where()
    return refusal.where == where or refusal.where.startswith(where + " ")

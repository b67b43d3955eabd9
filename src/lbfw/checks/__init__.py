"""The checks: one module per check, each with ID, NAME, SEVERITY, SUMMARY, FIX (checks/fixes.py),
DOC and check(ctx).

`run_checks(ruleset, engine, results)` runs them all over a ruleset and the engine's flow
results, drops what the rules suppress (``lbfw: ignore LB002``), and returns the findings
in a stable order. Pure: nothing here reads or changes the system.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Optional

from ..managers import firewalld
from ..model import Ruleset
from ..results import BLOCKED, SEVERITIES, Finding, Flow, FlowResult
from ..suppression import ignored_ids, suppresses
from . import (
    lb001_blocked,
    lb002_narrow_accept,
    lb003_narrow_antispoof,
    lb004_ipv6_blocked,
    lb005_route_localnet,
    lb006_lo_without_127_8,
    lb007_loopback_diverted,
    lb008_fail2ban_ignoreip,
    owners,
)
from .context import Check, CheckContext
from .owners import FIREWALLD
from .owners import advice as owner_advice

if TYPE_CHECKING:
    from ..analyze.engine import Engine

ALL: tuple[Check, ...] = (
    lb001_blocked,
    lb002_narrow_accept,
    lb003_narrow_antispoof,
    lb004_ipv6_blocked,
    lb005_route_localnet,
    lb006_lo_without_127_8,
    lb007_loopback_diverted,
    lb008_fail2ban_ignoreip,
)
BY_ID = {c.ID: c for c in ALL}

# (source, family, table, chain) of a chain whose policy carries `lbfw: ignore`
_PolicyKey = tuple[Optional[str], Optional[str], Optional[str], Optional[str]]

SEVERITY_RANK = {"error": 3, "warning": 2, "note": 1}


def get(check_id: str) -> Optional[Check]:
    """The check module for ``check_id`` (case-insensitive), or None."""
    return BY_ID.get(check_id.upper())


def _policy_ignores(ruleset: Ruleset) -> dict[_PolicyKey, frozenset[str]]:
    """(source, family, table, chain) -> the ids suppressed for that chain's policy."""
    out: dict[_PolicyKey, frozenset[str]] = {}
    for table in ruleset.tables:
        for chain in table.chains.values():
            if chain.policy_ignore:
                source = chain.origin.source if chain.origin is not None else table.source
                out[(source, table.family, table.name, chain.name)] = chain.policy_ignore
    return out


def _suppressed(finding: Finding, policy_ignores: Mapping[_PolicyKey, frozenset[str]]) -> bool:
    rule = finding.rule
    if rule is None:
        key = (finding.source, finding.family, finding.table, finding.chain)
        return finding.chain is not None and suppresses(policy_ignores.get(key, frozenset()), finding.check)
    ignore = frozenset(i.upper() for i in (rule.ignore or ())) | ignored_ids(rule.comment)
    return suppresses(ignore, finding.check)


def _sort_key(f: Finding) -> tuple[str, int, str, str, int, int, str]:
    return (
        f.source or "",
        f.line if f.line is not None else -1,
        f.table or "",
        f.chain or "",
        f.handle if f.handle is not None else -1,
        f.index if f.index is not None else -1,
        f.check,
    )


def run_checks(
    ruleset: Ruleset,
    engine: Optional[Engine] = None,
    results: Optional[Iterable[FlowResult]] = None,
    select: Optional[Collection[str]] = None,
) -> list[Finding]:
    """Run every check (or those in ``select``) and return the findings that are not suppressed."""
    ctx = CheckContext(ruleset=ruleset, engine=engine, results=list(results or []))
    findings: list[Finding] = []
    policy_ignores = _policy_ignores(ruleset)
    for chk in ALL:
        if select and chk.ID not in select:
            continue
        for finding in chk.check(ctx):
            if finding.severity not in SEVERITIES:
                raise ValueError(f"{chk.ID} produced severity {finding.severity!r}")
            if not _suppressed(finding, policy_ignores):
                findings.append(finding)
    owners.locate(findings, ruleset.host)
    if ruleset.host is not None and ruleset.host.firewalld_files:
        _firewalld_owned(findings, ruleset.host.firewalld_files)
    findings.sort(key=_sort_key)
    return findings


def _firewalld_owned(findings: list[Finding], files: Mapping[str, str]) -> None:
    """A finding on a kernel rule that a direct rule, passthrough or rich rule of /etc/firewalld
    put there is firewalld's: its message names that file:line and the `firewall-cmd` commands
    that replace a narrow one (in place of the general firewalld advice); ``extra["firewalld"]``
    holds the entry for `lbfw fix`."""
    config = firewalld.parse(dict(files))
    for finding in findings:
        if finding.rule is None:
            continue
        entry = firewalld.entry_for(config, finding.family, finding.table, finding.chain, finding.rule)
        if entry is None:
            continue
        specific = owner_advice(FIREWALLD, firewalld.how(entry))
        general = owner_advice(FIREWALLD)
        if finding.owner == FIREWALLD and finding.message.endswith(general):
            finding.message = finding.message[: -len(general)] + specific
        else:
            finding.message += " " + specific
        finding.owner = FIREWALLD
        finding.extra["firewalld"] = entry


def escalate_verified(findings: list[Finding], verified: Mapping[Flow, str]) -> list[Finding]:
    """After --verify: a finding whose flows lbfw could not decide (extra["unknown_flows"]) becomes an
    error when real traffic saw one of them blocked; its message says which. ``verified``: flow ->
    observed verdict."""
    for finding in findings:
        seen = [flow for flow in finding.extra.get("unknown_flows", ()) if verified.get(flow) == BLOCKED]
        if seen:
            finding.severity = "error"
            labels = ", ".join(flow.label() for flow in seen[:4])
            more = f" and {len(seen) - 4} more" if len(seen) > 4 else ""
            finding.message += f" --verify saw them blocked by the kernel: {labels}{more}."
    return findings


def at_or_above(findings: Iterable[Finding], threshold: str) -> bool:
    """True when a finding's severity is at or above ``threshold`` (error | warning | note | never)."""
    if threshold == "never":
        return False
    rank = SEVERITY_RANK[threshold]
    return any(SEVERITY_RANK[f.severity] >= rank for f in findings)

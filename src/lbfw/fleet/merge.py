"""Pure: per-host reports in, one fleet out (statuses, counts, groups across hosts).

Everything here works on the parsed JSON documents (dicts), never on the files or the kernel,
so a fleet of 1,000 hosts merges in memory in well under a second.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from ..results import SEVERITIES
from .load import HostReport

CLEAN = "clean"
FINDINGS = "findings"
NOT_AUDITED = "not audited"
STATUSES = (CLEAN, FINDINGS, NOT_AUDITED)
_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # error 0, warning 1, note 2


@dataclass
class HostStatus:
    """One host's line in the fleet report."""

    host: str
    status: str  # clean | findings | not audited
    reason: Optional[str] = None  # why not audited
    lbfw_version: Optional[str] = None
    backends: list = field(default_factory=list)  # those holding tables: legacy, iptables-nft, nftables, formats
    tables: int = 0
    rules: int = 0
    summary: dict = field(default_factory=dict)  # severity -> findings
    checks: dict = field(default_factory=dict)  # check id -> findings
    findings: list = field(default_factory=list)  # the audit's FINDING objects
    blocked: list = field(default_factory=list)  # the audit's FLOW objects not delivered
    doctor: list = field(default_factory=list)  # doctor items
    files: list = field(default_factory=list)


@dataclass
class RuleGroup:
    """One offending rule (or policy) and the hosts that have it, same check, backend, table, chain, text."""

    check: str
    severity: str
    backend: Optional[str]
    family: Optional[str]
    table: Optional[str]
    chain: Optional[str]
    rule: Optional[str]  # None: the chain's policy, or a host fact
    owner: Optional[str]
    message: str  # the first host's message (they differ only in details)
    hosts: list = field(default_factory=list)


@dataclass
class FlowGroup:
    """A loopback flow not delivered on some hosts."""

    proto: str
    client: Optional[str]
    server: str
    port: int
    verdict: str  # blocked | unknown
    hosts: list = field(default_factory=list)

    def label(self) -> str:
        client = self.client or ("::1" if ":" in self.server else "127.0.0.1") + " (default source)"
        server = f"[{self.server}]" if ":" in self.server else self.server
        return f"{self.proto} {client} -> {server}:{self.port}"


@dataclass
class CheckCount:
    check: str
    severities: dict  # severity -> findings
    findings: int
    hosts: list


@dataclass
class OwnerCount:
    owner: Optional[str]  # None: no manager owns the rule
    findings: int
    hosts: list


@dataclass
class DoctorGroup:
    id: str  # doctor's check id (DR040)
    name: str  # and its name (fail2ban-ignoreip-narrow)
    severity: str
    message: str
    hosts: list


@dataclass
class Fleet:
    hosts: list  # HostStatus, by name
    checks: list  # CheckCount, by check id
    rules: list  # RuleGroup, most hosts first
    owners: list  # OwnerCount, most findings first
    flows: list  # FlowGroup, most hosts first
    doctor: list  # DoctorGroup with a problem (error, warning, note), most hosts first
    summary: dict  # hosts, clean, findings, not_audited, and findings per severity

    def host(self, name: str) -> HostStatus:
        return next(h for h in self.hosts if h.host == name)


def _backends(audit: dict) -> tuple:
    names, tables, rules = [], 0, 0
    for source in audit.get("sources") or ():
        if not isinstance(source, dict):
            continue
        n_tables, n_rules = int(source.get("tables") or 0), int(source.get("rules") or 0)
        tables, rules = tables + n_tables, rules + n_rules
        name = str(source.get("source") or "")
        backend = name[5:] if name.startswith("live:") else str(source.get("format") or name)
        if n_tables and backend not in names:
            names.append(backend)
    return names, tables, rules


def doctor_problems(items) -> list:
    """The doctor items at error, warning or note (ok and skipped are not problems)."""
    return [i for i in items if i.get("severity") in _RANK]


def host_status(report: HostReport) -> HostStatus:
    """Status, version, backends, counts of one host from its documents."""
    status = HostStatus(host=report.host, status=NOT_AUDITED, doctor=list(report.doctor), files=list(report.files))
    audit = report.audit
    if audit is None:
        status.reason = report.not_audited or "no audit document (doctor results only)"
        return status
    tool = audit.get("tool") or {}
    status.lbfw_version = tool.get("version")
    status.backends, status.tables, status.rules = _backends(audit)
    status.findings = [f for f in audit.get("findings") or () if isinstance(f, dict)]
    severities = Counter(f.get("severity") for f in status.findings)
    status.summary = {s: severities.get(s, 0) for s in SEVERITIES}
    status.checks = dict(sorted(Counter(str(f.get("check")) for f in status.findings).items()))
    status.blocked = [
        fl for fl in audit.get("flows") or () if isinstance(fl, dict) and fl.get("verdict") not in (None, "delivered")
    ]
    problems = [i for i in doctor_problems(report.doctor) if i["severity"] != "note"]
    status.status = FINDINGS if (status.findings or problems) else CLEAN
    return status


def _rule_groups(hosts) -> list:
    groups: dict = {}
    for h in hosts:
        for f in h.findings:
            key = (f.get("check"), f.get("backend"), f.get("family"), f.get("table"), f.get("chain"), f.get("rule"))
            group = groups.get(key)
            if group is None:
                group = groups[key] = RuleGroup(
                    check=str(f.get("check")),
                    severity=str(f.get("severity")),
                    backend=f.get("backend"),
                    family=f.get("family"),
                    table=f.get("table"),
                    chain=f.get("chain"),
                    rule=f.get("rule"),
                    owner=f.get("owner"),
                    message=str(f.get("message") or ""),
                )
            if h.host not in group.hosts:
                group.hosts.append(h.host)
    return sorted(
        groups.values(),
        key=lambda g: (
            -len(g.hosts),
            _RANK.get(g.severity, 9),
            g.check,
            str(g.backend),
            str(g.table),
            str(g.chain),
            str(g.rule),
        ),
    )


def _flow_groups(hosts) -> list:
    groups: dict = {}
    for h in hosts:
        for fl in h.blocked:
            key = (fl.get("proto"), fl.get("client"), fl.get("server"), fl.get("port"), fl.get("verdict"))
            group = groups.setdefault(key, FlowGroup(*key))
            if h.host not in group.hosts:
                group.hosts.append(h.host)
    return sorted(
        groups.values(),
        key=lambda g: (-len(g.hosts), g.verdict, str(g.server), g.port or 0, str(g.client), str(g.proto)),
    )


def _check_counts(hosts) -> list:
    severities: dict = {}
    on: dict = {}
    for h in hosts:
        for f in h.findings:
            check = str(f.get("check"))
            severities.setdefault(check, Counter())[f.get("severity")] += 1
            on.setdefault(check, [])
            if h.host not in on[check]:
                on[check].append(h.host)
    return [
        CheckCount(
            check=c,
            severities={s: severities[c].get(s, 0) for s in SEVERITIES},
            findings=sum(severities[c].values()),
            hosts=on[c],
        )
        for c in sorted(severities)
    ]


def _owner_counts(hosts) -> list:
    findings: Counter = Counter()
    on: dict = {}
    for h in hosts:
        for f in h.findings:
            owner = f.get("owner")
            findings[owner] += 1
            on.setdefault(owner, [])
            if h.host not in on[owner]:
                on[owner].append(h.host)
    return sorted(
        (OwnerCount(owner=o, findings=n, hosts=on[o]) for o, n in findings.items()),
        key=lambda o: (-o.findings, o.owner is None, str(o.owner)),
    )


def _doctor_groups(hosts) -> list:
    groups: dict = {}
    for h in hosts:
        for item in doctor_problems(h.doctor):
            key = (item["id"], item["severity"])
            group = groups.setdefault(
                key,
                DoctorGroup(
                    id=item["id"],
                    name=str(item.get("name") or ""),
                    severity=item["severity"],
                    message=str(item.get("message") or ""),
                    hosts=[],
                ),
            )
            if h.host not in group.hosts:
                group.hosts.append(h.host)
    return sorted(groups.values(), key=lambda g: (-len(g.hosts), _RANK[g.severity], g.id))


def merge(reports) -> Fleet:
    """The fleet report for these hosts (``lbfw.fleet.load.read_reports`` reads them)."""
    hosts = [host_status(r) for r in sorted(reports, key=lambda r: r.host)]
    statuses = Counter(h.status for h in hosts)
    severities: Counter = Counter()
    for h in hosts:
        severities.update(h.summary)
    summary = {
        "hosts": len(hosts),
        "clean": statuses[CLEAN],
        "findings": statuses[FINDINGS],
        "not_audited": statuses[NOT_AUDITED],
    }
    summary.update({s: severities.get(s, 0) for s in SEVERITIES})
    return Fleet(
        hosts=hosts,
        checks=_check_counts(hosts),
        rules=_rule_groups(hosts),
        owners=_owner_counts(hosts),
        flows=_flow_groups(hosts),
        doctor=_doctor_groups(hosts),
        summary=summary,
    )


def fails(fleet: Fleet, fail_on: str) -> bool:
    """True when `lbfw report --fail-on` should exit 1: a finding or doctor problem at or above
    ``fail_on``, or a host not audited (an unknown host is not a clean one); never with "never"."""
    if fail_on == "never":
        return False
    limit = _RANK[fail_on]
    if fleet.summary["not_audited"]:
        return True
    for h in fleet.hosts:
        if any(_RANK.get(f.get("severity"), 9) <= limit for f in h.findings):
            return True
        if any(_RANK[i["severity"]] <= limit for i in doctor_problems(h.doctor)):
            return True
    return False

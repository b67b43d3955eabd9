"""Shared result types between the engine, the checks, the fixer and the renderers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .model import Origin, Rule

DELIVERED = "delivered"
BLOCKED = "blocked"
UNKNOWN = "unknown"
VERDICTS = (DELIVERED, BLOCKED, UNKNOWN)

SEVERITIES = ("error", "warning", "note")


@dataclass(frozen=True, slots=True)
class Flow:
    """A loopback connection: ``client`` None means the kernel's default source
    (127.0.0.1 for any 127/8 server, ::1 for ::1)."""

    proto: str            # "tcp" | "udp"
    server: str
    port: int
    client: Optional[str] = None

    def label(self) -> str:
        client = self.client or "default"
        server = f"[{self.server}]" if ":" in self.server else self.server
        return f"{self.proto} {client} -> {server}:{self.port}"

    def to_json(self) -> dict:
        return {"proto": self.proto, "client": self.client, "server": self.server, "port": self.port}


@dataclass(frozen=True, slots=True)
class Step:
    """One decision on a packet's path, for --explain and for findings."""

    # "request" | "reply" | "ack" (client's ESTABLISHED in original direction); "answer" (TCP: the
    # server's data after the handshake)
    packet: str
    hook: str
    table: str
    family: str
    chain: str
    verdict: str          # accept | drop | reject | policy-accept | policy-drop | unknown | jump ...
    rule: Optional[Rule] = None
    origin: Optional[Origin] = None
    note: str = ""


@dataclass(slots=True)
class FlowResult:
    """The engine's answer for one flow."""

    flow: Flow
    verdict: str                                 # DELIVERED | BLOCKED | UNKNOWN
    steps: list = field(default_factory=list)    # list[Step]: the path, in order
    deciding: Optional[Step] = None              # the rule or policy that blocked, if blocked
    unknown: tuple = ()                          # texts of the matches/targets that could not be decided
    client_addr: Optional[str] = None            # the source address the kernel uses

    def to_json(self) -> dict:
        data = self.flow.to_json()
        data["verdict"] = self.verdict
        if self.deciding is not None:
            o = self.deciding.origin
            data["decided_by"] = {
                "hook": self.deciding.hook, "table": self.deciding.table, "chain": self.deciding.chain,
                "verdict": self.deciding.verdict,
                "rule": self.deciding.rule.text if self.deciding.rule is not None else None,
                "where": o.where() if o is not None else None,
            }
        else:
            data["decided_by"] = None
        data["unknown"] = list(self.unknown)
        return data


@dataclass(slots=True)
class Finding:
    """One thing a check reports. JSON shape (docs/output.md):
    {"check", "severity", "source", "line", "table", "chain", "handle", "rule", "message", "flows"}."""

    check: str
    severity: str
    message: str
    source: Optional[str] = None
    line: Optional[int] = None
    table: Optional[str] = None
    chain: Optional[str] = None
    handle: Optional[int] = None
    index: Optional[int] = None
    rule: Optional[Rule] = None
    flows: list = field(default_factory=list)    # list[Flow]
    owner: Optional[str] = None                  # docker | kube-proxy | ufw | firewalld | fail2ban | fw4
    family: Optional[str] = None
    backend: Optional[str] = None
    extra: dict = field(default_factory=dict)
    # Why the check judges the rule a deliberate policy (an owner match), not a mistake: the fixer
    # leaves such a rule alone. None for an ordinary finding. Not in the JSON (the message says it).
    deliberate: Optional[str] = None

    def to_json(self) -> dict:
        return {
            "check": self.check,
            "severity": self.severity,
            "source": self.source,
            "line": self.line,
            "table": self.table,
            "chain": self.chain,
            "handle": self.handle,
            "index": self.index,
            "rule": self.rule.text if self.rule is not None else None,
            "message": self.message,
            "owner": self.owner,
            "flows": [f.to_json() for f in self.flows],
        }

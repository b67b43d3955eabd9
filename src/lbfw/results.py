"""Shared result types between the engine, the checks, the fixer and the renderers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .model import Origin, Rule

DELIVERED = "delivered"
BLOCKED = "blocked"
UNKNOWN = "unknown"
# destination NAT (DNAT, REDIRECT, nft dnat/redirect) sent the flow to another address or port:
# its server never sees a packet
REDIRECTED = "redirected"
VERDICTS = (DELIVERED, BLOCKED, UNKNOWN, REDIRECTED)

SEVERITIES = ("error", "warning", "note")
PROBE_UID = PROBE_GID = 0  # who the verify probes' clients run as when a flow names no user


@dataclass(frozen=True, slots=True)
class Flow:
    """A loopback connection: ``client`` None means the kernel's default source
    (127.0.0.1 for any 127/8 server, ::1 for ::1). ``user`` is the client's user as given (a name
    or a number); ``uid``/``gid`` what it resolved to (None: not known, e.g. a name the host
    running lbfw does not have). No user: owner matches are answered per user (FlowResult.by_user)."""

    proto: str  # "tcp" | "udp"
    server: str
    port: int
    client: Optional[str] = None
    user: Optional[str] = None
    uid: Optional[int] = None
    gid: Optional[int] = None

    def label(self) -> str:
        client = self.client or "default"
        server = f"[{self.server}]" if ":" in self.server else self.server
        who = f" as {self.user}" if self.user is not None else ""
        return f"{self.proto} {client} -> {server}:{self.port}{who}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"proto": self.proto, "client": self.client, "server": self.server, "port": self.port}
        if self.user is not None:
            data["user"] = {"name": self.user, "uid": self.uid, "gid": self.gid}
        return data


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
    verdict: str  # accept | drop | reject | policy-accept | policy-drop | unknown | jump ...
    rule: Optional[Rule] = None
    origin: Optional[Origin] = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class UserVerdict:
    """A user the owner matches single out, and the flow's verdict for that user."""

    who: str  # "uid 106 (debian-tor)", "gid 50"
    uid: Optional[int]
    gid: Optional[int]
    verdict: str  # the verdict in words (FlowResult.describe of that user's result)
    outcome: str  # DELIVERED | BLOCKED | UNKNOWN | REDIRECTED


@dataclass(slots=True)
class FlowResult:
    """The engine's answer for one flow."""

    flow: Flow
    verdict: str  # DELIVERED | BLOCKED | UNKNOWN | REDIRECTED
    steps: list[Step] = field(default_factory=list)  # the path, in order
    deciding: Optional[Step] = None  # the rule or policy that blocked, if blocked
    unknown: tuple[str, ...] = ()  # texts of the matches/targets that could not be decided
    client_addr: Optional[str] = None  # the source address the kernel uses
    redirected_to: Optional[str] = None  # REDIRECTED: "ADDR:PORT" the destination NAT chose
    # The flow named no user and owner matches decide it: UserVerdicts for the users the rules name
    # whose verdict differs from ``verdict``, which is then the answer for every other user.
    by_user: tuple[UserVerdict, ...] = ()
    caveats: tuple[str, ...] = ()  # runtime assumptions the verdict rests on, in words

    def describe(self) -> str:
        """The verdict in words: "delivered for uid 106, blocked for others", "redirected to 127.0.0.1:5354"."""
        if self.verdict == REDIRECTED and self.redirected_to:
            main = f"{REDIRECTED} to {self.redirected_to}"
        else:
            main = self.verdict
        if not self.by_user:
            return main
        groups: dict[str, list[str]] = {}
        for entry in self.by_user:
            groups.setdefault(entry.verdict, []).append(entry.who)
        parts = [f"{verdict} for {', '.join(whos)}" for verdict, whos in groups.items()]
        return f"{'; '.join(parts)}; {main} for others"

    def verdict_for(self, uid: Optional[int], gid: Optional[int] = None) -> str:
        """The verdict for a client running as ``uid``/``gid`` (the sandbox's probes run as root: 0, 0)."""
        for entry in self.by_user:
            if (entry.uid is not None and entry.uid == uid) or (entry.gid is not None and entry.gid == gid):
                return entry.outcome
        return self.verdict

    def probed(self) -> str:
        """The verdict real traffic should show: the sandbox's and the live probe's clients run as
        root (uid 0, gid 0) unless the flow names a user."""
        if self.flow.user is None and self.by_user:
            return self.verdict_for(PROBE_UID, PROBE_GID)
        return self.verdict

    def to_json(self) -> dict[str, Any]:
        data = self.flow.to_json()
        data["verdict"] = self.verdict
        if self.deciding is not None:
            o = self.deciding.origin
            data["decided_by"] = {
                "hook": self.deciding.hook,
                "table": self.deciding.table,
                "chain": self.deciding.chain,
                "verdict": self.deciding.verdict,
                "rule": self.deciding.rule.text if self.deciding.rule is not None else None,
                "where": o.where() if o is not None else None,
            }
        else:
            data["decided_by"] = None
        data["unknown"] = list(self.unknown)
        if self.redirected_to is not None:
            data["redirected_to"] = self.redirected_to
        if self.by_user:
            data["by_user"] = [{"user": e.who, "uid": e.uid, "gid": e.gid, "verdict": e.verdict} for e in self.by_user]
        if self.caveats:
            data["caveats"] = list(self.caveats)
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
    flows: list[Flow] = field(default_factory=list)
    owner: Optional[str] = None  # docker | kube-proxy | ufw | firewalld | fail2ban | fw4
    family: Optional[str] = None
    backend: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Why the check judges the rule a deliberate policy (an owner match), not a mistake: the fixer
    # leaves such a rule alone. None for an ordinary finding. Not in the JSON (the message says it).
    deliberate: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
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

"""What doctor reports: one `Item` per thing it looked at, and the `Check` that documents each id.

An item is the answer to one question about the host ("can 127.10.0.1:8001/tcp be bound?"):
its check id, a severity, what it is about, what is wrong, why that matters and the exact
commands that fix it. Checks that pass give an `ok` item and checks that cannot run here
(no root, another platform) a `skipped` one, so a fleet can aggregate every host's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("error", "warning", "note", "ok", "skipped")
# --fail-on compares with these; ok and skipped never fail a run
RANK = {"error": 3, "warning": 2, "note": 1, "ok": 0, "skipped": 0}
FAIL_ON = ("error", "warning", "note", "never")


@dataclass(frozen=True)
class Check:
    """The documentation of one doctor check: ``doc`` has `## What it checks`, `## Why`, `## Fix`."""

    id: str
    name: str
    summary: str
    doc: str


@dataclass
class Item:
    """One finding of doctor (JSON: ``to_json``)."""

    check: Check
    severity: str
    subject: str  # what it is about: "lo", "127.10.0.1:8001/tcp", "/etc/resolv.conf"
    message: str  # what is wrong (or, for ok, what was found)
    why: str = ""
    fix: tuple = ()  # exact commands or file lines, in order
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.check.id}: severity {self.severity!r}")

    @property
    def id(self) -> str:
        return self.check.id

    def to_json(self) -> dict:
        return {
            "id": self.check.id,
            "name": self.check.name,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "why": self.why,
            "fix": list(self.fix),
            "data": dict(self.data),
        }


def ok(check: Check, subject: str, message: str, **data) -> Item:
    return Item(check, "ok", subject, message, data=data)


def skipped(check: Check, subject: str, why: str) -> Item:
    """A check that could not run here, and why (no root, another platform, a file unreadable)."""
    return Item(check, "skipped", subject, f"not checked: {why}")


def at_or_above(items, threshold: str) -> bool:
    """True when an item's severity is at or above ``threshold`` (error | warning | note | never)."""
    if threshold == "never":
        return False
    floor = RANK[threshold]
    return any(RANK[i.severity] >= floor and RANK[i.severity] > 0 for i in items)


def counts(items) -> dict:
    """{severity: number of items}, every severity present."""
    out = {s: 0 for s in SEVERITIES}
    for i in items:
        out[i.severity] += 1
    return out

"""What a check declares about its fix, next to the check: `FIX = CheckFix(...)` in each lb00N module.

The fix planner (fix/plan.py) derives from these which checks it fixes, the `--style` choices
and the fix-safety text printed next to every edit; `lbfw rules` and docs/checks.md state the
availability the way ruff's rule pages do ("Fix is sometimes available.").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AVAILABILITY = ("always", "sometimes", "never")

# The safety text of widening a set element, the same whichever check's finding led there.
SET_SAFETY = (
    "Fix safety: the set element 127.0.0.1 becomes 127.0.0.0/8, so every rule that uses this set now "
    "matches all of 127/8."
)


@dataclass(frozen=True)
class CheckFix:
    """How `lbfw fix` repairs a check's findings.

    ``availability``: "always", "sometimes" (some findings are refused: a manager's rule, a
    deliberate policy, a define other rules share) or "never". ``modes``: the rewrites it can
    make, the first the one used when the chosen `--style` is not among them ("interface":
    the address becomes the loopback interface; "range": it becomes 127.0.0.0/8).
    ``safety``: mode (and "set", for a widened set element) -> the text printed next to each
    edit, saying what the fix changes beyond the traffic it is meant for. ``config``: the
    manager's configuration the fix changes instead of a rule (LB008: "jail.local"); such a fix
    is made by fix/managers.py on the live host, never by the rule planner, and has no modes."""

    availability: str
    modes: tuple[str, ...] = ()
    safety: dict[str, str] = field(default_factory=dict)
    config: str = ""

    def __post_init__(self) -> None:
        if self.availability not in AVAILABILITY:
            raise ValueError(f"availability must be one of {AVAILABILITY}, not {self.availability!r}")
        if self.config:
            if self.availability == "never" or self.modes:
                raise ValueError("a fix of a manager's configuration is available and has no rewrite modes")
        elif (self.availability == "never") != (not self.modes):
            raise ValueError("a fix that is available needs modes, and one that is never available has none")
        missing = [m for m in self.modes if m not in self.safety]
        if missing:
            raise ValueError(f"no fix-safety text for mode(s) {', '.join(missing)}")

    @property
    def fixable(self) -> bool:
        return self.availability != "never"

    @property
    def planned(self) -> bool:
        """Whether the rule planner (fix/plan.py) makes it: an edit of a rule, not of a manager's configuration."""
        return self.fixable and not self.config

    def sentence(self) -> str:
        """ruff's wording: `Fix is sometimes available.`"""
        return f"Fix is {self.availability} available."

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "availability": self.availability,
            "modes": list(self.modes),
            "safety": dict(self.safety),
        }
        if self.config:
            out["config"] = self.config
        return out


NO_FIX = CheckFix("never")

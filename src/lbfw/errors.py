"""Errors a user can cause. The CLI turns them into `PATH:LINE: message` and exit 2."""

from __future__ import annotations

from typing import Optional


class LbfwError(Exception):
    """Any error lbfw reports to the user without a traceback (exit 2)."""

    exit_code = 2

    def __init__(
        self, message: str, path: Optional[str] = None, line: Optional[int] = None, hint: Optional[str] = None
    ):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f"\n{self.hint}"
        return text


class UsageError(LbfwError):
    """A bad option value, or options that do not go together."""


class InputError(LbfwError):
    """A ruleset file (or standard input) that cannot be read or parsed."""

    # when a kernel tool (iptables-restore, nft -f) rejected it: the tool's whole complaint
    stderr: Optional[str] = None


class NeedRootError(LbfwError):
    """Live reading or applying without the privileges it needs."""


class MissingDependencyError(LbfwError):
    """A system package or Python module lbfw needs is not installed."""


class ApplyError(LbfwError):
    """Applying a fix failed; the system was restored (the message says so)."""

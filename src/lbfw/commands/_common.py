"""Glue the audit, check and rules commands share: option checks, reading, writing output."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Optional

from ..errors import LbfwError

FAIL_ON = ("error", "warning", "note", "never")


class UsageError(LbfwError):
    """A bad option value (exit 2, like any error a user can cause)."""


def choose(name: str, value: str, allowed) -> str:
    if value not in allowed:
        raise UsageError(f"{name} must be one of: {', '.join(allowed)} (not {value!r})")
    return value


def read_ruleset(sources, input_format: str, reader: str):
    from ..read import read_sources
    return read_sources(list(sources), input_format=input_format, reader=reader)


def write_output(text: str, output: Optional[str]) -> None:
    """Print to stdout, or write ``output`` whole (a temporary file renamed into place: a failed
    run never leaves half a report)."""
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(output))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lbfw-", dir=directory)
    except OSError as err:
        raise UsageError(f"cannot write the report: {err.strerror or err}", path=output) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write the report: {err.strerror or err}", path=output) from None

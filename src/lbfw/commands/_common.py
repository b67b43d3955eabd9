"""CLI glue the commands share: option checks and writing the output."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Optional

from ..errors import UsageError

FAIL_ON = ("error", "warning", "note", "never")


def choose(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` when it is one of ``allowed``, else a UsageError naming the option."""
    if value not in allowed:
        raise UsageError(f"{name} must be one of: {', '.join(allowed)} (not {value!r})")
    return value


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
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"cannot write the report: {err.strerror or err}", path=output) from None

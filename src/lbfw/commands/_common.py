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
    """Read the sources into one Ruleset, for a command that keeps it until the process ends.

    Reading builds hundreds of thousands of small objects that all stay alive, so the cyclic
    garbage collector would only rescan them again and again: it is paused while reading and
    the result is frozen out of its sight afterwards (measured on a 140k-rule dump: about
    0.7 s of a 4.8 s audit)."""
    import gc

    from ..read import read_sources
    enabled = gc.isenabled()
    gc.disable()
    try:
        return read_sources(list(sources), input_format=input_format, reader=reader)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


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

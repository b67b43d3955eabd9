"""CLI glue the commands share: option checks and writing the output."""

from __future__ import annotations

import contextlib
import os
import stat
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
    """Print to stdout, or write ``output``: a regular file (or a new one) is replaced whole and
    atomically (a temporary file beside it, fsynced, renamed into place: a failed run, a full
    disk included, leaves the old file and no temporary one); anything else that exists (a
    device such as /dev/null, a FIFO, /dev/stdout) is opened and written, never replaced."""
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    data = text.encode("utf-8")
    try:
        st = os.stat(output)  # through a symlink: /dev/stdout, or a link to the real report
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise UsageError(f"cannot write the report: {err.strerror or err}", path=output) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise UsageError("cannot write the report: is a directory", path=output)
        try:
            fd = os.open(output, os.O_WRONLY)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as err:
            raise UsageError(f"cannot write the report: {err.strerror or err}", path=output) from None
        return
    real = os.path.realpath(output)
    directory = os.path.dirname(real)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lbfw-", dir=directory)
    except OSError as err:
        raise UsageError(f"cannot write the report: {err.strerror or err}", path=output) from None
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"cannot write the report: {err.strerror or err}", path=output) from None


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (a short write is retried; ENOSPC raises)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]

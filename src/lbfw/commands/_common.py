"""CLI glue the commands share: option checks, where the ruleset comes from (standard input
when it is a pipe), progress on a terminal, the configuration, and writing the output."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Optional

from ..errors import InputError, UsageError

FAIL_ON = ("error", "warning", "note", "never")


def stdin_is_piped() -> bool:
    """True when standard input is a pipe or a redirected file (not a terminal, not /dev/null)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False  # no real descriptor (an embedding program)
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def sources_or_stdin(sources: Sequence[str], quiet: bool = False) -> list:
    """``sources``; with none, ``["-"]`` when standard input is a pipe (said on stderr): `ssh web1
    iptables-save | lbfw audit` audits web1's rules, never silently the host lbfw runs on. An empty
    pipe is an error, not the live host."""
    sources = list(sources)
    if sources or not stdin_is_piped():
        return sources
    from ..read import source_bytes

    if not source_bytes("-").strip():
        raise InputError(
            "standard input is a pipe but empty: no ruleset to read (run lbfw without a pipe to read the live host)",
            path="-",
        )
    if not quiet:
        print("lbfw: reading the ruleset from standard input (a pipe); name `-` or a SOURCE to say so", file=sys.stderr)
    return ["-"]


# Work shorter than this shows no progress at all: a quick audit leaves the terminal untouched.
PROGRESS_AFTER = 0.3


@contextlib.contextmanager
def progress(what: str, quiet: bool = False) -> Iterator[None]:
    """A spinner saying ``what`` on stderr while the block runs, on a terminal only (never in
    piped output, never with --quiet), once it has run PROGRESS_AFTER seconds; it leaves no line
    behind."""
    import threading

    from rich.console import Console

    console = Console(file=sys.stderr, highlight=False, markup=False, emoji=False)
    if quiet or not console.is_terminal or console.is_dumb_terminal:
        yield
        return
    status = console.status(what, spinner="dots")
    lock = threading.Lock()
    state = {"started": False, "done": False}

    def start() -> None:
        with lock:
            if not state["done"]:
                status.start()
                state["started"] = True

    timer = threading.Timer(PROGRESS_AFTER, start)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["started"]:
                status.stop()


def describe_sources(sources: Sequence[str]) -> str:
    """`reading rules.v4` / `reading 3 sources` / `reading the live host` for progress."""
    if not sources:
        return "reading the live host's rulesets"
    return f"reading {sources[0]}" if len(sources) == 1 else f"reading {len(sources)} sources"


def load_config(path: Optional[str], select: Optional[str], ignore: Optional[str], fail_on: Optional[str]):
    """The configuration file (lbfw.config) with the command line's options over it."""
    from ..config import load, with_options

    if fail_on is not None:
        choose("--fail-on", fail_on, FAIL_ON)
    return with_options(load(path), select, ignore, fail_on)


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

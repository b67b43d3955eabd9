"""Fixing ruleset files: unified diffs and safe writes.

`render_diff(path, old, new)` is a pure string function: a unified diff with `--- a/PATH`
and `+++ b/PATH` headers that `git apply` and `patch -p1` take from the directory lbfw ran
in, byte-exact (CRLF lines, a missing final newline, undecodable bytes survive).

`write_fixed(...)` is the edge: each file is written atomically (a temporary file in the
same directory, fsync, rename over the original, keeping mode and owner), with a backup
of the original beside it (mode 0600), and only if the file still holds the bytes that
were read and planned on.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import InputError
from .plan import FixPlan, apply_to_text

_NO_NEWLINE = "\\ No newline at end of file\n"
RED, GREEN, CYAN, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[36m", "\x1b[1m", "\x1b[0m"


def digest(text: str) -> str:
    """sha256 of the text as the bytes it was read from."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def render_diff(path: str, old: str, new: str, context: int = 3) -> str:
    """A unified diff of ``old`` -> ``new`` for ``path`` ("" when they are equal).

    The headers are ``a/PATH`` and ``b/PATH`` with PATH as given, so `git apply` and
    `patch -p1` take the diff from the directory lbfw ran in; an absolute PATH loses its
    leading "/" (``a/etc/iptables/rules.v4``: neither tool takes ``a//etc/...``), and such a
    diff applies from "/"."""
    if old == new:
        return ""
    a = _lines(old)
    b = _lines(new)
    if len(a) == len(b):
        body = _same_length_diff(a, b, context)
    else:
        body = difflib.unified_diff(a, b, n=context, lineterm="\n")
        next(body), next(body)  # difflib's own headers (no names): ours follow
    name = path.lstrip("/")
    out = [f"--- a/{name}\n", f"+++ b/{name}\n"]
    for line in body:
        if line.endswith("\n"):
            out.append(line)
        else:  # the file's last line, without a newline
            out.append(line + "\n" + _NO_NEWLINE)
    return "".join(out)


def _lines(text: str) -> list:
    """Lines with their "\n" (only "\n" ends a line, as for git and patch)."""
    parts = text.split("\n")
    last = parts.pop()
    lines = [p + "\n" for p in parts]
    if last:
        lines.append(last)
    return lines


def _same_length_diff(a: list, b: list, context: int):
    """Hunks for two line lists of equal length (lines replaced in place: every fix of a
    rule line), in O(lines) rather than difflib's sequence matching over 140,000 lines."""
    changed = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    groups: list[list[int]] = []
    for i in changed:
        if groups and i - groups[-1][1] <= 2 * context + 1:
            groups[-1][1] = i
        else:
            groups.append([i, i])
    for first, last in groups:
        start = max(0, first - context)
        end = min(len(a), last + context + 1)
        count = end - start
        yield f"@@ -{_range(start, count)} +{_range(start, count)} @@\n"
        i = start
        while i < end:
            if a[i] == b[i]:
                yield " " + a[i]
                i += 1
                continue
            j = i
            while j < end and a[j] != b[j]:
                j += 1
            for k in range(i, j):
                yield "-" + a[k]
            for k in range(i, j):
                yield "+" + b[k]
            i = j


def _range(start: int, count: int) -> str:
    """A hunk range as unified diffs write it (1-based; `N` alone for one line)."""
    return f"{start + 1}" if count == 1 else f"{start + 1},{count}"


def colorize(diff: str) -> str:
    """ANSI colours for a terminal (never for a pipe: callers decide)."""
    out = []
    for line in diff.splitlines(keepends=True):
        body, end = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        if line.startswith(("--- ", "+++ ")):
            out.append(f"{BOLD}{body}{RESET}{end}")
        elif line.startswith("@@"):
            out.append(f"{CYAN}{body}{RESET}{end}")
        elif line.startswith("-"):
            out.append(f"{RED}{body}{RESET}{end}")
        elif line.startswith("+"):
            out.append(f"{GREEN}{body}{RESET}{end}")
        else:
            out.append(line)
    return "".join(out)


@dataclass(frozen=True)
class FileFix:
    """One file's planned fix: what was read (and its hash) and what will be written."""

    path: str
    old: str
    new: str
    sha256: str

    def diff(self) -> str:
        return render_diff(self.path, self.old, self.new)


def file_fixes(plan: FixPlan) -> list:
    """The FileFix of every source the plan edits, in plan order."""
    fixes = []
    for source in plan.sources():
        old = plan.texts[source]
        try:
            new = apply_to_text(old, plan.edits_for(source))
        except ValueError as err:
            raise InputError(f"cannot apply the fix: {err}", path=source) from None
        fixes.append(FileFix(source, old, new, digest(old)))
    return fixes


def backup_path(path: str, stamp: Optional[str] = None) -> str:
    stamp = stamp or time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    candidate = f"{path}.lbfw-{stamp}.bak"
    n = 1
    while os.path.lexists(candidate):
        candidate = f"{path}.lbfw-{stamp}-{n}.bak"
        n += 1
    return candidate


def _write_private(path: str, data: bytes) -> None:
    """Write ``path`` (mode 0600) complete or not at all: a hidden temporary file beside it,
    every byte written and fsynced, then linked into place (never over an existing file)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".lbfw-tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its mode and owner."""
    real = os.path.realpath(path)  # a symlinked config is written where it lives
    st = os.stat(real)
    directory = os.path.dirname(real) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(real)}.", suffix=".lbfw-tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):  # not root: the file stays ours, as any editor would
                os.fchown(handle.fileno(), st.st_uid, st.st_gid)
            os.fsync(handle.fileno())
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_fixed(fixes: list) -> list:
    """Write every FileFix; returns [(path, backup path)].

    All files are checked first: if any changed since it was read, InputError and nothing
    is written."""
    for fix in fixes:
        try:
            with open(fix.path, "rb") as handle:
                now = handle.read()
        except OSError as err:
            raise InputError(f"cannot read it again before writing: {err.strerror}", path=fix.path) from None
        if hashlib.sha256(now).hexdigest() != fix.sha256:
            raise InputError(
                "the file changed since lbfw read it; nothing was written. Run lbfw fix again.", path=fix.path
            )
        if not os.access(fix.path, os.W_OK) or not os.access(
            os.path.dirname(os.path.realpath(fix.path)) or ".", os.W_OK
        ):
            raise InputError("not writable (nothing was written)", path=fix.path)
    written = []
    for fix in fixes:
        backup = backup_path(fix.path)
        _write_private(backup, fix.old.encode("utf-8", "surrogateescape"))
        atomic_write(fix.path, fix.new.encode("utf-8", "surrogateescape"))
        written.append((fix.path, backup))
    return written

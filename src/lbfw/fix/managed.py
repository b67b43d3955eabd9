"""Changes made through a firewall manager (ufw, fail2ban, firewalld) inside `lbfw fix --apply`'s transaction.

A rule a manager wrote is not edited in the kernel (the manager would put it back): lbfw runs the
manager's own command (`ufw delete ...`, `firewall-cmd --permanent ...`) or writes its configuration
(fail2ban's jail.local) and reloads it. Such a `ManagerChange` goes through the same transaction as the
kernel edits (fix/live.py):

- the files it changes are saved in the transaction's backup (0600, with their size, sha256, mode
  and owner) before anything runs;
- its writes are made atomically, then its commands run in order (argument lists, never a shell);
  a change that writes files, or runs no command, is followed by the manager's reload;
- the revert (refusal, timeout, signal, EOF, the watchdog, `lbfw rollback`) restores every file byte
  for byte with its mode and owner (a file that did not exist is removed), then runs the manager's
  reload. Nothing read back from a backup is executed: the backup names the manager, and lbfw maps
  that name to its own fixed command (RELOAD).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ApplyError

Say = Callable[[str], object]

# lbfw's own reload command per manager: the only argv a revert runs.
RELOAD: dict[str, tuple[str, ...]] = {
    "ufw": ("ufw", "reload"),
    "fail2ban": ("fail2ban-client", "reload"),
    "firewalld": ("firewall-cmd", "--reload"),
}
# Where each manager's files live: a change (or a backup) naming a file elsewhere is refused.
ROOTS: dict[str, str] = {"ufw": "/etc/ufw/", "fail2ban": "/etc/fail2ban/", "firewalld": "/etc/firewalld/"}
COMMAND_TIMEOUT = 120.0
# What a manager prints when a command did nothing although it exits 0 (ufw 0.36.2, measured).
_DID_NOTHING: dict[str, tuple[str, ...]] = {"ufw": ("Could not delete non-existent rule",)}
_BACKUP_NAME = re.compile(r"^managed-\d+-[A-Za-z0-9_.-]+$")


def _in_root(manager: str, path: str) -> bool:
    root = ROOTS.get(manager)
    return root is not None and os.path.isabs(path) and os.path.normpath(path) == path and path.startswith(root)


@dataclass(frozen=True)
class ManagerChange:
    """One change made through a manager: ``files`` (backed up), ``writes`` (path, new text) made first,
    then ``commands`` (argv lists, each run by the manager's own tool). ``why`` (finding id and where) is
    shown in the dry run."""

    manager: str
    files: tuple[str, ...]
    commands: tuple[tuple[str, ...], ...]
    writes: tuple[tuple[str, str], ...]
    why: str

    def __post_init__(self) -> None:
        if self.manager not in RELOAD:
            raise ValueError(f"unknown manager {self.manager!r} (one of {', '.join(RELOAD)})")
        for path in self.files:
            if not _in_root(self.manager, path):
                raise ValueError(f"{path}: not a file of {self.manager} (under {ROOTS[self.manager]})")
        for path, _ in self.writes:
            if path not in self.files:
                raise ValueError(f"{path} is written but not among the files backed up")
        for argv in self.commands:
            if not argv or argv[0] != RELOAD[self.manager][0]:
                raise ValueError(f"{self.manager}: a command must run {RELOAD[self.manager][0]}, not {argv!r}")

    @property
    def reloads(self) -> bool:
        """Whether the manager's reload follows the change (it writes files, or runs no command)."""
        return bool(self.writes) or not self.commands

    def steps(self) -> list[tuple[str, ...]]:
        """The commands as they run, the reload included."""
        return [*self.commands, *([RELOAD[self.manager]] if self.reloads else [])]


def shown(argv: Sequence[str]) -> str:
    """An argv as a person would type it (words with spaces or quotes quoted)."""
    import shlex

    return " ".join(shlex.quote(word) for word in argv)


def describe(changes: Sequence[ManagerChange], say: Say) -> None:
    """The dry run's account of each change: why, the files it writes, the commands it runs."""
    for change in changes:
        say(f"{change.why}: through {change.manager}:")
        for path, _ in change.writes:
            say(f"  writes {path} (the diff is shown)")
        for argv in change.steps():
            say(f"  runs `{shown(argv)}`")


def diff(changes: Sequence[ManagerChange]) -> str:
    """The unified diff of every file the changes write (against the file as it is now)."""
    from .files import render_diff

    out = []
    for change in changes:
        for path, new in change.writes:
            out.append(render_diff(path, _read_text(path), new))
    return "".join(out)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


# --------------------------------------------------------------------------- backup


@dataclass(frozen=True)
class SavedFile:
    """A manager's file as the backup holds it (``exists`` False: the file was not there)."""

    manager: str
    path: str
    file: str  # the backup's own file name
    exists: bool
    size: int
    sha256: str
    mode: int
    uid: int
    gid: int

    def to_json(self) -> dict[str, Any]:
        return {
            "manager": self.manager,
            "path": self.path,
            "file": self.file,
            "exists": self.exists,
            "bytes": self.size,
            "sha256": self.sha256,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> SavedFile:
        """A manifest entry, checked: a manager lbfw knows, a path under its directory, a backup file name."""
        saved = cls(
            str(item["manager"]),
            str(item["path"]),
            str(item["file"]),
            bool(item["exists"]),
            int(item["bytes"]),
            str(item["sha256"]),
            int(item["mode"]),
            int(item["uid"]),
            int(item["gid"]),
        )
        if saved.manager not in RELOAD:
            raise ValueError(f"unknown manager {saved.manager!r}")
        if not _in_root(saved.manager, saved.path):
            raise ValueError(f"{saved.path} is not a file of {saved.manager}")
        if not _BACKUP_NAME.match(saved.file):
            raise ValueError(f"{saved.file!r} is not a backup file name")
        return saved

    def matches(self, data: bytes) -> bool:
        return len(data) == self.size and hashlib.sha256(data).hexdigest() == self.sha256


def snapshot(changes: Sequence[ManagerChange]) -> list[tuple[SavedFile, bytes]]:
    """Every file the changes touch, read now (each once, in order), for the backup."""
    out: list[tuple[SavedFile, bytes]] = []
    seen: set[str] = set()
    for change in changes:
        for path in change.files:
            if path in seen:
                continue
            seen.add(path)
            name = f"managed-{len(out) + 1}-{re.sub(r'[^A-Za-z0-9_.-]', '_', os.path.basename(path))}"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                out.append(
                    (SavedFile(change.manager, path, name, False, 0, hashlib.sha256(b"").hexdigest(), 0, 0, 0), b"")
                )
                continue
            except OSError as err:
                raise ApplyError(
                    f"{path}: cannot read it for the backup ({err.strerror}); nothing was changed"
                ) from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise ApplyError(f"{path}: not a regular file; nothing was changed")
                data = _read_all(fd)
            finally:
                os.close(fd)
            digest = hashlib.sha256(data).hexdigest()
            mode = stat.S_IMODE(st.st_mode)
            out.append(
                (SavedFile(change.manager, path, name, True, len(data), digest, mode, st.st_uid, st.st_gid), data)
            )
    return out


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- apply and revert


def _replace(path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    """``path`` replaced atomically by ``data`` with that mode and owner (a temporary file beside it, renamed)."""
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.lbfw-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _owner_of(path: str) -> tuple[int, int, int]:
    """(mode, uid, gid) a written file keeps: the file's own, or 0644 root for a new one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0o644, 0, 0
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def _run(argv: Sequence[str]) -> None:
    tool = shutil.which(argv[0])
    if tool is None:
        raise ApplyError(f"{argv[0]} is not installed: cannot run `{shown(argv)}`")
    try:
        proc = subprocess.run(
            [tool, *argv[1:]], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ApplyError(f"`{shown(argv)}` failed: {err}") from None
    if proc.returncode != 0:
        raise ApplyError(f"`{shown(argv)}` failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    said = proc.stdout + proc.stderr
    if any(text in said for manager, texts in _DID_NOTHING.items() if argv[0] == RELOAD[manager][0] for text in texts):
        raise ApplyError(f"`{shown(argv)}` did nothing: {said.strip()}")


def run(changes: Sequence[ManagerChange], say: Say) -> None:
    """Make every change: its writes, its commands, its reload. ApplyError on the first failure
    (the transaction then reverts all of it)."""
    for change in changes:
        for path, text in change.writes:
            mode, uid, gid = _owner_of(path)
            try:
                _replace(path, text.encode("utf-8", "surrogateescape"), mode, uid, gid)
            except OSError as err:
                raise ApplyError(f"cannot write {path}: {err.strerror}") from None
            say(f"wrote {path}")
        for argv in change.steps():
            _run(argv)
            say(f"ran `{shown(argv)}`")


def restore(saved: Iterable[tuple[SavedFile, bytes]], say: Say) -> list[str]:
    """Put every saved file back byte for byte (mode and owner too; a file that was absent removed),
    then run each manager's reload (RELOAD, lbfw's own). The failures, each with why."""
    failed: list[str] = []
    managers: list[str] = []
    for entry, data in saved:
        if entry.manager not in managers:
            managers.append(entry.manager)
        try:
            if entry.exists:
                if _read_bytes(entry.path) != data or not os.path.lexists(entry.path):
                    _replace(entry.path, data, entry.mode, entry.uid, entry.gid)
                    say(f"put back {entry.path}")
                else:  # the same bytes: the mode and owner are still put back
                    os.chown(entry.path, entry.uid, entry.gid, follow_symlinks=False)
                    os.chmod(entry.path, entry.mode)
            elif os.path.lexists(entry.path):
                os.unlink(entry.path)
                say(f"removed {entry.path} (lbfw had created it)")
        except OSError as err:
            failed.append(f"{entry.path}: {err.strerror}")
    for manager in managers:
        try:
            _run(RELOAD[manager])
            say(f"ran `{shown(RELOAD[manager])}`")
        except ApplyError as err:
            failed.append(f"{manager}: {err.message}")
    return failed


def _read_bytes(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return b""
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


def saved_diff(saved: Iterable[tuple[SavedFile, bytes]]) -> str:
    """The files as they are now against what a restore leaves (for `lbfw rollback`'s diff)."""
    from .files import render_diff

    out = []
    for entry, data in saved:
        now = _read_bytes(entry.path).decode("utf-8", "surrogateescape")
        out.append(render_diff(entry.path, now, data.decode("utf-8", "surrogateescape")))
    return "".join(out)

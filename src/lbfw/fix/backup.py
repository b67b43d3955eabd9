"""Backups of live tables before lbfw changes them, trusted only when they are lbfw's own.

The backup directory (``--backup-dir``, else $LBFW_BACKUP_DIR, else /var/lib/lbfw/backups)
is created mode 0700; an existing one that is a symlink, is not owned by the user lbfw runs as
(root), or is writable by group or others is refused before anything changes (exit 2).

Each backup is a directory ``ID/`` (``YYYYmmddTHHMMSSZ-PID``, mode 0700) holding:

- one file per table lbfw is about to touch (mode 0600), its dump in its own backend's syntax:
  `iptables-save -t TABLE` for legacy and iptables-nft, `nft -a list table FAMILY NAME` for
  nftables ('' for an nft table that did not exist);
- ``manifest.json``: the format, the id, when, and per table its backend, family, name, file,
  size and sha256; and the changes lbfw makes (fix/live.py), so that `rollback` can undo
  exactly those;
- ``managed-N-NAME``: each file a manager change (fix/managed.py: ufw's user.rules, fail2ban's
  jail.local ...) is about to change (mode 0600), listed in the manifest under "managed" with its
  manager, path, size, sha256, mode and owner (and whether it existed). No command is stored: a
  revert runs the manager's reload that lbfw itself knows;
- ``state.json`` (written by the transaction, under ``lock``): pending, confirmed or reverted,
  the confirmation deadline, and the changes as made (nft handles included).

The files are written into a hidden directory that is renamed into place once complete and
fsynced: a backup is complete or absent. `load_backup` refuses (exit 2, nothing changed) a
backup whose files are not regular files owned by lbfw's user, do not match their size or
digest, name anything outside the backup, or do not hold the one table they claim to.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends import NFTABLES, Change, TableRef
from ..errors import ApplyError, InputError
from .managed import SavedFile

DEFAULT_DIR = "/var/lib/lbfw/backups"
FORMAT = "lbfw-backup/1"
MANIFEST, STATE, LOCK = "manifest.json", "state.json", "lock"
_ID = re.compile(r"^\d{8}T\d{6}Z-\d+(?:-\d+)?$")
_FILE = re.compile(r"^(legacy|iptables-nft|nftables)-[a-z0-9]+-[A-Za-z0-9_.-]+\.(rules|nft)$")


def default_dir() -> str:
    """Where backups go unless --backup-dir says otherwise."""
    return os.environ.get("LBFW_BACKUP_DIR") or DEFAULT_DIR


def _refuse(path: str, why: str) -> InputError:
    return InputError(f"{why}; lbfw will not use it (nothing was changed)", path=path)


def _trusted(path: str, st: os.stat_result, what: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, f"the {what} is a symbolic link")
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"the {what} is owned by uid {st.st_uid}, not by uid {os.geteuid()} (lbfw's user)")
    if st.st_mode & 0o022:
        raise _refuse(path, f"the {what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def trusted_dir(path: str, create: bool = False) -> str:
    """``path`` when it is a directory only lbfw's user can change (created 0700 when missing
    and ``create``); InputError otherwise."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise InputError("no lbfw backup directory here", path=path) from None
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
            os.mkdir(path, 0o700)
        except OSError as err:
            raise ApplyError(
                f"cannot create the backup directory {path}: {err.strerror}; nothing was changed"
            ) from None
        st = os.lstat(path)
    if not stat.S_ISLNK(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "the backup directory is not a directory")
    _trusted(path, st, "backup directory")
    return path


def _write_file(folder_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"


def write_backup(
    backup_dir: str,
    tables: dict[TableRef, str],
    changes: dict[TableRef, list[Change]],
    managed: Sequence[tuple[SavedFile, bytes]] = (),
) -> str:
    """Save the tables and the changes planned on them (and the managers' files, fix/managed.py
    snapshot) as a new backup; returns its path."""
    trusted_dir(backup_dir, create=True)
    ident = new_id()
    n = 0
    while os.path.lexists(os.path.join(backup_dir, ident)):
        n += 1
        ident = f"{new_id()}-{n}"
    hidden = os.path.join(backup_dir, f".{ident}.tmp")
    final = os.path.join(backup_dir, ident)
    entries, planned = [], []
    try:
        os.mkdir(hidden, 0o700)
        fd = os.open(hidden, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for ref, text in tables.items():
                data = text.encode("utf-8", "surrogateescape")
                _write_file(fd, ref.filename, data)
                entries.append(
                    {
                        "backend": ref.backend,
                        "family": ref.family,
                        "table": ref.table,
                        "file": ref.filename,
                        "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
                planned += [dict(c.to_json(), table=ref.key) for c in changes.get(ref, [])]
            for saved, data in managed:
                if saved.exists:
                    _write_file(fd, saved.file, data)
            manifest = {
                "format": FORMAT,
                "id": ident,
                "created": time.time(),
                "tables": entries,
                "changes": planned,
                "managed": [saved.to_json() for saved, _ in managed],
            }
            _write_file(fd, MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
            _write_file(fd, LOCK, b"")
        finally:
            os.close(fd)
        os.rename(hidden, final)
        _fsync_dir(backup_dir)
    except OSError as err:
        with contextlib.suppress(OSError):
            for name in os.listdir(hidden):
                os.unlink(os.path.join(hidden, name))
            os.rmdir(hidden)
        raise ApplyError(f"cannot write the backup in {backup_dir}: {err.strerror}; nothing was changed") from None
    return final


@dataclass
class Backup:
    """A verified backup: its tables as saved and the changes lbfw planned on them."""

    path: str
    id: str
    created: float
    tables: dict[TableRef, str]
    changes: dict[TableRef, list[Change]] = field(default_factory=dict)
    managed: list[tuple[SavedFile, bytes]] = field(default_factory=list)

    def ref_of(self, key: str) -> TableRef:
        for ref in self.tables:
            if ref.key == key:
                return ref
        raise KeyError(key)


def _read_trusted(folder: str, name: str) -> bytes:
    path = os.path.join(folder, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise _refuse(path, f"cannot open it ({err.strerror}: a symbolic link or missing)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, "not a regular file")
        _trusted(path, st, "backup file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check_table_text(path: str, ref: TableRef, text: str) -> None:
    """The file holds the one table it claims to, and nothing else a restore would run."""
    if ref.backend == NFTABLES:
        depth = 0
        for number, line in enumerate(text.splitlines(), 1):
            body = line.split("#", 1)[0].strip()
            if depth == 0 and body and body != f"table {ref.family} {ref.table} {{":
                raise _refuse(f"{path}:{number}", f"holds `{body}`, not only table {ref.family} {ref.table}")
            depth += body.count("{") - body.count("}")
        return
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    if not lines or lines[0] != f"*{ref.table}" or lines[-1] != "COMMIT" or sum(1 for x in lines if x[:1] == "*") != 1:
        raise _refuse(path, f"not an iptables-save dump of table {ref.table} alone (empty or truncated?)")


def load_backup(path: str) -> Backup:
    """The backup at ``path``, verified (see the module docstring); InputError (exit 2) otherwise."""
    name = os.path.basename(os.path.normpath(path))
    if not _ID.match(name):
        raise _refuse(path, "not an lbfw backup name")
    trusted_dir(path)
    try:
        manifest = json.loads(_read_trusted(path, MANIFEST))
        if manifest.get("format") != FORMAT or manifest.get("id") != name:
            raise _refuse(os.path.join(path, MANIFEST), "not an lbfw backup manifest (format or id)")
        tables: dict[TableRef, str] = {}
        for entry in manifest["tables"]:
            ref = TableRef(str(entry["backend"]), str(entry["family"]), str(entry["table"]))
            file = str(entry["file"])
            if file != ref.filename or not _FILE.match(file):
                raise _refuse(path, f"the manifest names {file!r}, not a file of this backup")
            data = _read_trusted(path, file)
            where = os.path.join(path, file)
            if len(data) != int(entry["bytes"]):
                raise _refuse(where, f"{len(data)} bytes where the manifest says {entry['bytes']} (truncated?)")
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise _refuse(where, "its sha256 does not match the manifest")
            text = data.decode("utf-8", "surrogateescape")
            if text or ref.backend != NFTABLES:
                _check_table_text(where, ref, text)
            tables[ref] = text
        changes: dict[TableRef, list[Change]] = {}
        keys = {ref.key: ref for ref in tables}
        for item in manifest.get("changes", []):
            owner = keys.get(item["table"])
            if owner is None:
                raise _refuse(path, f"a change names table {item['table']!r}, which the backup does not hold")
            changes.setdefault(owner, []).append(Change.from_json(item))
        managed = []
        for item in manifest.get("managed", []):
            saved = SavedFile.from_json(item)
            data = _read_trusted(path, saved.file) if saved.exists else b""
            if not saved.matches(data):
                raise _refuse(os.path.join(path, saved.file), "its size or sha256 does not match the manifest")
            managed.append((saved, data))
        created = float(manifest["created"])
    except (ValueError, KeyError, TypeError) as err:
        raise _refuse(
            os.path.join(path, MANIFEST), f"not a readable lbfw manifest ({type(err).__name__}: {err})"
        ) from None
    return Backup(path, name, created, tables, changes, managed)


def list_backups(backup_dir: str) -> list[str]:
    """The backup directories in ``backup_dir``, oldest first (names only checked here)."""
    trusted_dir(backup_dir)
    return [os.path.join(backup_dir, n) for n in sorted(os.listdir(backup_dir)) if _ID.match(n)]


# --------------------------------------------------------------------------- transaction state


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """The transaction's lock: whoever confirms or reverts (lbfw, the watchdog, `lbfw confirm`)
    holds it while it reads and writes state.json."""
    fd = os.open(os.path.join(path, LOCK), os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_state(path: str) -> dict[str, Any]:
    """state.json of a backup ({"state": "none"} for one written before any transaction)."""
    try:
        data = _read_trusted(path, STATE)
    except InputError:
        if not os.path.lexists(os.path.join(path, STATE)):
            return {"state": "none"}
        raise
    try:
        state = json.loads(data)
    except ValueError:
        raise _refuse(os.path.join(path, STATE), "not readable JSON") from None
    if not isinstance(state, dict):
        raise _refuse(os.path.join(path, STATE), "not a transaction state")
    return state


def write_state(path: str, state: dict[str, Any]) -> None:
    """Replace state.json atomically (call it holding `locked`)."""
    tmp = f".{STATE}.{os.getpid()}"
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=fd)
        _write_file(fd, tmp, (json.dumps(state, indent=2) + "\n").encode())
        os.rename(tmp, STATE, src_dir_fd=fd, dst_dir_fd=fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def applied_changes(state: dict[str, Any], backup: Backup) -> dict[TableRef, list[Change]]:
    """The changes as made, per table (state.json), for the tables it records."""
    out: dict[TableRef, list[Change]] = {}
    for key, items in state.get("applied", {}).items():
        out[backup.ref_of(key)] = [Change.from_json(item) for item in items]
    return out

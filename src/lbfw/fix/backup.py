"""Backups of live tables before lbfw changes them, and restoring them (`lbfw rollback`).

A backup is a directory ``BACKUP_DIR/YYYYmmddTHHMMSSZ-PID/`` (mode 0700) holding, for each
table lbfw is about to touch, that table's dump in its own backend's syntax (mode 0600):

- iptables (legacy or iptables-nft): `iptables-save -t TABLE` output, restored with the
  same backend's `iptables-restore` (which rewrites that table only);
- nftables: `nft -a list table FAMILY NAME` output, restored in one `nft -f` transaction
  that deletes the table and loads the saved text (an empty saved text restores
  "no such table").

plus ``manifest.json`` naming them. Nothing here decides what to back up: fix/live.py does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import ApplyError, InputError, MissingDependencyError

SAVE_TOOLS = {
    ("legacy", "ip"): "iptables-legacy-save",
    ("legacy", "ip6"): "ip6tables-legacy-save",
    ("iptables-nft", "ip"): "iptables-nft-save",
    ("iptables-nft", "ip6"): "ip6tables-nft-save",
}
RESTORE_TOOLS = {
    ("legacy", "ip"): "iptables-legacy-restore",
    ("legacy", "ip6"): "ip6tables-legacy-restore",
    ("iptables-nft", "ip"): "iptables-nft-restore",
    ("iptables-nft", "ip6"): "ip6tables-nft-restore",
}
TIMEOUT = 120.0


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(
            f"{name} is not installed", hint="Install the Debian packages iptables and nftables."
        )
    return path


def run_tool(argv: list, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run a firewall tool (argument list, never a shell); text in, text out."""
    try:
        return subprocess.run(
            [tool(argv[0]), *argv[1:]], input=input, capture_output=True, text=True, timeout=TIMEOUT, close_fds=True
        )
    except subprocess.TimeoutExpired:
        raise ApplyError(f"{argv[0]} did not finish within {TIMEOUT:g} s") from None


@dataclass(frozen=True)
class TableRef:
    backend: str  # legacy | iptables-nft | nftables
    family: str
    table: str

    @property
    def key(self) -> str:
        """The pseudo-source naming this table in plans and diffs."""
        return f"live:{self.backend}/{self.family}/{self.table}"

    @property
    def filename(self) -> str:
        ext = "nft" if self.backend == "nftables" else "rules"
        return f"{self.backend}-{self.family}-{self.table}.{ext}"


def dump(ref: TableRef) -> str:
    """The table as its backend prints it now ('' for an nft table that does not exist)."""
    if ref.backend == "nftables":
        proc = run_tool(["nft", "-a", "list", "table", ref.family, ref.table])
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return ""
            raise ApplyError(f"nft list table {ref.family} {ref.table} failed: {proc.stderr.strip()}")
        return proc.stdout
    save = SAVE_TOOLS.get((ref.backend, ref.family))
    if save is None:
        raise ApplyError(f"no save tool for {ref.backend} {ref.family}")
    proc = run_tool([save, "-t", ref.table])
    if proc.returncode != 0:
        raise ApplyError(f"{save} -t {ref.table} failed: {proc.stderr.strip()}")
    return proc.stdout


def restore(ref: TableRef, text: str) -> None:
    """Put the table back exactly as ``text`` holds it; touches no other table."""
    if ref.backend == "nftables":
        # One transaction: create-if-missing, delete, then the saved table (if it existed).
        script = f"add table {ref.family} {ref.table}\ndelete table {ref.family} {ref.table}\n{text}"
        proc = run_tool(["nft", "-f", "-"], input=script)
        if proc.returncode != 0:
            raise ApplyError(f"restoring nft table {ref.family} {ref.table} failed: {proc.stderr.strip()}")
        return
    restore_tool = RESTORE_TOOLS[(ref.backend, ref.family)]
    if not text.strip():
        # An empty before-state is restored too: the table with no rules and ACCEPT policies.
        text = f"*{ref.table}\nCOMMIT\n"
    argv = [restore_tool, "-w"] if ref.backend == "legacy" else [restore_tool]
    proc = run_tool(argv, input=text)
    if proc.returncode != 0:
        raise ApplyError(f"{restore_tool} of table {ref.table} failed: {proc.stderr.strip()}")


def _private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8", "surrogateescape"))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_backup(backup_dir: str, tables: dict) -> str:
    """Save ``{TableRef: text}`` under a new directory of ``backup_dir``; returns its path."""
    try:
        _private_dir(backup_dir)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = os.path.join(backup_dir, f"{stamp}-{os.getpid()}")
        n = 0
        while os.path.exists(path):
            n += 1
            path = os.path.join(backup_dir, f"{stamp}-{os.getpid()}-{n}")
        _private_dir(path)
        entries = []
        for ref, text in tables.items():
            _write_private(os.path.join(path, ref.filename), text)
            entries.append({"backend": ref.backend, "family": ref.family, "table": ref.table, "file": ref.filename})
        _write_private(
            os.path.join(path, "manifest.json"), json.dumps({"created": stamp, "tables": entries}, indent=2) + "\n"
        )
    except OSError as err:
        raise ApplyError(f"cannot write the backup in {backup_dir}: {err.strerror}; nothing was changed") from None
    return path


def newest_backup(backup_dir: str) -> str:
    try:
        names = sorted(
            n for n in os.listdir(backup_dir) if os.path.isfile(os.path.join(backup_dir, n, "manifest.json"))
        )
    except FileNotFoundError:
        names = []
    if not names:
        raise InputError("no lbfw backup here", path=backup_dir)
    return os.path.join(backup_dir, names[-1])


def read_backup(path: str) -> dict:
    """{TableRef: text} of one backup directory."""
    try:
        with open(os.path.join(path, "manifest.json"), encoding="utf-8") as handle:
            manifest = json.load(handle)
        tables = {}
        for entry in manifest["tables"]:
            ref = TableRef(entry["backend"], entry["family"], entry["table"])
            with open(os.path.join(path, entry["file"]), encoding="utf-8", errors="surrogateescape") as handle:
                tables[ref] = handle.read()
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"not a readable lbfw backup: {err}", path=path) from None
    return tables


def restore_backup(path: str) -> list:
    """Restore every table of the backup at ``path``; returns the TableRefs restored."""
    tables = read_backup(path)
    for ref, text in tables.items():
        restore(ref, text)
    return list(tables)

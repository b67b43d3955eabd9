"""`lbfw rollback [ID]`: undo what `lbfw fix --apply` did, from its backup.

By default only lbfw's own changes are undone, by content (each rule lbfw wrote is put back
as it was read): rules other programs added since the apply stay. `--whole-tables` restores
every table of the backup exactly as it was saved instead (what was added since is lost: the
diff shows it first). The diff against the live rules is printed (stdout) before anything
changes; `--dry-run` stops there. `--list` shows the backups.

Files a manager change wrote (fix/managed.py: ufw's user.rules, fail2ban's jail.local) are put
back byte for byte from the backup, with their mode and owner, and the manager's own reload runs
(`ufw reload`, `fail2ban-client reload`, `firewall-cmd --reload`: lbfw's, never a command read
from the backup); the diff shows those files too.

Only a backup lbfw can trust is used (fix/backup.py load_backup): anything else is refused
with exit 2 before anything changes.

Exit codes: 0 done (or listed); 1 a rule lbfw changed could not be found to put back (the rest
was undone; the message says which); 2 no backup, or an untrusted one (nothing changed).
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Optional

from ..errors import InputError, UsageError


def run(
    backup_id: Optional[str] = None,
    backup_dir: Optional[str] = None,
    list_backups: bool = False,
    whole_tables: bool = False,
    dry_run: bool = False,
    stdout: Optional[IO[str]] = None,
    stderr: Optional[IO[str]] = None,
) -> int:
    from ..fix import backup as backups
    from ..fix.live import need_root

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    need_root("lbfw rollback")
    folder = backup_dir or backups.default_dir()
    if list_backups:
        if backup_id:
            raise UsageError("--list takes no ID")
        return _list(folder, out)
    path = _choose(folder, backup_id)
    backup = backups.load_backup(path)
    state = backups.read_state(path)
    if state.get("state") in ("reverted", "rolled-back") and not whole_tables:
        err.write(f"{path}: already {state['state']}: lbfw's changes are not in the kernel any more\n")
        return 0
    if not backup.changes and not backup.managed and not whole_tables:
        raise UsageError(f"{path}: the backup records no change of lbfw's; --whole-tables restores its tables")
    diff = _diff(backup, state, whole_tables)
    out.write(diff)
    out.flush()
    if dry_run:
        return 0
    if whole_tables:
        from ..backends import backend_of
        from ..fix.managed import restore

        failed: list[str] = restore(backup.managed, lambda text: err.write(text + "\n")) if backup.managed else []
        for ref, text in backup.tables.items():
            backend_of(ref).restore(ref, text)
            err.write(f"restored {ref.backend} {ref.family} {ref.table} as saved in {path}\n")
    else:
        from ..fix.live import rollback_changes

        failed = rollback_changes(backup, lambda text: err.write(text + "\n"))
    with backups.locked(path):
        state = backups.read_state(path)
        state["state"] = "rolled-back"
        state["rolled_back"] = time.time()
        backups.write_state(path, state)
    for line in failed:
        err.write(f"could not put back {line}\n")
    if failed:
        err.write(
            f"`lbfw rollback {backup.id} --whole-tables` restores those tables as saved (rules added since are lost)\n"
        )
        return 1
    return 0


def _choose(folder: str, backup_id: Optional[str]) -> str:
    from ..fix import backup as backups

    paths = backups.list_backups(folder)
    if backup_id:
        for path in paths:
            if os.path.basename(path) == backup_id:
                return path
        raise InputError(f"no backup {backup_id!r} here (`lbfw rollback --list` shows them)", path=folder)
    if not paths:
        raise InputError("no lbfw backup here", path=folder)
    return paths[-1]


def _list(folder: str, out: IO[str]) -> int:
    from ..fix import backup as backups

    for path in backups.list_backups(folder):
        try:
            backup = backups.load_backup(path)
            state = str(backups.read_state(path).get("state"))
        except InputError as err:
            out.write(f"{os.path.basename(path)}  REFUSED: {err.message}\n")
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(backup.created))
        changes = sum(len(c) for c in backup.changes.values())
        tables = ", ".join(
            [f"{r.backend} {r.family} {r.table}" for r in backup.tables] + [saved.path for saved, _ in backup.managed]
        )
        out.write(f"{backup.id}  {when}  {state:<12} {changes} change(s)  {tables}\n")
    return 0


def _diff(backup, state: dict, whole_tables: bool) -> str:
    """The live tables against what the rollback leaves (a unified diff)."""
    from ..backends import NFTABLES, backend_of, comparable
    from ..fix.backup import applied_changes
    from ..fix.files import render_diff
    from ..fix.managed import saved_diff

    applied = applied_changes(state, backup)
    parts = [saved_diff(backup.managed)]
    for ref, saved in backup.tables.items():
        now = backend_of(ref).dump(ref)
        if whole_tables:
            after = saved
        else:
            lines = now.split("\n")
            for change in applied.get(ref, backup.changes.get(ref, [])):
                for i, line in enumerate(lines):
                    if ref.backend == NFTABLES:
                        hit = change.handle is not None and line.rstrip().endswith(f"# handle {change.handle}")
                        body = (
                            line[: len(line) - len(line.lstrip())] + (change.old or "") + f" # handle {change.handle}"
                        )
                    else:
                        hit = comparable(line) == comparable(f"-A {change.chain} {change.new}")
                        body = f"-A {change.chain} {change.old}"
                    if hit:
                        if change.old is None:
                            del lines[i]
                        else:
                            lines[i] = body
                        break
            after = "\n".join(lines)
        parts.append(render_diff(ref.key, _without_stamps(now), _without_stamps(after)))
    return "".join(parts)


def _without_stamps(text: str) -> str:
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not line.startswith("# Generated by") and not line.startswith("# Completed on")
    )

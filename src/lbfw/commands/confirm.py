"""`lbfw confirm [ID]`: keep the rules of a pending `lbfw fix --apply` (from any connection).

`lbfw fix --apply --detach` (or one waiting at its prompt) leaves its transaction pending
until its deadline; `lbfw confirm` makes it permanent, so automation that applies over one
connection confirms over a second one, and a host it loses gets its rules back. Without ID,
the newest pending transaction.

Exit codes: 0 confirmed (now or before); 1 the deadline had passed: the previous rules are
back (reverted by the watchdog, lbfw, or this command); 2 no such transaction, an untrusted
backup directory.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Optional

from ..errors import InputError


def run(transaction: Optional[str] = None, backup_dir: Optional[str] = None, stderr: Optional[IO[str]] = None) -> int:
    from ..fix import backup as backups
    from ..fix.live import need_root, revert

    err = stderr or sys.stderr
    need_root("lbfw confirm")
    folder = backup_dir or backups.default_dir()
    paths = backups.list_backups(folder)
    if transaction:
        paths = [p for p in paths if os.path.basename(p) == transaction]
        if not paths:
            raise InputError(f"no transaction {transaction!r} here", path=folder)
    else:
        paths = [p for p in paths if backups.read_state(p).get("state") == "pending"][-1:]
        if not paths:
            raise InputError("no pending transaction here", path=folder)
    path = paths[0]
    backups.load_backup(path)  # only a backup lbfw can trust
    with backups.locked(path):
        state = backups.read_state(path)
        now = state.get("state")
        if now == "pending" and time.time() < float(state["deadline"]):
            state["state"] = "confirmed"
            state["confirmed"] = time.time()
            backups.write_state(path, state)
            err.write(f"confirmed {os.path.basename(path)}: the new rules stay\n")
            return 0
    if now == "confirmed":
        err.write(f"{os.path.basename(path)} was confirmed already: the new rules stay\n")
        return 0
    if now == "pending":
        revert(path, lambda text: err.write(text + "\n"), "the confirmation deadline had passed")
    err.write(
        f"{os.path.basename(path)}: too late: the deadline passed and the previous rules are back; "
        "nothing was confirmed\n"
    )
    return 1

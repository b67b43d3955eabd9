"""What legacy iptables and iptables-nft share: dumps in iptables-save syntax and one
content-addressed `iptables-restore --noflush` transaction per table.

A change of rule R into R' in chain C is the restore script

    *TABLE
    -D C R          (by specification: the whole restore fails when R is gone or changed)
    -I C N R'       (N: the position R holds in the dump read just before)
    COMMIT

so a rule is never replaced by position (`-R C N` replaced another program's rule when it
inserted at the top meanwhile: the bug this replaces). After the transaction the table is read
again, and the rules of the touched chains that stood there before must stand in the same
order, with R' where R was (rules other programs added or removed meanwhile do not count). If
another program changed the chain between the dump and the restore, R' may stand one place
off: it is moved before the rule that follows it (again delete by specification, insert), up
to REPLACEMENTS times; if it still is not in place, the change is undone and `RuleMoved` says
nothing was changed. The subclasses say how the dump and the restore are kept together
(legacy: the xtables lock).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

from ..errors import ApplyError
from .base import TOOLS, Backend, Change, RuleMoved, TableRef, comparable, run_tool

# How often a rule another program's change put out of place is moved back before lbfw gives up.
REPLACEMENTS = 10

if TYPE_CHECKING:
    from ..fix.plan import LiveTarget
    from ..sandbox.proof import Load


def chain_rules(text: str) -> dict[str, list[str]]:
    """{chain: [rule after `-A CHAIN `]} of an iptables-save dump, in order."""
    chains: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            parts = line.split(None, 2)
            chains.setdefault(parts[1], []).append(parts[2] if len(parts) > 2 else "")
    return chains


def rule_line(lines: list[str], chain: str, index: int) -> Optional[int]:
    """1-based line number of rule ``index`` (1-based) of ``chain`` in an iptables-save dump."""
    prefix = f"-A {chain} "
    seen = 0
    for number, text in enumerate(lines, 1):
        if text.startswith(prefix):
            seen += 1
            if seen == index:
                return number
    return None


def rule_body(line: str, chain: str) -> str:
    """A dump line without its `-A CHAIN ` (the rule as -D and -I take it)."""
    text = line.strip()
    prefix = f"-A {chain} "
    return text[len(prefix) :] if text.startswith(prefix) else text


def same_order(now: list[str], expected: list[str]) -> bool:
    """Whether the rules of ``now`` that ``expected`` also holds stand in the expected order (rules
    other programs added or removed meanwhile aside: they decide nothing about lbfw's place)."""
    have = {comparable(r) for r in now}
    want = {comparable(r) for r in expected}
    return [comparable(r) for r in now if comparable(r) in want] == [
        comparable(r) for r in expected if comparable(r) in have
    ]


def place(table: str, chain: str, rule: str, now: list[str], expected: list[str]) -> Optional[str]:
    """The restore script that moves ``rule`` right before the rule that follows it in
    ``expected`` (and still stands in ``now``), or to the end; None when ``rule`` is not in
    ``now`` exactly once."""
    key = comparable(rule)
    if [comparable(r) for r in now].count(key) != 1:
        return None
    keys = [comparable(r) for r in expected]
    rest = [comparable(r) for r in now if comparable(r) != key]
    follower = next((k for k in keys[keys.index(key) + 1 :] if k in rest), None)
    where = f"-I {chain} {rest.index(follower) + 1} {rule}" if follower is not None else f"-A {chain} {rule}"
    return f"*{table}\n-D {chain} {rule}\n{where}\nCOMMIT\n"


class IptablesBackend(Backend):
    """iptables-save dumps, iptables-restore --noflush transactions (see the module docstring)."""

    name = ""
    sandbox_backend = ""  # the name sandbox/netns.py loads this backend by

    def tools(self, ref: TableRef) -> dict[str, str]:
        found = TOOLS.get((self.name, ref.family))
        if found is None:
            raise ApplyError(f"no {self.name} tools for family {ref.family}")
        return found

    @contextlib.contextmanager
    def guarded(self) -> Iterator[Optional[dict]]:
        """Held from the dump before a transaction to the dump after it; yields the
        environment the restore tool runs with (None: ours)."""
        yield None

    def restore_argv(self, ref: TableRef) -> list[str]:
        return [self.tools(ref)["restore"], "--noflush"]

    def dump(self, ref: TableRef) -> str:
        save = self.tools(ref)["save"]
        proc = run_tool([save, "-t", ref.table])
        if proc.returncode != 0:
            raise ApplyError(f"{save} -t {ref.table} failed: {proc.stderr.strip()}")
        return proc.stdout

    def locate(self, lines: list[str], target: LiveTarget) -> Optional[int]:
        if target.index is None:
            return None
        return rule_line(lines, target.chain, target.index)

    def change_of(
        self,
        chain: str,
        old_line: Optional[str],
        new_line: str,
        place: Optional[int],
        anchor_line: Optional[str] = None,
    ) -> Change:
        if old_line is None:
            raise ApplyError(f"chain {chain}: lbfw inserts iptables rules only by replacing one; nothing was changed")
        return Change(chain, rule_body(old_line, chain), rule_body(new_line, chain))

    def script(self, ref: TableRef, text: str, changes: list[Change]) -> tuple[str, dict[str, list[str]]]:
        """(the restore input, the touched chains as they must read after it)."""
        chains = chain_rules(text)
        touched: dict[str, list[str]] = {}
        lines = [f"*{ref.table}"]
        for change in changes:
            if change.old is None or change.new is None:
                raise ApplyError(f"chain {change.chain}: only replacements are made in iptables tables")
            rules = touched.setdefault(change.chain, list(chains.get(change.chain, [])))
            want = comparable(change.old)
            now = [i for i, rule in enumerate(rules) if comparable(rule) == want]
            if not now:
                raise RuleMoved(
                    f"{ref.key} {change.chain}: the rule `{change.old}` is not there any more (it changed or was "
                    "deleted since lbfw read it); nothing was changed. Run `lbfw fix --dry-run` again."
                )
            same = sum(1 for c in changes if c.chain == change.chain and comparable(c.old or "") == want)
            if len(now) > same:
                # -D by specification takes the first copy: with copies lbfw does not change, that
                # could be another one than the rule planned on.
                raise RuleMoved(
                    f"{ref.key} {change.chain}: {len(now)} identical copies of `{change.old}`; lbfw cannot tell "
                    "which one it read; nothing was changed"
                )
            lines.append(f"-D {change.chain} {change.old}")
            lines.append(f"-I {change.chain} {now[0] + 1} {change.new}")
            rules[now[0]] = change.new
        lines.append("COMMIT")
        return "\n".join(lines) + "\n", touched

    def _restore(self, ref: TableRef, script: str, env: Optional[dict]) -> None:
        proc = run_tool(self.restore_argv(ref), input=script, env=env)
        if proc.returncode == 0:
            return
        complaint = " ".join(proc.stderr.split())
        tool_name = self.tools(ref)["restore"]
        failed = re.search(r"line (\d+) failed", complaint)
        lines = script.split("\n")
        if failed and lines[int(failed.group(1)) - 1].startswith("-D "):
            raise RuleMoved(
                f"{tool_name} --noflush found no `{lines[int(failed.group(1)) - 1]}`: the rule changed since "
                "lbfw read it; nothing was changed"
            )
        raise ApplyError(f"{tool_name} --noflush failed ({complaint}); nothing was changed")

    def apply(self, ref: TableRef, changes: list[Change], strict: bool = True) -> list[Change]:
        if not changes:
            return []
        with self.guarded() as env:
            script, expected = self.script(ref, self.dump(ref), changes)
            self._restore(ref, script, env)
            for _ in range(REPLACEMENTS):
                after = chain_rules(self.dump(ref))
                misplaced = [
                    (chain, c.new)
                    for chain, rules in expected.items()
                    for c in changes
                    if c.chain == chain and not same_order(after.get(chain, []), rules)
                ]
                if not misplaced:
                    return list(changes)
                chain, rule = misplaced[0]
                moved = place(ref.table, chain, rule or "", after.get(chain, []), expected[chain])
                if moved is None:
                    break
                self._restore(ref, moved, env)
        if strict:
            self.apply(ref, [c.inverse() for c in reversed(changes)], strict=False)
        raise RuleMoved(
            f"{ref.key}: another program kept changing {', '.join(expected)} while lbfw changed it, and lbfw "
            "could not put its rule where the old one stood: "
            + ("lbfw undid its change; nothing changed." if strict else "check the chain by hand.")
        )

    def restore(self, ref: TableRef, text: str) -> None:
        restore_tool = self.tools(ref)["restore"]
        if not text.strip():
            raise ApplyError(f"{ref.key}: an empty iptables backup cannot be restored (nothing was changed)")
        proc = run_tool([restore_tool, "-w"] if self.name == "legacy" else [restore_tool], input=text)
        if proc.returncode != 0:
            raise ApplyError(f"{restore_tool} of table {ref.table} failed: {proc.stderr.strip()}")

    def sandbox_load(self, ref: TableRef, text: str, source: str) -> Load:
        from ..sandbox.proof import Load

        return Load("iptables", ref.family, self.sandbox_backend, text, source)

"""Native nftables: rules addressed by handle, changed in one `nft -f` transaction.

A handle names one rule for the table's life: nft never gives it to another rule, so
`replace rule FAMILY TABLE CHAIN handle N RULE` cannot hit another program's rule (a rule
deleted since lbfw read it makes the whole transaction fail: nothing changes). What a handle
does not say is whether the rule still reads as lbfw read it. nft 1.0.6 has no compare-and-swap
(no `reset`/`destroy` with a condition, no generation check a script can name), so the check
is a dump of the table right before the transaction, compared rule by rule: the only change
that can slip between it and the transaction is another program's own `replace rule ... handle
N` of that very rule within those milliseconds (which lbfw's replace would then overwrite).
The dump after the transaction checks that every rule lbfw made stands in its chain under
the handle nft gave it (its text is not compared: nft may list a set's elements in another
order than lbfw wrote them).

nft 1.0.6 aborts `replace` of a rule holding an anonymous interval set or map (`BUG: unhandled
op 2`, evaluate.c interval_set_eval): such a rule is inserted before itself and the old one
deleted in the same transaction, so it gets a new handle (read back from `--echo`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

from ..errors import ApplyError
from .base import NFTABLES, Backend, Change, RuleMoved, TableRef, comparable, handle_of, run_tool

if TYPE_CHECKING:
    from ..fix.plan import LiveTarget
    from ..sandbox.proof import Load

_ECHOED_INSERT = re.compile(r"^\s*(?:insert|add) rule .*# handle (\d+)\s*$", re.M)
_CHAIN = re.compile(r"^\s*chain\s+(\S+)\s*\{")
_CHAIN_PROPERTY = ("type ", "policy ", "comment ", "devices ", "device ")


def rules_by_handle(text: str) -> dict[int, tuple[str, str]]:
    """{handle: (chain, rule as compared)} of an `nft -a list table` dump (a rule nft wraps
    over several lines is joined)."""
    out: dict[int, tuple[str, str]] = {}
    chain: Optional[str] = None
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        m = _CHAIN.match(raw)
        if m:
            chain, pending = m.group(1), []
            continue
        if line == "}" and not pending:
            chain = None
            continue
        if chain is None or not line or (not pending and line.startswith(_CHAIN_PROPERTY)):
            continue
        pending.append(line)
        handle = handle_of(line)
        if handle is not None:
            out[handle] = (chain, comparable(" ".join(pending)))
            pending = []
    return out


def rule_text(line: str) -> str:
    """A dump line as a rule nft takes: the handle comment and surrounding blanks dropped."""
    return " ".join(re.sub(r"\s*# handle \d+\s*$", "", line).split())


class Nftables(Backend):
    name = NFTABLES

    def dump(self, ref: TableRef) -> str:
        proc = run_tool(["nft", "-a", "list", "table", ref.family, ref.table])
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return ""
            raise ApplyError(f"nft list table {ref.family} {ref.table} failed: {proc.stderr.strip()}")
        return proc.stdout

    def locate(self, lines: list[str], target: LiveTarget) -> Optional[int]:
        for number, text in enumerate(lines, 1):
            handle = handle_of(text)
            # chain/table/set headers end with "{ # handle N"; a rule's anonymous set does not
            if handle == target.handle and not re.sub(r"\s*# handle \d+\s*$", "", text).rstrip().endswith("{"):
                return number
        return None

    def change_of(
        self,
        chain: str,
        old_line: Optional[str],
        new_line: str,
        place: Optional[int],
        anchor_line: Optional[str] = None,
    ) -> Change:
        if old_line is None:
            if anchor_line is None:
                raise ApplyError(f"chain {chain}: an inserted rule needs the rule it goes before")
            return Change(chain, None, rule_text(new_line), place, rule_text(anchor_line))
        return Change(chain, rule_text(old_line), rule_text(new_line), place)

    def _where(self, ref: TableRef, chain: str) -> str:
        return f"{ref.family} {ref.table} {chain}"

    def _check(self, ref: TableRef, rules: dict, chain: str, handle: Optional[int], text: str, what: str) -> int:
        """The handle of the rule reading ``text`` in ``chain``: ``handle`` when it still does,
        else (no handle known) the one such rule in the chain; RuleMoved otherwise."""
        want = comparable(text)
        if handle is not None:
            now = rules.get(handle)
            if now == (chain, want):
                return handle
            found = f"now: {now[1]!r}" if now else "gone"
            raise RuleMoved(
                f"{ref.key} {chain} handle {handle}: {what} changed since lbfw read it (read: {text!r}, {found}); "
                "nothing was changed. Run `lbfw fix --dry-run` again."
            )
        same = [h for h, (c, t) in rules.items() if c == chain and t == want]
        if len(same) != 1:
            raise RuleMoved(
                f"{ref.key} {chain}: {len(same)} rules read {text!r} (lbfw needs exactly one); nothing was changed"
            )
        return same[0]

    def script(self, ref: TableRef, text: str, changes: list[Change]) -> tuple[str, list[tuple[Change, str]]]:
        """(the nft -f input, [(change, "keep" | "insert")]: how each one gets its handle)."""
        rules = rules_by_handle(text)
        lines, how = [], []
        for change in changes:
            where = self._where(ref, change.chain)
            if change.old is None:
                assert change.new is not None and change.anchor is not None
                anchor = self._check(
                    ref, rules, change.chain, change.handle, change.anchor, "the rule to insert before"
                )
                lines.append(f"insert rule {where} handle {anchor} {change.new}")
                how.append((change, "insert"))
                continue
            handle = self._check(ref, rules, change.chain, change.handle, change.old, "the rule")
            if change.new is None:
                lines.append(f"delete rule {where} handle {handle}")
                how.append((Change(change.chain, change.old, None, handle), "keep"))
            elif "{" in change.new or "{" in change.old:
                lines.append(f"insert rule {where} handle {handle} {change.new}")
                lines.append(f"delete rule {where} handle {handle}")
                how.append((change, "insert"))
            else:
                lines.append(f"replace rule {where} handle {handle} {change.new}")
                how.append((Change(change.chain, change.old, change.new, handle), "keep"))
        return "\n".join(lines) + "\n", how

    def apply(self, ref: TableRef, changes: list[Change], strict: bool = True) -> list[Change]:
        if not changes:
            return []
        script, how = self.script(ref, self.dump(ref), changes)
        proc = run_tool(["nft", "--echo", "--handle", "-f", "-"], input=script)
        if proc.returncode != 0:
            complaint = " ".join(proc.stderr.split())
            if "No such file or directory" in complaint:  # a handle that is gone
                raise RuleMoved(f"nft -f: a rule lbfw read is gone ({complaint}); nothing was changed")
            raise ApplyError(f"nft -f failed ({complaint}); nothing was changed")
        handles = iter(int(h) for h in _ECHOED_INSERT.findall(proc.stdout))
        made = []
        for change, kind in how:
            handle = next(handles, None) if kind == "insert" else change.handle
            made.append(Change(change.chain, change.old, change.new, handle))
        after = rules_by_handle(self.dump(ref))
        wrong = [c for c in made if c.new is not None and after.get(c.handle or -1, ("",))[0] != c.chain]
        if strict and wrong:
            self.apply(ref, [c.inverse() for c in reversed(made) if c not in wrong], strict=False)
            raise RuleMoved(
                f"{ref.key}: another program changed the rule at the moment lbfw did; lbfw undid its own "
                "change; nothing changed. Run `lbfw fix --apply` again."
            )
        return made

    def restore(self, ref: TableRef, text: str) -> None:
        # One transaction: create-if-missing, delete, then the saved table (if it existed).
        script = f"add table {ref.family} {ref.table}\ndelete table {ref.family} {ref.table}\n{text}"
        proc = run_tool(["nft", "-f", "-"], input=script)
        if proc.returncode != 0:
            raise ApplyError(f"restoring nft table {ref.family} {ref.table} failed: {proc.stderr.strip()}")

    def sandbox_load(self, ref: TableRef, text: str, source: str) -> Load:
        from ..sandbox.proof import Load

        return Load("nft", None, None, text, source)

"""What `lbfw fix` changes through the managers on the live host: ufw's commands for a narrow rule in
user.rules, fail2ban's jail.local. Each is a ManagerChange (fix/managed.py) that `--apply` makes
inside its transaction (backup, confirmation, watchdog, rollback).

`lbfw fix --write` (no SOURCE) writes the managers' configuration files alone, outside a transaction,
keeping a 0600 backup beside each file it replaces (fix/files.py), then reloads fail2ban.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

from ..checks.owners import FAIL2BAN, UFW
from ..errors import ApplyError
from ..managers import fail2ban, ufw
from .files import FileFix, digest, render_diff, write_fixed
from .managed import ManagerChange, run

Say = Callable[[str], object]


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except OSError:
        return None


def ufw_changes(refusals: Sequence[Any], style: str, read: Callable[[str], Optional[str]] = _read) -> dict:
    """{Refusal: ManagerChange} for the planner's refusals of rules ufw made with `ufw allow` (found in
    user.rules or user6.rules by their `### tuple ###`): its loopback twin added, then the rule deleted.
    A refusal whose rule is not in user.rules (before.rules, a dump) gets none."""
    out: dict = {}
    texts: dict[str, Optional[str]] = {}
    for refusal in refusals:
        words = (refusal.rule or "").split()
        if refusal.owner != UFW or words[:1] != ["-A"] or len(words) < 2:
            continue
        chain = words[1]
        path = ufw.USER6_RULES if chain.startswith("ufw6-") else ufw.USER_RULES
        if not chain.startswith(("ufw-user-", "ufw6-user-")):
            continue
        if path not in texts:
            texts[path] = read(path)
        text = texts[path]
        made = ufw.find(ufw.user_rules(text), chain, refusal.rule) if text else None
        if made is None:
            continue
        commands = ufw.fix_commands(made, style)
        if not commands:
            continue
        why = f"{refusal.where}: {refusal.check}: {path}:{made.line} (`ufw {' '.join(made.words())}`)"
        out[refusal] = ManagerChange(UFW, (ufw.USER_RULES, ufw.USER6_RULES), commands, (), why)
    return out


def config_fixes(findings: list, host: Any) -> list[FileFix]:
    """[FileFix] for the LB008 findings (jail.local, or the jail.d/*.local that sets a narrow value)."""
    if host is None or not any(f.check == "LB008" for f in findings):
        return []
    return [FileFix(path, old, new, digest(old)) for path, old, new in fail2ban.fixes(host.fail2ban_jails)]


def fail2ban_change(findings: list, host: Any) -> Optional[ManagerChange]:
    """The LB008 fix as one ManagerChange: jail.local (and any jail.d/*.local) written, then
    `fail2ban-client reload`; None when there is nothing to fix."""
    fixes = config_fixes(findings, host)
    if not fixes:
        return None
    where = ", ".join(sorted({f"{f.source}:{f.line}" if f.line else f.source for f in findings if f.check == "LB008"}))
    return ManagerChange(
        FAIL2BAN, tuple(f.path for f in fixes), (), tuple((f.path, f.new) for f in fixes), f"LB008: {where}"
    )


def diff(fixes: list) -> str:
    return "".join(render_diff(f.path, f.old, f.new) for f in fixes)


def write_and_reload(fixes: list, say: Say) -> None:
    """`lbfw fix --write`: write every fix (an existing file replaced with a 0600 backup beside it, a new
    one made 0644), then reload fail2ban (fix/managed.py run, with no file of its own to write)."""
    existing = [f for f in fixes if os.path.exists(f.path)]
    for path, backup in write_fixed(existing):
        say(f"wrote {path} (the original is in {backup})")
    for fix in fixes:
        if fix in existing:
            continue
        fd = os.open(fix.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(fix.new)
        say(f"wrote {fix.path} (a new file)")
    if not fixes:
        return
    try:
        run([ManagerChange(FAIL2BAN, (), (), (), "lbfw fix --write")], say)
    except ApplyError as err:
        raise ApplyError(f"{err.message}; jail.local is written") from None

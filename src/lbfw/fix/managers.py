"""The managers' own configuration, fixed where lbfw can do it safely: fail2ban's jail.local.

`lbfw fix` shows the diff; `--write` (no SOURCE) or `--apply` writes it, keeping a 0600 backup of
a file that was there (fix/files.py), then runs the manager's reload command (argument lists only).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import ApplyError
from ..managers import fail2ban
from .files import FileFix, digest, render_diff, write_fixed


def config_fixes(findings: list, host) -> list:
    """[FileFix] for the LB008 findings (jail.local, or the jail.d/*.local that sets a narrow value)."""
    if host is None or not any(f.check == "LB008" for f in findings):
        return []
    return [FileFix(path, old, new, digest(old)) for path, old, new in fail2ban.fixes(host.fail2ban_jails)]


def diff(fixes: list) -> str:
    return "".join(render_diff(f.path, f.old, f.new) for f in fixes)


def write_and_reload(fixes: list, say) -> None:
    """Write every fix (a new file 0644, an existing one replaced with a backup), then reload fail2ban."""
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
    tool = shutil.which(fail2ban.RELOAD[0])
    if tool is None:
        say(f"warning: {fail2ban.RELOAD[0]} not found: run `{' '.join(fail2ban.RELOAD)}` where fail2ban runs")
        return
    try:
        proc = subprocess.run(
            [tool, *fail2ban.RELOAD[1:]], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ApplyError(f"`{' '.join(fail2ban.RELOAD)}` failed: {error}; jail.local is written") from None
    if proc.returncode != 0:
        raise ApplyError(
            f"`{' '.join(fail2ban.RELOAD)}` failed: {(proc.stderr or proc.stdout).strip()}; jail.local is written"
        )
    say(f"ran `{' '.join(fail2ban.RELOAD)}`")

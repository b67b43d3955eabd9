"""LB008: fail2ban runs and its ignore list leaves 127.0.0.2-127.255.255.255 bannable."""

from __future__ import annotations

from ..managers.fail2ban import JAIL_CONF, JAIL_LOCAL, fixed_value, narrow
from ..model import Ruleset
from ..results import Finding
from .context import CheckContext
from .fixes import CheckFix
from .owners import FAIL2BAN, owner_of

ID = "LB008"
NAME = "fail2ban-ignoreip-narrow"
SEVERITY = "warning"
SUMMARY = "fail2ban runs and may ban loopback clients other than 127.0.0.1"
# Every finding is fixed, in jail.local (or the jail.d/*.local that sets it): not a rule edit, so not the
# fix planner's; `lbfw fix` on the live host makes it (fix/managers.py).
FIX = CheckFix("always", config="jail.local")

DOC = """\
## What it does
On a live host where fail2ban runs (its f2b-* chains or `inet f2b-table` are in the kernel, or its
server's socket is there), reads jail.conf, jail.d/*.conf, jail.local and jail.d/*.local in
fail2ban's order and reports every `[DEFAULT]` or jail whose `ignoreip` does not cover
127.0.0.0/8, naming the file and line that sets it.

## Why is this bad?
fail2ban's `ignoreself` spares 127.0.0.1 and ::1 only, and jail.conf ships
`ignoreip = 127.0.0.1/8 ::1` commented out. During a load test from clients bound to 127.0.0.2
and up, failed logins or rate limits get them banned: fail2ban inserts `-s 127.0.0.2 -j REJECT`
ahead of the lo accept. `ignoreip = 127.0.0.1` is the same narrow mistake as a `-s 127.0.0.1` rule.

## Example
```
[DEFAULT]
ignoreip = 127.0.0.1 192.0.2.10
```

## Use instead
```
[DEFAULT]
ignoreip = 127.0.0.1/8 ::1 192.0.2.10
```
then `fail2ban-client reload`.

## Fix safety
`lbfw fix` shows the jail.local diff (a narrow value set in a jail.d/*.local is fixed in that
file, read after jail.local); the other entries of the list are kept. `lbfw fix --apply` writes
it and runs `fail2ban-client reload` inside the transaction: the file is in the backup, and a
change that is not confirmed (or `lbfw rollback`) puts it back byte for byte and reloads
fail2ban again. `lbfw fix --write` writes it alone, with a 0600 backup beside it. The fix makes
fail2ban ignore all of 127.0.0.0/8: a local client failing logins on purpose is never banned.

## References
- fail2ban jail.conf(5): ignoreip, ignoreself
"""


def _runs(ruleset: Ruleset) -> bool:
    host = ruleset.host
    if host is not None and host.fail2ban_running:
        return True
    return any(
        owner_of(t, None) == FAIL2BAN or any(owner_of(t, c) == FAIL2BAN for c in t.chains.values())
        for t in ruleset.tables
    )


def check(ctx: CheckContext) -> list[Finding]:
    host = ctx.ruleset.host
    if host is None or not host.fail2ban_jails or not _runs(ctx.ruleset):
        return []
    out = []
    for setting in narrow(host.fail2ban_jails):
        shown = f"ignoreip = {setting.value}" if setting.value else "no ignoreip (ignoreself alone)"
        message = (
            f"fail2ban [{setting.section}]: {shown}: 127.0.0.2 and up can be banned (ignoreself covers "
            f"127.0.0.1 and ::1 only). Set `ignoreip = {fixed_value(setting.value)}` in {JAIL_LOCAL}, "
            "then `fail2ban-client reload` (`lbfw fix` shows the diff)."
        )
        out.append(
            Finding(
                check=ID,
                severity=SEVERITY,
                message=message,
                source=setting.path or JAIL_CONF,
                line=setting.line,
                owner=FAIL2BAN,
                extra={"section": setting.section},
            )
        )
    return out

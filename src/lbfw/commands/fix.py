"""`lbfw fix`: the diff by default, `--write` for files, `--apply` for the live host.

Glue only: reading and auditing come from lbfw.pipeline, the planning from lbfw.fix.plan,
the file writes from lbfw.fix.files, the kernel changes from lbfw.fix.live, the before/after
proof in private namespaces from lbfw.sandbox.proof.

Output: the diff (data) on stdout, byte-exact when piped, coloured only on a terminal; what
each edit does, its fix safety and every refusal on stderr.

Exit codes: 0 nothing left to fix (or everything fixed, or with --detach: applied and left
pending for `lbfw confirm`), 1 a dry run with changes to make, refusals left, an apply that was
not confirmed and was rolled back, or a rule that moved or changed under lbfw (nothing
changed); 2 usage, input or apply errors, an untrusted backup directory (the kernel and the
files are as they were); 128+N when signal N interrupted the confirmation (rolled back).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, NamedTuple, Optional

from ..errors import ApplyError, InputError, LbfwError, UsageError
from ..fix.managed import shown
from ..fix.plan import FIXABLE, STYLES, FixPlan, plan_fixes, read_text
from ..pipeline import audit_ruleset, read_ruleset
from ._common import choose

if TYPE_CHECKING:
    from ..model import Ruleset
    from ..results import Finding


def _use_color(stream) -> bool:
    return (
        hasattr(stream, "isatty")
        and stream.isatty()
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )


def audit(ruleset: Ruleset) -> list[Finding]:
    """The findings of an audit of ``ruleset`` (what the plan fixes)."""
    return audit_ruleset(ruleset)[0]


def unfixable(findings, err) -> bool:
    """Say which findings (warning and above: what fails an audit) no fix exists for, and why;
    True when there is one: fix then exits 1, as audit does."""
    from ..checks import BY_ID, at_or_above

    left = [f for f in findings if not BY_ID[f.check].FIX.fixable and at_or_above([f], "warning")]
    for f in left:
        where = (
            f.rule.origin.where()
            if f.rule is not None and f.rule.origin is not None
            else (
                f"{f.source}:{f.line}" if f.line is not None else " ".join(x for x in (f.source, f.table, f.chain) if x)
            )
        )
        err.write(
            f"{where}: {f.check}: not fixed: {BY_ID[f.check].NAME} has no automatic fix "
            f"(`lbfw rules {f.check}` says what to change)\n"
        )
    return bool(left)


def describe(plan: FixPlan, err, through: Optional[dict] = None) -> None:
    """What each edit does and its fix safety, and every refusal (on stderr); a refusal ``through``
    maps to a ManagerChange (fix/managed.py) is followed by the manager commands lbfw runs instead."""
    through = through or {}
    safety_seen = set()
    for edit in plan.edits:
        for check, how, safety in edit.notes:
            err.write(f"{edit.where}: {check}: {how}\n")
            # next to every edit; the full text once, then a pointer to it
            err.write(f"  {safety}\n" if safety not in safety_seen else "  Fix safety: as above.\n")
            safety_seen.add(safety)
    for refusal in plan.refusals:
        err.write(f"{refusal.where}: {refusal.check}: not fixed: {refusal.why}\n")
        if refusal.rule:
            err.write(f"  rule: {refusal.rule.strip()}\n")
        change = through.get(refusal)
        if change is not None:
            err.write(f"  instead, through {change.manager} (`lbfw fix --apply` runs this in its transaction):\n")
            for argv in change.steps():
                err.write(f"  runs `{shown(argv)}`\n")
        elif refusal.owner == "ufw" and refusal.rule:
            from ..managers import ufw

            chain = next((w for w in refusal.where.replace(":", " ").split() if w.startswith(("ufw-", "ufw6-"))), "")
            for command in ufw.commands(chain, refusal.rule):
                err.write(f"  instead: `{command}`\n")


def run(
    sources=(),
    dry_run: bool = False,
    write: bool = False,
    apply: bool = False,
    style: str = "interface",
    backup_dir: Optional[str] = None,
    confirm_timeout: int = 30,
    yes: bool = False,
    detach: bool = False,
    format: str = "text",
    persist: bool = False,
    verify: bool = False,
    input_format: str = "auto",
    reader: str = "auto",
    stdout=None,
    stderr=None,
    stdin=None,
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    choose("--style", style, STYLES)
    choose("--format", format, ("text", "json"))
    sources = list(sources)
    if detach and not apply:
        raise UsageError("--detach goes with --apply")
    if detach and yes:
        raise UsageError("--detach leaves the change for `lbfw confirm`; --yes confirms it at once: choose one")
    if write and apply:
        raise UsageError("--write (files) and --apply (the live host) exclude each other")
    if (write or apply) and dry_run:
        raise UsageError("--dry-run cannot be combined with --write or --apply")
    if verify and (write or apply):
        raise UsageError("--verify goes with --dry-run (--apply always proves the fix in a namespace)")
    if persist and not apply:
        raise UsageError("--persist goes with --apply (for files, --write is the fix)")
    if confirm_timeout < 1:
        raise UsageError("--confirm-timeout must be at least 1 second")
    if "-" in sources:
        raise UsageError("standard input cannot be fixed in place: name the file")
    if sources:
        if format == "json":
            raise UsageError("--format json is for the live host (--apply --detach prints the transaction)")
        if apply:
            raise UsageError("--apply fixes the live host and takes no SOURCE (use --write for files)")
        return _files(sources, write, style, verify, input_format, reader, out, err)
    from ..fix.backup import default_dir

    options = _LiveOptions(
        apply,
        write,
        style,
        backup_dir or default_dir(),
        confirm_timeout,
        yes,
        detach,
        format == "json",
        persist,
        verify,
        reader,
    )
    return _live(options, out, err, stdin or sys.stdin)


# --------------------------------------------------------------------------- files


def _files(sources, write, style, verify, input_format, reader, out, err) -> int:
    from ..fix.files import colorize, file_fixes, write_fixed

    ruleset = read_ruleset(sources, input_format, reader)
    texts = {}
    for source in sources:
        try:
            texts[source] = read_text(source)
        except OSError as error:
            raise InputError(f"cannot read: {error.strerror}", path=source) from None
    findings = audit(ruleset)
    plan = plan_fixes(ruleset, findings, style, texts=texts)
    fixes = file_fixes(plan)
    describe(plan, err)
    if not write:
        diff = "".join(f.diff() for f in fixes)
        out.write(colorize(diff) if _use_color(out) else diff)
        out.flush()
        if verify and fixes:
            from ..sandbox.proof import file_loads, prove

            fixed = dict(texts)
            fixed.update({f.path: f.new for f in fixes})
            prove(ruleset, file_loads(ruleset, sources, texts), file_loads(ruleset, sources, fixed), err)
        if not fixes and not plan.refusals:
            if unfixable(findings, err):
                return 1
            err.write("nothing to fix\n")
        return 1 if (fixes or plan.refusals) else 0
    if not fixes:
        stuck = unfixable(findings, err)
        err.write("nothing to fix\n" if not (plan.refusals or stuck) else "nothing written\n")
        return 1 if (plan.refusals or stuck) else 0
    written = write_fixed(fixes)
    for path, backup in written:
        err.write(f"wrote {path} (the original is in {backup})\n")
    # Re-audit what was written: the fix must leave no LB002/LB003 behind.
    again = read_ruleset([f.path for f in fixes], input_format, reader)
    left = [f for f in audit(again) if f.check in FIXABLE]
    for finding in left:
        err.write(f"{finding.source}:{finding.line}: {finding.check} still reported: {finding.message}\n")
    return 1 if (left or plan.refusals) else 0


# --------------------------------------------------------------------------- the live host


def _live_loads(live, plan: FixPlan) -> tuple:
    """(before, after) loads of every live table, the after with the plan's edits made."""
    from ..backends import backend_of
    from ..fix.live import fixed_text

    before, after = [], []
    for ref, text in live.dumps.items():
        edits = plan.edits_for(ref.key)
        new = fixed_text(text, edits) if edits else text
        before.append(backend_of(ref).sandbox_load(ref, text, ref.key))
        after.append(backend_of(ref).sandbox_load(ref, new, ref.key))
    return before, after


class _LiveOptions(NamedTuple):
    apply: bool
    write: bool  # no SOURCE: the managers' configuration only (fail2ban's jail.local)
    style: str
    backup_dir: str
    confirm_timeout: int
    yes: bool
    detach: bool
    json: bool
    persist: bool
    verify: bool
    reader: str


def _live(opts: _LiveOptions, out, err, stdin) -> int:
    from ..fix import live as livefix
    from ..fix import managed as managed_changes
    from ..fix import managers
    from ..fix.backup import trusted_dir
    from ..fix.files import colorize, render_diff
    from ..fix.firewalld import firewalld_changes
    from ..sandbox.proof import prove

    livefix.need_root("lbfw fix --apply" if opts.apply else "lbfw fix (live)")
    tty = hasattr(stdin, "isatty") and stdin.isatty()
    if opts.apply and not (opts.yes or opts.detach) and not tty:
        raise UsageError(
            "--apply without a terminal needs --yes, or --detach and `lbfw confirm` (nobody could confirm, "
            "and lbfw will not revert at once the way iptables-apply does)"
        )
    if opts.apply and os.path.lexists(opts.backup_dir):
        trusted_dir(opts.backup_dir)  # refused before anything is read or changed
    ruleset = read_ruleset([], "auto", opts.reader)
    live = livefix.read_tables(ruleset)
    findings = audit(ruleset)
    plan = plan_fixes(ruleset, findings, opts.style, texts=live.texts, locate=livefix.make_locator(ruleset, live))
    if opts.write:
        return _configs(managers.config_fixes(findings, ruleset.host), out, err)
    through = managers.ufw_changes(plan.refusals, opts.style)
    through.update(firewalld_changes(plan.refusals, findings, opts.style))
    managed = _distinct([*through.values(), managers.fail2ban_change(findings, ruleset.host)])
    refused = [r for r in plan.refusals if r not in through]  # what neither lbfw nor a manager fixes
    describe(plan, err, through)
    for change in managed:
        if change.writes:  # the ufw ones were shown with their refusal
            managed_changes.describe([change], lambda text: err.write(text + "\n"))
    diff = managed_changes.diff(managed) + "".join(
        render_diff(ref.key, text, livefix.fixed_text(text, plan.edits_for(ref.key)))
        for ref, text in live.dumps.items()
        if plan.edits_for(ref.key)
    )
    if opts.json:
        err.write(diff)  # stdout carries the JSON document alone
    else:
        out.write(colorize(diff) if _use_color(out) else diff)
        out.flush()
    if not plan.edits and not managed:
        stuck = unfixable(findings, err)
        err.write("nothing to fix\n" if not (plan.refusals or stuck) else "nothing lbfw can fix safely\n")
        if opts.json:
            _json(out, {"transaction": None, "changes": 0, "managed": [], "refusals": len(plan.refusals)})
        return 1 if (plan.refusals or stuck) else 0
    before_loads, after_loads = _live_loads(live, plan) if plan.edits else ([], [])
    if not opts.apply:
        if opts.verify and plan.edits:
            prove(ruleset, before_loads, after_loads, err)
        if plan.edits:
            _persistence(plan_tables(plan, live), ruleset, False, opts.style, err)
        if managed:
            err.write(
                f"{len(managed)} change(s) through {', '.join(dict.fromkeys(c.manager for c in managed))}: "
                "`lbfw fix --apply` makes them with the kernel's, in one transaction (backup, confirmation, rollback)\n"
            )
        if opts.json:
            _json(
                out,
                {
                    "transaction": None,
                    "changes": len(plan.edits),
                    "managed": [_change_json(c) for c in managed],
                    "refusals": len(refused),
                    "diff": diff,
                },
            )
        return 1

    # prove it in a private namespace: the fixed tables load and nothing delivered before breaks.
    # (A manager's own commands are not proven here: the manager checks them, and the revert undoes them.)
    if plan.edits:
        try:
            _, broken = prove(ruleset, before_loads, after_loads, err)
        except LbfwError as error:
            raise ApplyError(
                f"the fix could not be proven in a private namespace: {error}; nothing was changed"
            ) from None
        if broken:
            raise ApplyError("the fix would block loopback flows that work now (see above); nothing was changed")

    def confirm(path: str, left: float) -> bool:
        if opts.yes:
            return True
        return livefix.wait_for_confirmation(left, stdin, err, livefix.confirmed_elsewhere(path))

    say = lambda text: err.write(text + "\n")  # noqa: E731
    try:
        result = livefix.apply_plan(
            plan,
            live,
            opts.backup_dir,
            confirm,
            timeout=opts.confirm_timeout,
            detach=opts.detach,
            say=say,
            managed=managed,
        )
    except livefix.Interrupted as stop:
        return 128 + stop.signum
    made = f"{len(plan.edits)} rule change(s)" + (f" and {len(managed)} manager change(s)" if managed else "")
    if opts.detach:
        err.write(
            f"applied {made}, pending: `lbfw confirm {result.transaction}` within "
            f"{opts.confirm_timeout} s keeps them, else the watchdog puts the previous rules back\n"
        )
        if opts.json:
            _json(out, {"transaction": result.transaction, "deadline": result.deadline, "backup": result.backup})
        else:
            out.write(result.transaction + "\n")
        return 0
    if result.reverted or not result.confirmed:
        return 1
    err.write(f"applied {made}; `lbfw rollback {result.transaction} --backup-dir {opts.backup_dir}` undoes them\n")
    if opts.json:
        _json(
            out,
            {
                "transaction": result.transaction,
                "deadline": result.deadline,
                "backup": result.backup,
                "confirmed": True,
            },
        )

    # re-audit the kernel.
    again = read_ruleset([], "auto", opts.reader)
    found = [f for f in audit(again) if f.check in FIXABLE]
    # A note is a latent mistake no flow suffers from: e.g. a named set's 127.0.0.1 that the rule
    # lbfw put before it now shadows. It is shown, but the fix did its work.
    left = [f for f in found if f.severity != "note"]
    err.write(f"re-audit: {len(left)} LB002/LB003 finding(s) left\n")
    for finding in found:
        where = finding.rule.origin.where() if finding.rule is not None else (finding.source or "")
        err.write(f"  {where}: {finding.check}{' (note)' if finding.severity == 'note' else ''}: {finding.message}\n")

    if result.touched:
        _persistence(result.touched, ruleset, opts.persist, opts.style, err)
    return 1 if (left or refused) else 0


def _distinct(changes: list) -> list:
    """The manager changes, each once (two findings on one ufw rule give the same commands)."""
    seen, out = set(), []
    for change in changes:
        if change is not None and (change.manager, change.commands, change.writes) not in seen:
            seen.add((change.manager, change.commands, change.writes))
            out.append(change)
    return out


def _change_json(change) -> dict:
    return {
        "manager": change.manager,
        "why": change.why,
        "files": list(change.files),
        "commands": [list(argv) for argv in change.steps()],
    }


def plan_tables(plan: FixPlan, live) -> list:
    """The live tables the plan edits, in dump order."""
    return [ref for ref in live.dumps if plan.edits_for(ref.key)]


def _configs(configs: list, out, err) -> int:
    """`lbfw fix --write` without SOURCE: the managers' configuration files, written and reloaded."""
    from ..fix import managers

    if not configs:
        err.write("nothing to fix in the managers' configuration\n")
        return 0
    out.write(managers.diff(configs))
    managers.write_and_reload(configs, lambda text: err.write(text + "\n"))
    return 0


def _json(out, doc: dict) -> None:
    out.write(json.dumps(doc) + "\n")
    out.flush()


def _persistence(touched, ruleset, persist: bool, style: str, err) -> None:
    from ..fix.boot import persistence

    persistence(touched, ruleset, style, persist, err)

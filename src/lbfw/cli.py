"""The command line. Thin: each command parses its options here and hands them to
``lbfw.commands.<name>.run``, imported only when that command runs, so that
``lbfw --help`` stays fast.

Errors a user can cause (``LbfwError``) become `PATH:LINE: message` on stderr and
exit 2, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

SOURCES_HELP = (
    "Ruleset sources, read together as one host's ruleset: iptables-save or ip6tables-save "
    "dumps, nft ruleset files (as `nft -f` takes them, includes and defines resolved), "
    "`nft -j list ruleset` JSON, or `-` for standard input. The format is detected from the "
    "content (override with --input-format). With no SOURCE, the live host is read (root): "
    "legacy iptables/ip6tables, iptables-nft tables, native nftables tables and the host's "
    "loopback facts."
)

app = typer.Typer(
    name="lbfw",
    help="Audit and fix firewall rulesets that treat loopback as 127.0.0.1 alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

InputFormat = typer.Option(
    "auto",
    "--input-format",
    help="auto | iptables-save | ip6tables-save | nft | nft-json",
)
Reader = typer.Option(
    "auto",
    "--reader",
    help="Live legacy tables: auto (iptables-legacy-save) | text | iptc (python-iptables, lbfw[iptc]).",
)


def _run(module: str, **kwargs) -> None:
    """Import lbfw.commands.<module> and call its run(); map LbfwError to exit 2."""
    from importlib import import_module

    from .errors import LbfwError

    try:
        code = import_module(f"lbfw.commands.{module}").run(**kwargs)
    except LbfwError as err:
        print(f"lbfw: {err}" if err.path is None else str(err), file=sys.stderr)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        print("lbfw: interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    raise typer.Exit(code or 0)


@app.command()
def audit(
    sources: Optional[list[str]] = typer.Argument(None, help=SOURCES_HELP, show_default=False),
    format: str = typer.Option("text", "--format", "-f", help="text | json | sarif"),
    fail_on: str = typer.Option(
        "warning", "--fail-on", help="Exit 1 when a finding is at or above: error | warning | note | never."
    ),
    input_format: str = InputFormat,
    reader: str = Reader,
    verify: bool = typer.Option(
        False, "--verify", help="Also prove each flow's verdict with real traffic in a private namespace."
    ),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the report to this file."),
) -> None:
    """Follow loopback flows through every hook and report the rules that break them."""
    _run(
        "audit",
        sources=sources or [],
        format=format,
        fail_on=fail_on,
        input_format=input_format,
        reader=reader,
        verify=verify,
        output=output,
    )


@app.command()
def check(
    sources: Optional[list[str]] = typer.Argument(None, help=SOURCES_HELP, show_default=False),
    to: Optional[list[str]] = typer.Option(
        None, "--to", help="ADDR:PORT[/tcp|/udp], e.g. 127.0.0.53:53/udp or [::1]:80."
    ),
    from_: Optional[str] = typer.Option(None, "--from", help="Client address (default: the kernel's choice)."),
    user: Optional[str] = typer.Option(None, "--user", help="The client's user, NAME or UID (owner matches)."),
    plan: Optional[str] = typer.Option(None, "--plan", help="PLAN.toml with [[flow]] tables."),
    explain: bool = typer.Option(False, "--explain", help="Show each packet's path: hook, table, chain, rule."),
    format: str = typer.Option("text", "--format", "-f", help="text | json"),
    input_format: str = InputFormat,
    reader: str = Reader,
) -> None:
    """Will these loopback bindings work here? Exit 1 when a flow is not delivered."""
    _run("check", sources=sources or [], to=to or [], from_=from_, user=user, plan=plan, explain=explain,
         format=format, input_format=input_format, reader=reader)


@app.command()
def rules(
    check_id: Optional[str] = typer.Argument(None, metavar="[CHECK]", help="A check id such as LB002."),
    format: str = typer.Option("text", "--format", "-f", help="text | json | markdown"),
) -> None:
    """List the checks, or print one check's documentation."""
    _run("rules", check_id=check_id, format=format)


@app.command()
def fix(
    sources: Optional[list[str]] = typer.Argument(None, help=SOURCES_HELP, show_default=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff only (the default)."),
    write: bool = typer.Option(False, "--write", help="Write the fixed files (a backup beside each)."),
    apply: bool = typer.Option(False, "--apply", help="Fix the live kernel: backup, proof, atomic apply, confirm."),
    style: str = typer.Option("interface", "--style", help='interface (-i lo / iif "lo") | range (127.0.0.0/8)'),
    backup_dir: Optional[str] = typer.Option(
        None, "--backup-dir", help="Where live backups go (default: $LBFW_BACKUP_DIR, else /var/lib/lbfw/backups)."
    ),
    confirm_timeout: int = typer.Option(30, "--confirm-timeout", help="Seconds to wait for confirmation."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm without a prompt (required without a TTY)."),
    detach: bool = typer.Option(
        False, "--detach", help="Apply and exit, pending: `lbfw confirm ID` within the timeout keeps the change."
    ),
    format: str = typer.Option("text", "--format", "-f", help="text | json (with --apply: the transaction)"),
    persist: bool = typer.Option(False, "--persist", help="Also fix the file the live rules are loaded from."),
    verify: bool = typer.Option(False, "--verify", help="Show the flows the fix repairs, observed before and after."),
    input_format: str = InputFormat,
    reader: str = Reader,
) -> None:
    """Fix narrow loopback rules: a diff by default, --write for files, --apply for the live host."""
    _run(
        "fix",
        sources=sources or [],
        dry_run=dry_run,
        write=write,
        apply=apply,
        style=style,
        backup_dir=backup_dir,
        confirm_timeout=confirm_timeout,
        yes=yes,
        detach=detach,
        format=format,
        persist=persist,
        verify=verify,
        input_format=input_format,
        reader=reader,
    )


@app.command()
def rollback(
    backup_id: Optional[str] = typer.Argument(None, metavar="[ID]", help="The backup (default: the newest)."),
    backup_dir: Optional[str] = typer.Option(
        None, "--backup-dir", help="Where live backups are (default: $LBFW_BACKUP_DIR, else /var/lib/lbfw/backups)."
    ),
    list_backups: bool = typer.Option(False, "--list", help="List the backups."),
    whole_tables: bool = typer.Option(
        False, "--whole-tables", help="Restore whole tables as saved (rules added since are lost)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the diff only."),
) -> None:
    """Undo lbfw's live changes from a backup (only lbfw's own edits, unless --whole-tables)."""
    _run(
        "rollback",
        backup_id=backup_id,
        backup_dir=backup_dir,
        list_backups=list_backups,
        whole_tables=whole_tables,
        dry_run=dry_run,
    )


@app.command()
def confirm(
    transaction: Optional[str] = typer.Argument(None, metavar="[ID]", help="The transaction (default: the newest)."),
    backup_dir: Optional[str] = typer.Option(
        None, "--backup-dir", help="Where live backups are (default: $LBFW_BACKUP_DIR, else /var/lib/lbfw/backups)."
    ),
) -> None:
    """Keep the rules of a pending `lbfw fix --apply` (exit 1 when its deadline passed)."""
    _run("confirm", transaction=transaction, backup_dir=backup_dir)


@app.command()
def verify(
    sources: Optional[list[str]] = typer.Argument(None, help=SOURCES_HELP, show_default=False),
    plan: Optional[str] = typer.Option(None, "--plan", help="PLAN.toml with [[flow]] tables."),
    format: str = typer.Option("text", "--format", "-f", help="text | json"),
    input_format: str = InputFormat,
    reader: str = Reader,
) -> None:
    """Prove the predicted verdicts with real traffic (a private namespace for files, harmless probes live)."""
    _run("verify", sources=sources or [], plan=plan, format=format, input_format=input_format, reader=reader)


@app.command()
def doctor(
    plan: Optional[str] = typer.Option(None, "--plan", help="PLAN.toml with [[flow]] tables (as for check)."),
    to: Optional[list[str]] = typer.Option(None, "--to", help="ADDR:PORT[/tcp|/udp] instead of a plan."),
    from_: Optional[str] = typer.Option(None, "--from", help="Client address for --to."),
    user: Optional[str] = typer.Option(None, "--user", help="NAME|UID that runs the services (default: you)."),
    connections: Optional[int] = typer.Option(None, "--connections", help="Concurrent TCP connections per flow."),
    format: str = typer.Option("text", "--format", "-f", help="text | json"),
    fail_on: str = typer.Option("warning", "--fail-on", help="Exit 1 at or above: error | warning | note | never."),
    emit_launchd: bool = typer.Option(False, "--emit-launchd", help="Print a macOS LaunchDaemon for the aliases."),
) -> None:
    """Is this host ready for services on 127/8 addresses? Read-only; exit 1 at or above --fail-on."""
    _run("doctor", plan=plan, to=to or [], from_=from_, user=user, connections=connections, format=format,
         fail_on=fail_on, emit_launchd=emit_launchd)


@app.command()
def report(
    paths: list[str] = typer.Argument(..., metavar="DIR|FILE",
                                      help="Per-host `lbfw audit --format json` files (HOST.json), doctor JSON "
                                           "(HOST.doctor.json), not-audited markers, or directories of them."),
    format: str = typer.Option("text", "--format", "-f", help="text | json | sarif | html"),
    fail_on: str = typer.Option("warning", "--fail-on",
                                help="Exit 1 when a host has a finding at or above: error | warning | note | never "
                                     "(a host not audited fails too, except with never)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the report to this file."),
) -> None:
    """Merge many hosts' audit JSON into one fleet report."""
    _run("report", paths=paths, format=format, fail_on=fail_on, output=output)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

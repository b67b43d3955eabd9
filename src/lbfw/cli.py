"""The command line. Thin: each command parses its options here and hands them to
``lbfw.commands.<name>.run``, imported only when that command runs, so that
``lbfw --help`` stays fast.

Conventions every command follows: `-h`/`--help`; every enumerated option is an Enum (its
choices shown in help and completed by the shell); SOURCE arguments read standard input when
none is given and it is a pipe (`lbfw.commands._common.sources_or_stdin`, done in `_run`).
Errors a user can cause (``LbfwError``) become `PATH:LINE: message` on stderr and exit 2,
never a traceback.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Optional

import typer

from . import __version__

SOURCES_HELP = (
    "Ruleset sources, read together as one host's ruleset: iptables-save or ip6tables-save "
    "dumps, nft ruleset files (as `nft -f` takes them, includes and defines resolved), "
    "`nft -j list ruleset` JSON, or `-` for standard input. The format is detected from the "
    "content (override with --input-format). With no SOURCE, a pipe on standard input is read; "
    "else the live host is read (root): legacy iptables/ip6tables, iptables-nft tables, native "
    "nftables tables and the host's loopback facts."
)


def _version(value: bool) -> None:
    if value:
        print(f"lbfw {__version__}")
        raise typer.Exit(0)


app = typer.Typer(
    name="lbfw",
    help="Audit and fix firewall rulesets that treat loopback as 127.0.0.1 alone.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Audit and fix firewall rulesets that treat loopback as 127.0.0.1 alone.

    Exit codes: 0 clean, 1 findings (audit), flows not delivered (check), a disagreement
    (verify), changes left to make or findings fix cannot fix (fix); 2 bad input or usage.
    """


class AuditFormat(str, Enum):
    text = "text"
    concise = "concise"
    github = "github"
    json = "json"
    sarif = "sarif"


class FlowFormat(str, Enum):
    text = "text"
    json = "json"


class RulesFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    note = "note"
    never = "never"


class InputFormat(str, Enum):
    auto = "auto"
    iptables_save = "iptables-save"
    ip6tables_save = "ip6tables-save"
    nft = "nft"
    nft_json = "nft-json"


class Reader(str, Enum):
    auto = "auto"
    text = "text"
    iptc = "iptc"


class Style(str, Enum):
    interface = "interface"
    range = "range"


Sources = typer.Argument(None, help=SOURCES_HELP, show_default=False, metavar="SOURCE")
# Automation (ssh without a terminal, Ansible, a pipeline) hands lbfw a pipe it never writes to: --live
# says "the rules of this host" so that such a pipe is not taken for a ruleset.
Live = typer.Option(False, "--live", help="Read this host's live rules even when standard input is a pipe.")
InputFormatOption = typer.Option(InputFormat.auto, "--input-format", help="The sources' format (auto: detected).")
ReaderOption = typer.Option(
    Reader.auto, "--reader", help="Live legacy tables: auto (iptables-legacy-save), text, or iptc (lbfw[iptc])."
)
QuietOption = typer.Option(False, "--quiet", "-q", help="Nothing on stdout when all is well (for cron).")


def _run(module: str, **kwargs) -> None:
    """Import lbfw.commands.<module> and call its run(); map LbfwError to exit 2. Enum options are
    passed on as their values; SOURCE lists get standard input when it is a pipe."""
    from importlib import import_module

    from .errors import LbfwError, UsageError
    from .read import forget_read_once

    kwargs = {k: v.value if isinstance(v, Enum) else v for k, v in kwargs.items()}
    forget_read_once()
    try:
        if "sources" in kwargs:
            from .commands._common import sources_or_stdin

            live = kwargs.pop("live", False)
            if live and kwargs["sources"]:
                raise UsageError("--live reads this host's rules: name no SOURCE with it")
            kwargs["sources"] = [] if live else sources_or_stdin(kwargs["sources"] or [], kwargs.get("quiet", False))
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
    sources: Optional[list[str]] = Sources,
    live: bool = Live,
    format: AuditFormat = typer.Option(
        AuditFormat.text,
        "--format",
        "-f",
        help="text for people, concise (one line a finding), github "
        "(workflow annotations), json, sarif (code scanning).",
    ),
    fail_on: Optional[FailOn] = typer.Option(
        None,
        "--fail-on",
        help="Exit 1 when a finding is at or above this severity [default: warning, or the configuration's fail-on].",
        show_default=False,
    ),
    select: Optional[str] = typer.Option(None, "--select", metavar="IDS", help="Run only these checks: LB001,LB002."),
    ignore: Optional[str] = typer.Option(None, "--ignore", metavar="IDS", help="Never report these checks: LB006."),
    quiet: bool = QuietOption,
    statistics: bool = typer.Option(False, "--statistics", help="How many findings of each check, nothing else."),
    flows: bool = typer.Option(False, "--flows", help="Also show every flow's verdict (clients x servers)."),
    config: Optional[str] = typer.Option(
        None,
        "--config",
        metavar="PATH",
        help="TOML configuration [default: $LBFW_CONFIG, else /etc/lbfw/lbfw.toml if present].",
        show_default=False,
    ),
    input_format: InputFormat = InputFormatOption,
    reader: Reader = ReaderOption,
    verify: bool = typer.Option(
        False, "--verify", help="Also prove each flow's verdict with real traffic in a private namespace."
    ),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the report here."),
) -> None:
    """Follow loopback flows through every hook and report the rules that break them."""
    _run(
        "audit",
        sources=sources,
        live=live,
        format=format,
        fail_on=fail_on,
        input_format=input_format,
        reader=reader,
        verify=verify,
        output=output,
        select=select,
        ignore=ignore,
        quiet=quiet,
        statistics=statistics,
        flows=flows,
        config=config,
    )


@app.command()
def check(
    sources: Optional[list[str]] = Sources,
    live: bool = Live,
    to: Optional[list[str]] = typer.Option(
        None, "--to", metavar="ADDR:PORT[/PROTO]", help="e.g. 127.0.0.53:53/udp or [::1]:80 (repeatable)."
    ),
    from_: Optional[str] = typer.Option(
        None, "--from", metavar="ADDR", help="Client address (default: the kernel's choice)."
    ),
    user: Optional[str] = typer.Option(None, "--user", metavar="NAME|UID", help="The client's user (owner matches)."),
    plan: Optional[str] = typer.Option(None, "--plan", metavar="PLAN.toml", help="A file of [[flow]] tables."),
    explain: bool = typer.Option(False, "--explain", help="Show each packet's path: hook, table, chain, rule."),
    format: FlowFormat = typer.Option(FlowFormat.text, "--format", "-f", help="text or json."),
    quiet: bool = QuietOption,
    input_format: InputFormat = InputFormatOption,
    reader: Reader = ReaderOption,
) -> None:
    """Will these loopback bindings work here? Exit 1 when a flow is not delivered."""
    _run(
        "check",
        sources=sources,
        live=live,
        to=to or [],
        from_=from_,
        user=user,
        plan=plan,
        explain=explain,
        format=format,
        input_format=input_format,
        reader=reader,
        quiet=quiet,
    )


@app.command()
def rules(
    check_id: Optional[str] = typer.Argument(None, metavar="[CHECK]", help="A check id such as LB002."),
    format: RulesFormat = typer.Option(RulesFormat.text, "--format", "-f", help="text, json or markdown."),
) -> None:
    """List the checks, or print one check's documentation."""
    _run("rules", check_id=check_id, format=format)


@app.command()
def fix(
    sources: Optional[list[str]] = Sources,
    live: bool = Live,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff only (the default)."),
    write: bool = typer.Option(False, "--write", help="Write the fixed files (a backup beside each)."),
    apply: bool = typer.Option(False, "--apply", help="Fix the live kernel: backup, proof, atomic apply, confirm."),
    style: Style = typer.Option(
        Style.interface, "--style", help='interface (-i lo / iif "lo") or range (127.0.0.0/8).'
    ),
    backup_dir: Optional[str] = typer.Option(
        None,
        "--backup-dir",
        metavar="DIR",
        help="Where live backups go (default: $LBFW_BACKUP_DIR, else /var/lib/lbfw/backups).",
    ),
    confirm_timeout: int = typer.Option(
        30, "--confirm-timeout", metavar="SECONDS", help="How long to wait for confirmation."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm without a prompt (required without a TTY)."),
    detach: bool = typer.Option(
        False, "--detach", help="Apply and exit, pending: `lbfw confirm ID` within the timeout keeps the change."
    ),
    format: str = typer.Option("text", "--format", "-f", help="text | json (with --apply: the transaction)"),
    persist: bool = typer.Option(False, "--persist", help="Also fix the file the live rules are loaded from."),
    verify: bool = typer.Option(False, "--verify", help="Show the flows the fix repairs, observed before and after."),
    input_format: InputFormat = InputFormatOption,
    reader: Reader = ReaderOption,
) -> None:
    """Fix narrow loopback rules: a diff by default, --write for files, --apply for the live host."""
    _run(
        "fix",
        sources=sources,
        live=live,
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
        None,
        "--backup-dir",
        metavar="DIR",
        help="Where live backups are (default: $LBFW_BACKUP_DIR, else /var/lib/lbfw/backups).",
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
    sources: Optional[list[str]] = Sources,
    live: bool = Live,
    plan: Optional[str] = typer.Option(None, "--plan", metavar="PLAN.toml", help="A file of [[flow]] tables."),
    format: FlowFormat = typer.Option(FlowFormat.text, "--format", "-f", help="text or json."),
    quiet: bool = QuietOption,
    input_format: InputFormat = InputFormatOption,
    reader: Reader = ReaderOption,
) -> None:
    """Prove the predicted verdicts with real traffic (a private namespace for files, harmless probes live)."""
    _run(
        "verify",
        sources=sources,
        live=live,
        plan=plan,
        format=format,
        input_format=input_format,
        reader=reader,
        quiet=quiet,
    )


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
    _run(
        "doctor",
        plan=plan,
        to=to or [],
        from_=from_,
        user=user,
        connections=connections,
        format=format,
        fail_on=fail_on,
        emit_launchd=emit_launchd,
    )


@app.command()
def report(
    paths: list[str] = typer.Argument(
        ...,
        metavar="DIR|FILE",
        help="Per-host `lbfw audit --format json` files (HOST.json), doctor JSON "
        "(HOST.doctor.json), not-audited markers, or directories of them.",
    ),
    format: str = typer.Option("text", "--format", "-f", help="text | json | sarif | html"),
    fail_on: str = typer.Option(
        "warning",
        "--fail-on",
        help="Exit 1 when a host has a finding at or above: error | warning | note | never "
        "(a host not audited fails too, except with never).",
    ),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the report to this file."),
) -> None:
    """Merge many hosts' audit JSON into one fleet report."""
    _run("report", paths=paths, format=format, fail_on=fail_on, output=output)


def main() -> None:
    # `python -m lbfw` too is "lbfw" in usage lines and completion scripts
    app(prog_name="lbfw")


if __name__ == "__main__":
    main()

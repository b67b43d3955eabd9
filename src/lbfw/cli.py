"""The command line. Thin: each command parses its options here and hands them to
``lbfw.commands.<name>.run``, imported only when that command runs, so that
``lbfw --help`` stays fast.

Errors a user can cause (``LbfwError``) become `PATH:LINE: message` on stderr and
exit 2, never a traceback.
"""

from __future__ import annotations

import sys
from typing import List, Optional

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
    "auto", "--input-format",
    help="auto | iptables-save | ip6tables-save | nft | nft-json",
)
Reader = typer.Option(
    "auto", "--reader",
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
        raise typer.Exit(err.exit_code)
    except KeyboardInterrupt:
        print("lbfw: interrupted", file=sys.stderr)
        raise typer.Exit(130)
    raise typer.Exit(code or 0)


@app.command()
def audit(
    sources: Optional[List[str]] = typer.Argument(None, help=SOURCES_HELP, show_default=False),
    format: str = typer.Option("text", "--format", "-f", help="text | json | sarif"),
    fail_on: str = typer.Option("warning", "--fail-on",
                                help="Exit 1 when a finding is at or above: error | warning | note | never."),
    input_format: str = InputFormat,
    reader: str = Reader,
    verify: bool = typer.Option(False, "--verify",
                                help="Also prove each flow's verdict with real traffic in a private namespace."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the report to this file."),
) -> None:
    """Follow loopback flows through every hook and report the rules that break them."""
    _run("audit", sources=sources or [], format=format, fail_on=fail_on, input_format=input_format,
         reader=reader, verify=verify, output=output)


@app.command()
def check(
    sources: Optional[List[str]] = typer.Argument(None, help=SOURCES_HELP, show_default=False),
    to: Optional[List[str]] = typer.Option(None, "--to",
                                           help="ADDR:PORT[/tcp|/udp], e.g. 127.0.0.53:53/udp or [::1]:80."),
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
    sources: Optional[List[str]] = typer.Argument(None, help=SOURCES_HELP, show_default=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff only (the default)."),
    write: bool = typer.Option(False, "--write", help="Write the fixed files (a backup beside each)."),
    apply: bool = typer.Option(False, "--apply", help="Fix the live kernel: backup, proof, atomic apply, confirm."),
    style: str = typer.Option("interface", "--style", help="interface (-i lo / iif \"lo\") | range (127.0.0.0/8)"),
    backup_dir: str = typer.Option("/var/lib/lbfw/backups", "--backup-dir", help="Where live backups go."),
    confirm_timeout: int = typer.Option(30, "--confirm-timeout", help="Seconds to wait for confirmation."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm without a prompt (required without a TTY)."),
    persist: bool = typer.Option(False, "--persist", help="Also fix the file the live rules are loaded from."),
    verify: bool = typer.Option(False, "--verify", help="Show the flows the fix repairs, observed before and after."),
    input_format: str = InputFormat,
    reader: str = Reader,
) -> None:
    """Fix narrow loopback rules: a diff by default, --write for files, --apply for the live host."""
    _run("fix", sources=sources or [], dry_run=dry_run, write=write, apply=apply, style=style,
         backup_dir=backup_dir, confirm_timeout=confirm_timeout, yes=yes, persist=persist, verify=verify,
         input_format=input_format, reader=reader)


@app.command()
def rollback(
    backup_dir: str = typer.Option("/var/lib/lbfw/backups", "--backup-dir", help="Where live backups are."),
) -> None:
    """Restore the newest live backup."""
    _run("rollback", backup_dir=backup_dir)


@app.command()
def verify(
    sources: Optional[List[str]] = typer.Argument(None, help=SOURCES_HELP, show_default=False),
    plan: Optional[str] = typer.Option(None, "--plan", help="PLAN.toml with [[flow]] tables."),
    format: str = typer.Option("text", "--format", "-f", help="text | json"),
    input_format: str = InputFormat,
    reader: str = Reader,
) -> None:
    """Prove the predicted verdicts with real traffic (a private namespace for files, harmless probes live)."""
    _run("verify", sources=sources or [], plan=plan, format=format, input_format=input_format, reader=reader)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

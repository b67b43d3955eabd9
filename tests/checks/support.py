"""What the per-check test modules share: run the real reader, engine and checks on a small
ruleset, and read the `# must-fire:` / `# must-stay-quiet:` headers of rules/examples."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lbfw.analyze.engine import Engine
from lbfw.checks import run_checks
from lbfw.model import HostFacts, Ruleset
from lbfw.pipeline import audit_ruleset
from lbfw.read import iptables, read_sources
from lbfw.results import Finding, Flow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "rules" / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix in (".rules", ".v4", ".v6", ".nft"))

FLOWS = [
    Flow(p, s, 80, c)
    for p in ("tcp", "udp")
    for c in (None, "127.0.0.2")
    for s in ("127.0.0.1", "127.0.0.53", "127.66.66.66")
] + [Flow("tcp", "::1", 80)]


def audit(text: str, family: str = "ip", host: HostFacts | None = None) -> list[Finding]:
    """The findings of every check on an iptables-save text, judged on FLOWS."""
    rs = Ruleset(tables=iptables.parse(text, "t.rules", family=family), host=host)
    engine = Engine(rs)
    return run_checks(rs, engine, [engine.evaluate(f) for f in FLOWS])


@cache
def audit_example(name: str) -> tuple[Finding, ...]:
    """The findings `lbfw audit` gives for rules/examples/NAME (its default flows); read once per
    session, since every per-check module asks about the same files."""
    findings, _ = audit_ruleset(read_sources([str(EXAMPLES_DIR / name)]))
    return tuple(findings)


def ids(findings) -> list[str]:
    return sorted({f.check for f in findings})


def filt(*lines: str, policy: str = "DROP", output: str = "ACCEPT", chains: tuple[str, ...] = ()) -> str:
    """A filter table with INPUT ``policy``, FORWARD DROP, OUTPUT ``output``, user ``chains`` and ``lines``."""
    return "\n".join(
        [
            "*filter",
            f":INPUT {policy} [0:0]",
            ":FORWARD DROP [0:0]",
            f":OUTPUT {output} [0:0]",
            *(f":{c} - [0:0]" for c in chains),
            *lines,
            "COMMIT",
            "",
        ]
    )


def declared(path: Path) -> tuple[dict, set]:
    """({check: severity or None} that must fire, {checks} that must stay quiet) from the header."""
    fire, quiet = {}, set()
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if body.startswith("must-fire:"):
            for item in body.split(":", 1)[1].split():
                check, _, severity = item.partition(":")
                fire[check] = severity or None
        elif body.startswith("must-stay-quiet:"):
            quiet.update(body.split(":", 1)[1].split())
    return fire, quiet


def examples_declaring(check: str) -> tuple[set[str], set[str]]:
    """(names of the examples whose header says ``check`` must fire, names where it must stay quiet)."""
    fire, quiet = set(), set()
    for path in EXAMPLES:
        must_fire, must_stay_quiet = declared(path)
        if check in must_fire:
            fire.add(path.name)
        if check in must_stay_quiet:
            quiet.add(path.name)
    return fire, quiet

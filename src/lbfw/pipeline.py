"""The pipeline the commands share: read -> engine -> flows -> checks, and the kernel's word on the same flows.

Each command is glue around these steps (lbfw.commands); the tests call them too, so what a
test audits is what `lbfw audit` audits. The heavy modules are imported when a step runs,
so that `lbfw --help` stays fast.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .errors import UsageError
from .read import source_bytes

if TYPE_CHECKING:
    from .analyze.engine import Engine
    from .config import Config
    from .model import Ruleset
    from .results import Finding, Flow, FlowResult


def read_ruleset(sources: Sequence[str], input_format: str, reader: str) -> Ruleset:
    """Read the sources into one Ruleset, for a command that keeps it until the process ends.

    Reading builds hundreds of thousands of small objects that all stay alive, so the cyclic
    garbage collector would only rescan them again and again: it is paused while reading and
    the result is frozen out of its sight afterwards (measured on a 140k-rule dump: about
    0.7 s of a 4.8 s audit)."""
    import gc

    from .read import read_sources

    enabled = gc.isenabled()
    gc.disable()
    try:
        return read_sources(list(sources), input_format=input_format, reader=reader)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def evaluate(ruleset: Ruleset, flows: Sequence[Flow]) -> tuple[Engine, list[FlowResult]]:
    """(engine, one result per flow, in order) for ``ruleset``."""
    from .analyze.engine import Engine

    engine = Engine(ruleset)
    return engine, [engine.evaluate(flow) for flow in flows]


def analyse(ruleset: Ruleset) -> tuple[Engine, list[FlowResult]]:
    """(engine, flow results) for the default flow set of ``ruleset``."""
    from .analyze.flows import default_flows

    return evaluate(ruleset, default_flows(ruleset))


def audit_ruleset(ruleset: Ruleset) -> tuple[list[Finding], list[FlowResult]]:
    """(findings, results) for a ruleset already read: what `lbfw audit` and the tests run."""
    from .checks import run_checks

    engine, results = analyse(ruleset)
    return run_checks(ruleset, engine, results), results


@dataclass
class Audit:
    """What `lbfw audit` found: the findings kept by the configuration, every flow's result, and
    the port no rule names (reports say "any port" for it)."""

    findings: list
    results: list
    any_port: Optional[int] = None


def audit(ruleset: Ruleset, config: Optional[Config] = None) -> Audit:
    """Audit ``ruleset``: the default flows plus the configuration's, the checks it selects, the
    findings its ignores (global and per path) leave."""
    from .analyze.flows import audit_flows
    from .checks import run_checks

    flows, any_port = audit_flows(ruleset)
    if config is not None:
        flows += [f for f in config.flows if f not in flows]
    engine, results = evaluate(ruleset, flows)
    findings = run_checks(ruleset, engine, results, select=config.select if config is not None else None)
    if config is not None:
        findings = [f for f in findings if config.keeps(f)]
    return Audit(findings, results, any_port)


def verify_results(sources: Sequence[str], results: Sequence[FlowResult], stdin_text: Optional[str] = None) -> dict:
    """Flow -> verdict observed with real traffic: the sources loaded into a private network
    namespace (lbfw.sandbox.verify), or for the live host harmless probes on loopback."""
    from .sandbox import verify as sandbox

    flows: list[Flow] = []
    for r in results:
        if r.flow not in flows:
            flows.append(r.flow)
    if sources:
        # standard input and pipes were read once (lbfw.read.source_bytes): the sandbox gets their text
        loadable = [
            sandbox.RulesetText(
                s,
                stdin_text
                if s == "-" and stdin_text is not None
                else source_bytes(s).decode("utf-8", errors="replace").lstrip("\ufeff"),
            )
            if s == "-" or not _regular(s)
            else s
            for s in sources
        ]
        observed = sandbox.observe_files(loadable, flows)
    else:
        observed = sandbox.verify_live(flows)
    return dict(zip(flows, observed))


# --------------------------------------------------------------------------- predicted against observed


def agreement(predicted: str, observed: str) -> Optional[bool]:
    """True / False when both verdicts are definite; None when the engine said unknown or the
    flow could not be observed (nothing to compare, so never a disagreement)."""
    from .results import BLOCKED, DELIVERED

    if predicted not in (DELIVERED, BLOCKED) or observed not in (DELIVERED, BLOCKED):
        return None
    return predicted == observed


def compare(results: Sequence[FlowResult], observed: Sequence[Any]) -> list[dict]:
    """One row per flow: the flow's JSON plus predicted, observed, agree and reason.
    ``observed`` items are verdict strings or {"observed", "reason"} dicts. A flow that names no
    user is observed by a client running as root: a prediction that depends on the user is
    compared as root's (``predicted``: FlowResult.probed), the whole answer kept in ``by_user``."""
    rows = []
    for result, seen in zip(results, observed):
        seen = seen if isinstance(seen, dict) else {"observed": seen, "reason": ""}
        row = result.flow.to_json()
        row["predicted"] = result.probed()
        if result.by_user:
            row["by_user"] = result.describe()
        row["observed"] = seen["observed"]
        row["agree"] = agreement(row["predicted"], seen["observed"])
        row["reason"] = seen.get("reason") or ""
        rows.append(row)
    return rows


def _regular(path: str) -> bool:
    import os
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # the reader has already said what is wrong with it


def _loadable(sources: Sequence[str], ruleset: Ruleset, stdin_data: Optional[bytes]) -> list:
    """Sources for the sandbox, in the formats the reader found (so both see the same thing)."""
    from pathlib import Path

    from .sandbox.verify import RulesetText

    formats = {info.source: info.format for info in getattr(ruleset, "sources", [])}
    out: list = []
    for source in sources:
        fmt = formats.get(source)
        if source == "-":
            out.append(
                RulesetText("-", (stdin_data or b"").decode("utf-8", errors="replace").lstrip("\ufeff"), format=fmt)
            )
        elif fmt is not None:
            path = Path(source)
            text = source_bytes(source).decode("utf-8", errors="replace").lstrip("\ufeff")
            # nft files load from their path: relative includes resolve beside them
            out.append(RulesetText(source, text, format=fmt, path=path if fmt == "nft" and _regular(source) else None))
        else:
            out.append(source)
    return out


def verify_rows(
    sources: Sequence[str],
    plan: Optional[str] = None,
    input_format: str = "auto",
    reader: str = "auto",
    timeout: float = 1.0,
    stdin_data: Optional[bytes] = None,
) -> tuple[list[dict], list[FlowResult], str, Ruleset]:
    """(rows, results, mode, ruleset): predicted (engine) and observed (sandbox or live) per
    flow, the rows `lbfw verify --format json` prints, and the Ruleset read. Standard input,
    when a source is "-", must already be read into ``stdin_data``."""
    from .analyze.flows import default_flows, parse_plan
    from .sandbox import verify as sandbox

    sources = list(sources or [])
    if stdin_data is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin_data), encoding="utf-8")
    ruleset = read_ruleset(sources, input_format, reader)
    flows = parse_plan(plan) if plan is not None else default_flows(ruleset)
    if not flows:
        raise UsageError("no flow to verify" + (": the plan holds no [[flow]] table" if plan else ""), path=plan)
    _, results = evaluate(ruleset, flows)
    if sources:
        observed = sandbox.observe_files_detailed(_loadable(sources, ruleset, stdin_data), flows, timeout=timeout)
        mode = "in a private network namespace"
    else:
        observed = sandbox.verify_live_detailed(flows, timeout=timeout, results=results, ruleset=ruleset)
        mode = "on the live host"
    return compare(results, observed), results, mode, ruleset

"""lbfw's performance benchmark (issue 6): `make bench`.

For each ruleset (generated kube-proxy-like dumps of ~10k/35k/140k rules, a filter-heavy
5k-rule dump, an nftables ruleset with a 100,000-element set, and the real 5,556-rule dump
from ../shared/corpus), in the same run:

- ``lbfw audit FILE --format json`` as a whole process: wall time and peak RSS (os.wait4).
- lbfw's phases apart, in a fresh child interpreter: read (``lbfw.read.read_sources``),
  analysis (``Engine`` + ``default_flows`` + ``evaluate``), checks (``run_checks``).
- the floor: the same ruleset loaded into a private network namespace (``unshare -n``: the
  host's firewall is never touched) and dumped by the kernel's own tools
  (``iptables-legacy-save``, ``iptables-nft-save``, ``nft -j list ruleset``) and read by
  python-iptables.

Medians of ``--runs`` runs. Writes a Markdown report with ``--write docs/performance.md``.
Usage: ``python tests/benchmarks/bench.py [--runs 3] [--only kube-10k,filter-5k] [--write PATH]``.
Internal: ``bench.py --phases FILE`` times lbfw's phases on FILE and prints JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
sys.path.insert(0, str(HERE))

import generate  # noqa: E402  (a sibling module, not a package)

# Floors that take a minute on the biggest inputs run once, and are cut off after this long.
SLOW_TOOL_TIMEOUT = 120.0
IPTC_TIMEOUT = 60.0
BIG = 50_000   # rules above which the slow floors (nft -j, python-iptables) run only once

TARGET_AUDIT_VS_LEGACY = 3.0
TARGET_RSS_MB = 400.0
TARGET_LINEARITY = 1.1          # twice the rules: at most 2.2x the time
TARGET_HELP_S = 0.3
TARGET_FILTER_S = 1.0


# --------------------------------------------------------------------------- small helpers

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_s(value: Optional[float], digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def lbfw_argv() -> list[str]:
    """The console script beside this interpreter (what users run), else `python -m lbfw`."""
    script = Path(sys.executable).with_name("lbfw")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lbfw"]


def run_timed(argv: list[str], stdin_path: Optional[Path] = None, timeout: Optional[float] = None):
    """Run argv; return (wall seconds, peak RSS bytes of it and its waited-for children,
    exit status, stdout bytes, stderr text). stdout goes to a private temp file so a big dump
    never blocks on a pipe; timing uses os.wait4 on the child itself."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        timed_out = []

        def kill() -> None:
            timed_out.append(True)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, start_new_session=True)
            # A blocking wait4 (no polling delay in the timing); a timer kills a runaway tool.
            timer = threading.Timer(timeout, kill) if timeout else None
            if timer:
                timer.start()
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            if timer:
                timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if stdin_path:
                stdin.close()
        if timed_out:
            return None, None, "timeout", b"", f"stopped after {timeout:.0f} s"
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss * 1024, proc.returncode, out.read(), err.read().decode(errors="replace")


# --------------------------------------------------------------------------- private namespace

class NetNS:
    """A private network namespace held open by `unshare -n sleep`: tools run in it with
    `nsenter --net=/proc/PID/ns/net`. Nothing here ever runs in the host's namespace: the
    constructor waits until the holder's namespace differs from ours and refuses otherwise."""

    def __init__(self):
        self.proc = None
        self.path = None

    def __enter__(self) -> "NetNS":
        argv = ["unshare", "-n", "--", "sleep", "infinity"] if os.geteuid() == 0 else \
            ["unshare", "-rn", "--", "sleep", "infinity"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        mine = os.readlink("/proc/self/ns/net")
        path = f"/proc/{self.proc.pid}/ns/net"
        for _ in range(500):
            try:
                if os.readlink(path) != mine:
                    self.path = path
                    return self
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        self.__exit__(None, None, None)
        raise RuntimeError("could not create a private network namespace (unshare -n)")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def argv(self, argv: list[str]) -> list[str]:
        assert self.path is not None, "namespace not entered"
        return ["nsenter", f"--net={self.path}", "--"] + argv


# --------------------------------------------------------------------------- lbfw phases (child)

def phases(path: str) -> dict:
    """Time lbfw's phases on one file, in this (fresh) interpreter. Each phase reports the
    error that stopped it instead of a number, so a missing part is visible, not fatal."""
    from time import perf_counter

    result: dict = {"file": path}
    t = perf_counter()
    try:
        from lbfw.read import read_sources
        result["import_read_s"] = perf_counter() - t
        t = perf_counter()
        ruleset = read_sources([path])
        result["read_s"] = perf_counter() - t
        result["rules"] = ruleset.rule_count()
    except Exception as err:  # noqa: BLE001  (a benchmark reports, it does not crash)
        result["error"] = f"read: {type(err).__name__}: {err}"
        return result
    try:
        from lbfw.analyze.engine import Engine
        from lbfw.analyze.flows import default_flows
        t = perf_counter()
        engine = Engine(ruleset)
        result["engine_init_s"] = perf_counter() - t
        flows = default_flows(ruleset)
        t2 = perf_counter()
        results = [engine.evaluate(flow) for flow in flows]
        result["evaluate_s"] = perf_counter() - t2
        result["analyze_s"] = perf_counter() - t
        result["flows"] = len(flows)
        stats = getattr(engine, "stats", None)
        result["rule_evals"] = getattr(stats, "rule_evals", None)
    except Exception as err:  # noqa: BLE001
        result["error"] = f"analyze: {type(err).__name__}: {err}"
        return result
    try:
        from lbfw.checks import run_checks
        t = perf_counter()
        findings = run_checks(ruleset, engine, results)
        result["checks_s"] = perf_counter() - t
        result["findings"] = len(findings)
    except Exception as err:  # noqa: BLE001
        result["error"] = f"checks: {type(err).__name__}: {err}"
    return result


def profile(path: str, top: int = 18) -> str:
    """cProfile of the phases on one file: the functions where the time goes (tottime)."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    outcome = phases(path)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    # Keep the table (from the header row on); shorten absolute paths to the package.
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    table = []
    for line in lines[start:]:
        for prefix in (str(ROOT / "src") + "/", sys.prefix + "/", "/usr/lib/"):
            line = line.replace(prefix, "")
        table.append(line)
    head = f"phases under cProfile: {json.dumps({k: v for k, v in outcome.items() if k != 'file'})}"
    return head + "\n" + "\n".join(table)


# --------------------------------------------------------------------------- one input

@dataclass
class Input:
    name: str
    path: Path                 # what lbfw reads
    kind: str                  # "iptables" | "nft"
    kernel_path: Path          # what the kernel loads (the chair dump with a dummy MAC)
    rules: int = 0
    note: str = ""


@dataclass
class Row:
    inp: Input
    audit_s: Optional[float] = None
    audit_rss_mb: Optional[float] = None
    audit_exit: str = ""
    phases: dict = field(default_factory=dict)
    floor: dict = field(default_factory=dict)      # tool -> median seconds (None: failed)
    floor_runs: dict = field(default_factory=dict)
    floor_notes: dict = field(default_factory=dict)
    loaded: dict = field(default_factory=dict)     # backend -> rules the kernel dumped back
    load_s: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)


def measure_lbfw(row: Row, runs: int) -> None:
    walls, rss = [], []
    for _ in range(runs):
        wall, peak, code, _out, err = run_timed(lbfw_argv() + ["audit", str(row.inp.path), "--format", "json",
                                                                "--fail-on", "never"], timeout=600)
        if code not in (0, 1):
            row.audit_exit = f"exit {code}: {err.strip().splitlines()[-1] if err.strip() else ''}"[:160]
            row.errors.append(f"lbfw audit: {row.audit_exit}")
            break
        row.audit_exit = f"exit {code}"
        walls.append(wall)
        rss.append(peak)
    row.audit_s = median(walls)
    row.audit_rss_mb = max(rss) / 2**20 if rss else None
    samples = []
    for _ in range(runs):
        wall, _peak, code, out, err = run_timed([sys.executable, str(Path(__file__).resolve()), "--phases",
                                                 str(row.inp.path)], timeout=600)
        if code != 0:
            row.errors.append(f"phases: exit {code}: {err.strip()[-300:]}")
            break
        data = json.loads(out)
        samples.append(data)
        if "error" in data:
            row.errors.append(f"phases: {data['error']}"[:300])
            break
    keys = {k for s in samples for k, v in s.items() if isinstance(v, float)}
    row.phases = {k: median([s.get(k) for s in samples]) for k in keys}
    for k in ("rules", "flows", "rule_evals", "findings"):
        if samples and k in samples[-1]:
            row.phases[k] = samples[-1][k]


def _count_dumped(out: bytes) -> int:
    return sum(1 for line in out.splitlines() if line.startswith(b"-A "))


def measure_floor(row: Row, runs: int, iptc: bool) -> None:
    inp = row.inp
    big = inp.rules > BIG
    with NetNS() as ns:
        if inp.kind == "nft":
            wall, _rss, code, _out, err = run_timed(ns.argv(["nft", "-f", str(inp.kernel_path)]), timeout=300)
            row.load_s["nft -f"] = wall
            if code != 0:
                row.errors.append(f"nft -f: exit {code}: {err.strip()[:300]}")
                return
            _time_tool(row, ns, "nft -j list ruleset", ["nft", "-j", "list", "ruleset"], runs)
            return
        # iptables: legacy first, then the same dump through iptables-nft
        wall, _rss, code, _out, err = run_timed(ns.argv(["iptables-legacy-restore"]), stdin_path=inp.kernel_path,
                                                timeout=300)
        row.load_s["iptables-legacy-restore"] = wall
        if code != 0:
            row.errors.append(f"iptables-legacy-restore: exit {code}: {err.strip()[:300]}")
        else:
            out = _time_tool(row, ns, "iptables-legacy-save", ["iptables-legacy-save"], runs)
            row.loaded["legacy"] = _count_dumped(out)
            if iptc:
                _time_iptc(row, ns)
        wall, _rss, code, _out, err = run_timed(ns.argv(["iptables-nft-restore"]), stdin_path=inp.kernel_path,
                                                timeout=300)
        row.load_s["iptables-nft-restore"] = wall
        if code != 0:
            row.errors.append(f"iptables-nft-restore: exit {code}: {err.strip()[:300]}")
            return
        out = _time_tool(row, ns, "iptables-nft-save", ["iptables-nft-save"], runs)
        row.loaded["iptables-nft"] = _count_dumped(out)
        _time_tool(row, ns, "nft -j list ruleset", ["nft", "-j", "list", "ruleset"], 1 if big else runs,
                   timeout=SLOW_TOOL_TIMEOUT)


def _time_tool(row: Row, ns: NetNS, label: str, argv: list[str], runs: int,
               timeout: Optional[float] = 300) -> bytes:
    walls, last = [], b""
    for _ in range(runs):
        wall, _rss, code, out, err = run_timed(ns.argv(argv), timeout=timeout)
        if code == "timeout":
            row.floor_notes[label] = f"> {timeout:.0f} s (stopped)"
            break
        if code != 0:
            row.errors.append(f"{label}: exit {code}: {err.strip()[:200]}")
            break
        walls.append(wall)
        last = out
    row.floor[label] = median(walls)
    row.floor_runs[label] = len(walls)
    return last


IPTC_SNIPPET = """
import json, sys, time
t = time.perf_counter()
import iptc
imported = time.perf_counter() - t
t = time.perf_counter()
rules = 0
for name in ("raw", "mangle", "nat", "filter", "security"):
    try:
        table = iptc.Table(name)
    except Exception:
        continue
    table.autocommit = False
    for chain in table.chains:
        for rule in chain.rules:
            # what a reader needs at least: addresses, interfaces, protocol, matches, target
            rule.src, rule.dst, rule.in_interface, rule.out_interface, rule.protocol
            [m.name for m in rule.matches]
            rule.target.name
            rules += 1
print(json.dumps({"import_s": imported, "read_s": time.perf_counter() - t, "rules": rules}))
"""


def _time_iptc(row: Row, ns: NetNS) -> None:
    """python-iptables reading the legacy tables, once (it is slow: see DOMAIN.md)."""
    label = "python-iptables"
    try:
        import iptc  # noqa: F401
    except Exception as err:  # noqa: BLE001
        row.floor_notes[label] = f"not importable: {err}"
        return
    wall, _rss, code, out, err = run_timed(ns.argv([sys.executable, "-c", IPTC_SNIPPET]), timeout=IPTC_TIMEOUT)
    if code == "timeout":
        row.floor_notes[label] = f"> {IPTC_TIMEOUT:.0f} s (stopped)"
        return
    if code != 0:
        row.floor_notes[label] = f"failed: {err.strip().splitlines()[-1] if err.strip() else code}"
        return
    data = json.loads(out)
    row.floor[label] = data["read_s"]
    row.floor_runs[label] = 1
    if data["rules"] != row.loaded.get("legacy"):
        row.floor_notes[label] = f"saw {data['rules']} rules"


# --------------------------------------------------------------------------- start-up

def measure_help(runs: int) -> dict:
    """`lbfw --help` wall time (median), the bare interpreter's, and what `import lbfw.cli` loads."""
    res = {}
    walls = []
    for _ in range(max(runs, 5)):
        wall, _rss, code, _out, _err = run_timed(lbfw_argv() + ["--help"])
        if code == 0:
            walls.append(wall)
    res["help_s"] = median(walls)
    res["python_s"] = median([run_timed([sys.executable, "-c", "pass"])[0] for _ in range(5)])
    res["import_typer_s"] = median([run_timed([sys.executable, "-c", "import typer"])[0] for _ in range(5)])
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import lbfw.cli"], capture_output=True,
                          text=True, timeout=60)
    top = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].strip()
            if name.count(".") == 0:   # top-level packages only (cumulative µs)
                top[name] = int(parts[1])
    res["import_top"] = sorted(top.items(), key=lambda kv: -kv[1])[:8]
    mods = subprocess.run([sys.executable, "-c", "import sys, lbfw.cli; print(len(sys.modules))"],
                          capture_output=True, text=True, timeout=60)
    res["modules"] = mods.stdout.strip()
    return res


# --------------------------------------------------------------------------- report

def tool_versions() -> dict:
    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "n/a"
    return {
        "iptables": first_line(["iptables-legacy", "-V"]) + " / " + first_line(["iptables-nft", "-V"]),
        "nft": first_line(["nft", "-v"]),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ratio(a, b) -> Optional[float]:
    return a / b if a is not None and b else None


def render(rows: list[Row], help_res: dict, runs: int, elapsed: float, prof: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = tool_versions()
    out = ["# Performance", "",
           "Generated by `make bench` (`tests/benchmarks/bench.py --write docs/performance.md`) from real runs;",
           "do not edit by hand. Issue 6 sets the targets below.", "",
           "## Machine", "",
           f"- date: {now}; bench wall time {elapsed:.0f} s, medians of {runs} runs (slow floors: see notes)",
           f"- {os.cpu_count()} CPUs ({cpu_model()}), kernel {platform.release()}, "
           f"Python {platform.python_version()}",
           f"- {versions['iptables']}; {versions['nft']}", "",
           "## How to reproduce", "",
           "```", "make bench                      # all inputs, 3 runs, writes this file",
           ".venv/bin/python tests/benchmarks/bench.py --runs 1 --only kube-10k,filter-5k   # quick look",
           "```", "",
           "Inputs come from `tests/benchmarks/generate.py` (seeded, identical on every machine) and the real",
           "5,556-rule dump `../shared/corpus/configs_chair_for_Network_Architectures_and_Services__iptables-save-"
           "2016-06-27_16-29-01`",
           "(lbfw reads the original; the kernel gets a private temp copy with its censored MACs replaced).",
           "Every floor is measured on the same ruleset loaded into a private network namespace (`unshare -n`):",
           "the host's firewall is never touched. `lbfw audit` is the whole process, `lbfw audit FILE --format json`,",
           "peak RSS from `os.wait4` (it includes waited-for helpers such as `nft`).", "",
           "## Results", "",
           "| input | rules | lbfw audit s | peak RSS MB | read s | analyze s | checks s | iptables-legacy-save s "
           "| audit / legacy-save | iptables-nft-save s | nft -j list ruleset s | python-iptables s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        f = row.floor

        def floor_cell(label):
            if label in row.floor_notes and f.get(label) is None:
                return row.floor_notes[label]
            val = fmt_s(f.get(label))
            if f.get(label) is not None and row.floor_runs.get(label, runs) < runs:
                val += " (1 run)"
            return val
        p = row.phases
        out.append(
            f"| {row.inp.name} | {row.inp.rules:,} | {fmt_s(row.audit_s)} | "
            f"{fmt_s(row.audit_rss_mb, 0)} | {fmt_s(p.get('read_s'))} | {fmt_s(p.get('analyze_s'))} | "
            f"{fmt_s(p.get('checks_s'))} | {floor_cell('iptables-legacy-save')} | "
            f"{fmt_s(ratio(row.audit_s, f.get('iptables-legacy-save')), 1)} | {floor_cell('iptables-nft-save')} | "
            f"{floor_cell('nft -j list ruleset')} | {floor_cell('python-iptables')} |")
    out += ["", "Rules are the ruleset's rules (for the nft input: rules, not the 100,000 set elements).",
            "`read` is `lbfw.read.read_sources`; `analyze` is `Engine(ruleset)` plus `evaluate` of every default flow;",
            "`checks` is `lbfw.checks.run_checks`; each in a fresh interpreter, imports excluded.", ""]
    out += ["### Loading into the kernel (not a floor; proves each ruleset is real)", "",
            "| input | iptables-legacy-restore s | rules dumped back (legacy) | iptables-nft-restore s "
            "| rules dumped back (iptables-nft) | nft -f s |", "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        out.append(f"| {row.inp.name} | {fmt_s(row.load_s.get('iptables-legacy-restore'))} | "
                   f"{row.loaded.get('legacy', 'n/a')} | {fmt_s(row.load_s.get('iptables-nft-restore'))} | "
                   f"{row.loaded.get('iptables-nft', 'n/a')} | {fmt_s(row.load_s.get('nft -f'))} |")
    out += ["", "### Engine work", "",
            "| input | flows | rule evaluations | evaluations per flow | findings | engine init s | evaluate s |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        p = row.phases
        per = ratio(p.get("rule_evals"), p.get("flows"))
        out.append(f"| {row.inp.name} | {p.get('flows', 'n/a')} | {p.get('rule_evals', 'n/a')} | "
                   f"{fmt_s(per, 1)} | {p.get('findings', 'n/a')} | {fmt_s(p.get('engine_init_s'))} | "
                   f"{fmt_s(p.get('evaluate_s'))} |")

    # ---- targets
    by = {row.inp.name: row for row in rows}
    out += ["", "## Targets (issue 6)", "", "| target | measured | met? |", "|---|---|---|"]

    def verdict(ok):
        return "n/a" if ok is None else ("yes" if ok else "**no**")
    big = by.get("kube-140k")
    if big:
        r = ratio(big.audit_s, big.floor.get("iptables-legacy-save"))
        out.append(f"| `lbfw audit` of the 140k dump within {TARGET_AUDIT_VS_LEGACY:.0f}x `iptables-legacy-save` | "
                   f"{fmt_s(big.audit_s)} s vs {fmt_s(big.floor.get('iptables-legacy-save'))} s = "
                   f"{fmt_s(r, 1)}x | {verdict(None if r is None else r <= TARGET_AUDIT_VS_LEGACY)} |")
        m = big.audit_rss_mb
        out.append(f"| peak memory of that audit under {TARGET_RSS_MB:.0f} MB | {fmt_s(m, 0)} MB | "
                   f"{verdict(None if m is None else m < TARGET_RSS_MB)} |")
    small = by.get("kube-35k")
    if big and small:
        rr = big.inp.rules / small.inp.rules
        for label, a, b in (("`lbfw audit` (whole process)", small.audit_s, big.audit_s),
                            ("read phase", small.phases.get("read_s"), big.phases.get("read_s")),
                            ("analyze phase", small.phases.get("analyze_s"), big.phases.get("analyze_s"))):
            lin = ratio(ratio(b, a), rr)
            out.append(f"| linear: 35k -> 140k, {label}: time ratio / rule ratio <= {TARGET_LINEARITY} | "
                       f"{fmt_s(a)} s -> {fmt_s(b)} s, {fmt_s(ratio(b, a), 2)}x for {rr:.2f}x rules = "
                       f"{fmt_s(lin, 2)} | {verdict(None if lin is None else lin <= TARGET_LINEARITY)} |")
    h = help_res.get("help_s")
    out.append(f"| `lbfw --help` under {TARGET_HELP_S} s | {fmt_s(h)} s | "
               f"{verdict(None if h is None else h < TARGET_HELP_S)} |")
    for name in ("filter-5k", "chair-5556"):
        row = by.get(name)
        if row:
            out.append(f"| `lbfw audit` of {name} under {TARGET_FILTER_S:.0f} s | {fmt_s(row.audit_s)} s | "
                       f"{verdict(None if row.audit_s is None else row.audit_s < TARGET_FILTER_S)} |")
    if big:
        a, b = big.floor.get("iptables-nft-save"), big.floor.get("nft -j list ruleset")
        note = big.floor_notes.get("nft -j list ruleset", "")
        out.append(f"| live 140k iptables-nft: read with `iptables-nft-save`, not nft JSON | "
                   f"iptables-nft-save {fmt_s(a)} s vs nft -j list ruleset {fmt_s(b) if b else note} s | "
                   "see lbfw.read.live (not measured here) |")

    out += ["", "## `lbfw --help` start-up", "",
            f"- `lbfw --help`: {fmt_s(help_res.get('help_s'))} s (median); bare `python -c pass`: "
            f"{fmt_s(help_res.get('python_s'))} s; `python -c 'import typer'`: {fmt_s(help_res.get('import_typer_s'))} s",
            f"- `import lbfw.cli` loads {help_res.get('modules', '?')} modules; the biggest top-level imports "
            "(cumulative, from `python -X importtime`):",
            ""]
    for name, us in help_res.get("import_top", []):
        out.append(f"  - `{name}`: {us / 1000:.1f} ms")
    out += ["", "tests/test_startup.py asserts that `lbfw --help` imports none of lbfw.read, lbfw.analyze,",
            "lbfw.checks, nftables or iptc (what makes it fast), rather than a flaky timing.", ""]
    errors = [(row.inp.name, e) for row in rows for e in row.errors]
    notes = [(row.inp.name, k, v) for row in rows for k, v in row.floor_notes.items()]
    if errors or notes:
        out += ["## Problems seen in this run", ""]
        out += [f"- {name}: {e}" for name, e in errors]
        out += [f"- {name}: {k}: {v}" for name, k, v in notes]
        out.append("")
    if prof:
        out += ["## Where the time goes (cProfile, sorted by own time)", "", "```", prof, "```", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- main

def build_inputs(workdir: Path, only: Optional[set]) -> list[Input]:
    inputs = []
    for name, size in generate.KUBE_SIZES.items():
        if only and name not in only:
            continue
        path = workdir / f"{name}.rules"
        text = generate.kube_dump(size)
        path.write_text(text)
        inputs.append(Input(name, path, "iptables", path, generate.count_rules(text)))
    if not only or "filter-5k" in only:
        path = workdir / "filter-5k.rules"
        text = generate.filter_dump()
        path.write_text(text)
        inputs.append(Input("filter-5k", path, "iptables", path, generate.count_rules(text)))
    chair = CORPUS / generate.CHAIR_DUMP
    if (not only or "chair-5556" in only) and chair.exists():
        text = chair.read_text()
        kernel = workdir / "chair-kernel.rules"
        kernel.write_text(generate.chair_for_kernel(text))
        inputs.append(Input("chair-5556", chair, "iptables", kernel, generate.count_rules(text)))
    if not only or "nft-100k-set" in only:
        path = workdir / "nft-100k-set.nft"
        text = generate.nft_big_set()
        path.write_text(text)
        rules = sum(1 for line in text.splitlines()
                    if line.startswith("\t\t") and not line.startswith("\t\t\t")
                    and not line.strip().startswith(("type ", "flags", "elements", "}")))
        inputs.append(Input("nft-100k-set", path, "nft", path, rules))
    return inputs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--only", default="", help="comma-separated input names "
                        "(kube-10k,kube-35k,kube-140k,filter-5k,chair-5556,nft-100k-set)")
    parser.add_argument("--write", metavar="PATH", help="write the Markdown report there")
    parser.add_argument("--no-floor", action="store_true", help="skip the kernel measurements")
    parser.add_argument("--no-iptc", action="store_true", help="skip python-iptables")
    parser.add_argument("--profile", default="kube-140k", metavar="NAME",
                        help="input to profile with cProfile ('' for none)")
    parser.add_argument("--phases", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--profile-file", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phases:
        print(json.dumps(phases(args.phases)))
        return 0
    if args.profile_file:
        print(profile(args.profile_file))
        return 0
    for tool in ("unshare", "nsenter", "iptables-legacy-save", "iptables-nft-save", "nft"):
        if not args.no_floor and shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (or use --no-floor)", file=sys.stderr)
            return 2
    started = time.perf_counter()
    only = {name.strip() for name in args.only.split(",") if name.strip()} or None
    rows = []
    with tempfile.TemporaryDirectory(prefix="lbfw-bench-") as tmp:
        inputs = build_inputs(Path(tmp), only)
        for inp in inputs:
            row = Row(inp)
            print(f"bench: {inp.name} ({inp.rules:,} rules)", file=sys.stderr, flush=True)
            measure_lbfw(row, args.runs)
            if not args.no_floor:
                try:
                    measure_floor(row, args.runs, iptc=not args.no_iptc)
                except Exception as err:  # noqa: BLE001
                    row.errors.append(f"floor: {type(err).__name__}: {err}")
            rows.append(row)
        prof = ""
        target = next((inp for inp in inputs if inp.name == args.profile), None)
        if target is not None:
            print(f"bench: profiling {target.name}", file=sys.stderr, flush=True)
            _w, _r, code, out, err = run_timed([sys.executable, str(Path(__file__).resolve()), "--profile-file",
                                                str(target.path)], timeout=900)
            prof = f"{target.name}: " + (out.decode() if code == 0 else f"profile failed: {err[-500:]}")
    print("bench: lbfw --help", file=sys.stderr, flush=True)
    help_res = measure_help(args.runs)
    report = render(rows, help_res, args.runs, time.perf_counter() - started, prof)
    print(report)
    if args.write:
        Path(args.write).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`lbfw --help` stays fast because it imports only what it needs (issue 6: under 0.3 s).

A wall-clock assertion would flake on a loaded machine, so these tests assert the cause of
speed instead: asking for help imports the CLI shell and typer, and none of the heavy parts.
Measured on the development machine (docs/performance.md has the current numbers): `import
rich.console` ~0.36 s, `import nftables` ~0.1 s, `import iptc` ~1.7 s, lbfw's read + analyze +
checks + render modules ~0.1 s compiled (~0.3 s more without bytecode), against ~0.2 s for
the whole `lbfw --help` today.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs lbfw's real entry point with the given arguments, then lists every module it loaded.
PROBE = """
import sys
sys.argv = ["lbfw"] + sys.argv[1:]
from lbfw.cli import main
try:
    main()
except SystemExit as stop:
    code = stop.code
else:
    code = 0
sys.stderr.write("\\nLBFW-MODULES " + str(code) + " " + " ".join(sorted(sys.modules)) + "\\n")
"""

# Modules `--help` must never load: lbfw's working parts (each command imports them when it
# runs), the kernel bindings, and rich (typer renders help with rich when asked to).
HEAVY = (
    "lbfw.read",
    "lbfw.analyze",
    "lbfw.checks",
    "lbfw.render",
    "lbfw.fix",
    "lbfw.sandbox",
    "lbfw.commands",
    "lbfw.pipeline",
    "nftables",
    "iptc",
    "rich",
)


def _modules_loaded_by(*args: str) -> tuple:
    """(exit code, stdout + stderr, set of module names) for `lbfw ARGS` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    marker = [line for line in proc.stderr.splitlines() if line.startswith("LBFW-MODULES ")]
    assert marker, f"the probe did not finish: {proc.stderr[-2000:]}"
    _, code, *modules = marker[-1].split(" ")
    return int(code), proc.stdout + proc.stderr, set(modules)


def _heavy(modules: set) -> list:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_imports_none_of_the_heavy_modules():
    code, text, modules = _modules_loaded_by("--help")
    assert code == 0
    assert "audit" in text and "fix" in text
    assert "lbfw.cli" in modules, "the probe did not go through lbfw.cli"
    assert _heavy(modules) == [], f"`lbfw --help` imported {_heavy(modules)}"
    # typer 0.29 imports pydantic (typer._adapters, ~0.14 s CPU) once a command runs; the
    # top-level help must not pay for it
    assert not any(m == "pydantic" or m.startswith("pydantic.") for m in modules)


@pytest.mark.parametrize("command", ["audit", "check", "fix", "verify", "rules", "rollback"])
def test_a_command_help_imports_none_of_the_heavy_modules(command):
    code, text, modules = _modules_loaded_by(command, "--help")
    assert code == 0
    assert "--help" in text
    assert _heavy(modules) == [], f"`lbfw {command} --help` imported {_heavy(modules)}"


def test_no_arguments_prints_help_without_the_heavy_modules():
    code, text, modules = _modules_loaded_by()
    assert "audit" in text  # the help goes to stderr here, as a usage error's does
    assert code in (0, 2)  # typer's no_args_is_help exits 2 with this typer, 0 with older ones
    assert _heavy(modules) == []


def test_the_probe_sees_a_heavy_import_when_a_command_runs(tmp_path):
    """Guards the tests above against passing vacuously: a real command does load the parts."""
    rules = tmp_path / "rules.v4"
    rules.write_text("*filter\n:INPUT DROP [0:0]\n-A INPUT -s 127.0.0.1/32 -j ACCEPT\nCOMMIT\n")
    code, _text, modules = _modules_loaded_by("audit", str(rules), "--format", "json", "--fail-on", "never")
    assert code == 0
    assert "lbfw.read" in modules and "lbfw.analyze.engine" in modules and "lbfw.checks" in modules
    # reading an iptables dump needs neither libnftables nor python-iptables
    assert "nftables" not in modules and "iptc" not in modules

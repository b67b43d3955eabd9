"""Snapshot of what lbfw says about every sample: the audit JSON and the fix diff of each file
in rules/examples and ../shared/corpus, one file per sample in a directory.

A restructuring must leave these byte-identical:

    python tests/tools/audit_snapshot.py write /tmp/before     # on the old code
    python tests/tools/audit_snapshot.py write /tmp/after      # on the new code
    python tests/tools/audit_snapshot.py compare /tmp/before /tmp/after

Run from the repository root with the project's virtual environment; lbfw is started as a
subprocess (the real CLI), one process per sample.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"


def samples() -> list[Path]:
    """Every sample ruleset, as a path relative to the repository root when it is inside it."""
    found = [p for p in sorted((ROOT / "rules" / "examples").iterdir()) if p.suffix != ".md"]
    if CORPUS.is_dir():
        found += [p for p in sorted(CORPUS.iterdir()) if p.name != "README.md"]
    return found


def _lbfw(*args: str) -> str:
    """stdout, stderr and exit code of one lbfw run, as one text."""
    proc = subprocess.run(
        [sys.executable, "-m", "lbfw", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "LBFW_CONFIG": ""},
    )
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"


def _name(path: Path) -> str:
    return f"{path.parent.name}__{path.name}"


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in samples():
        rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        audit = _lbfw("audit", rel, "--format", "json", "--fail-on", "never")
        diff = _lbfw("fix", rel)
        (out / f"{_name(path)}.audit.json").write_text(audit)
        (out / f"{_name(path)}.fix.diff").write_text(diff)


def compare(before: Path, after: Path) -> int:
    names = sorted({p.name for p in before.iterdir()} | {p.name for p in after.iterdir()})
    differ = [
        n
        for n in names
        if not (before / n).exists()
        or not (after / n).exists()
        or (before / n).read_bytes() != (after / n).read_bytes()
    ]
    for n in differ:
        print(f"differs: {n}")
    print(f"{len(names) - len(differ)} identical, {len(differ)} different")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)

"""Reading an nft file needs no root where user namespaces are allowed (`unshare -rn`), and
says clearly what is missing where they are not. Run as the unprivileged user nobody."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

SRC = str(Path(__file__).resolve().parents[2] / "src")

CODE = r"""
import sys
from lbfw.errors import InputError
from lbfw.read.nft import files as nft_files
try:
    tables = nft_files.read(sys.argv[1], "ongy.nft")
except InputError as err:
    print("ERROR", err)
else:
    print("OK", len(tables), sum(len(c.rules) for t in tables for c in t.chains.values()),
          sorted({r.origin.line for t in tables for c in t.chains.values() for r in c.rules})[:3])
"""


def _as_nobody(argv):
    # the venv's interpreter may live under /root (mode 0700): use the system one, which
    # falls back to the nft command in the namespace when the binding is not installed
    return subprocess.run(
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "env", f"PYTHONPATH={SRC}", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_nft_file_reads_without_root_or_says_user_namespaces_are_needed(corpus_dir):
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root (to become nobody with setpriv) and /usr/bin/python3")
    probe = _as_nobody(["/usr/bin/python3", "-c", "import dataclasses"])
    if probe.returncode != 0:
        pytest.skip(f"the system python cannot run lbfw as nobody: {probe.stderr.strip()}")
    userns = _as_nobody(["unshare", "-rn", "true"]).returncode == 0
    path = str(corpus_dir / "config_ongy_flat_share__2015_aug_nft-ruleset")
    out = _as_nobody(["/usr/bin/python3", "-c", CODE, path])
    assert out.returncode == 0, out.stderr
    if userns:
        assert out.stdout.strip() == "OK 2 23 [5, 10, 11]"
    else:
        assert out.stdout.startswith("ERROR ongy.nft:") and "user namespaces" in out.stdout

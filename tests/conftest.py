"""Shared fixtures. Kernel tests run in private network namespaces only.

`kernel` marker: the test needs root (or user namespaces) and the real iptables/nft
tools. Without them it is skipped locally, but with CI=true it fails: CI must never
skip a kernel test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
EXAMPLES = ROOT / "rules" / "examples"
REFERENCE = ROOT / "rules" / "reference"


def _kernel_available() -> str | None:
    """None when private network namespaces and the tools work here, else why not."""
    for tool in ("unshare", "nsenter", "ip", "nft", "iptables-legacy-restore", "iptables-nft-restore"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    argv = ["unshare", "-n", "true"] if os.geteuid() == 0 else ["unshare", "-rn", "true"]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot create a network namespace: {err}"
    if proc.returncode != 0:
        return f"cannot create a network namespace: {proc.stderr.decode(errors='replace').strip()}"
    return None


_KERNEL_REASON = _kernel_available()


def pytest_collection_modifyitems(config, items):
    if _KERNEL_REASON is None:
        return
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    for item in items:
        if "kernel" in item.keywords:
            if in_ci:
                item.add_marker(pytest.mark.usefixtures("_kernel_required_in_ci"))
            else:
                item.add_marker(pytest.mark.skip(reason=f"kernel test: {_KERNEL_REASON}"))


@pytest.fixture
def _kernel_required_in_ci():
    pytest.fail(f"CI=true and a kernel test cannot run: {_KERNEL_REASON}", pytrace=False)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"../shared/corpus is missing ({CORPUS})", pytrace=False)
        pytest.skip("../shared/corpus is not beside the project")
    return CORPUS


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE

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


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_runtest_setup(item):
    if _KERNEL_REASON is None or "kernel" not in item.keywords:
        return
    if _in_ci():
        pytest.fail(f"CI=true and a kernel test cannot run: {_KERNEL_REASON}", pytrace=False)
    pytest.skip(f"kernel test: {_KERNEL_REASON}")


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        if _in_ci():
            pytest.fail(f"../shared/corpus is missing ({CORPUS})", pytrace=False)
        pytest.skip("../shared/corpus is not beside the project")
    return CORPUS


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE


@pytest.fixture(autouse=True)
def _no_host_configuration(monkeypatch):
    """Never read the host's /etc/lbfw/lbfw.toml: an empty LBFW_CONFIG means no configuration file
    (tests that want one name it with --config or LBFW_CONFIG)."""
    monkeypatch.setenv("LBFW_CONFIG", "")


@pytest.fixture(autouse=True)
def _no_host_backups(monkeypatch, tmp_path_factory):
    """Never write the host's /var/lib/lbfw: a live apply a test forgets to point elsewhere (its
    --backup-dir or LBFW_BACKUP_DIR) keeps its backups in a private temporary directory instead
    (inherited by the lbfw processes the test starts, namespaces and ssh hosts included)."""
    if "LBFW_BACKUP_DIR" not in os.environ:
        monkeypatch.setenv("LBFW_BACKUP_DIR", str(tmp_path_factory.mktemp("lbfw-backups") / "backups"))

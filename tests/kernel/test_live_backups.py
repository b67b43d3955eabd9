"""Backups lbfw trusts only when they are its own, in a private namespace: a planted,
foreign-owned, truncated, digest-mismatched or outside-pointing backup is refused by `lbfw
rollback` with exit 2 and nothing changed; a world-writable, foreign-owned or symlinked backup
directory is refused by `lbfw fix --apply` before anything changes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from test_apply import lbfw_in, setup, snapshot

from lbfw.sandbox.netns import Namespace

pytestmark = pytest.mark.kernel

NOBODY = 65534


def _manifest(backup: Path) -> dict:
    return json.loads((backup / "manifest.json").read_text())


def _nft_file(backup: Path) -> Path:
    [entry] = [e for e in _manifest(backup)["tables"] if e["backend"] == "nftables"]
    return backup / entry["file"]


def _rewrite_manifest(backup: Path, change) -> None:
    manifest = _manifest(backup)
    change(manifest)
    (backup / "manifest.json").write_text(json.dumps(manifest))


def planted(backup: Path) -> None:
    """Another program's file, with a digest to match: it would flush the whole ruleset."""
    path = _nft_file(backup)
    data = b"flush ruleset\ntable ip planted {\n}\n"
    path.write_bytes(data)

    def fix(manifest):
        for entry in manifest["tables"]:
            if entry["file"] == path.name:
                entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    _rewrite_manifest(backup, fix)


def foreign_owned(backup: Path) -> None:
    os.chown(_nft_file(backup), NOBODY, NOBODY)


def truncated(backup: Path) -> None:
    path = _nft_file(backup)
    path.write_bytes(path.read_bytes()[:20])


def digest_mismatch(backup: Path) -> None:
    path = _nft_file(backup)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"127.0.0.1", b"127.0.0.9"))


def outside(backup: Path) -> None:
    def fix(manifest):
        manifest["tables"][0]["file"] = "../../etc-nftables.conf"

    _rewrite_manifest(backup, fix)


TAMPERED = [planted, foreign_owned, truncated, digest_mismatch, outside]


def test_untrusted_backups_are_refused_and_nothing_changes(examples_dir, tmp_path):
    backups = tmp_path / "b"
    with Namespace() as ns:
        setup(ns, examples_dir / "input-narrow-accept.rules", examples_dir.joinpath("nft-saddr-narrow.nft").read_text())
        assert lbfw_in(ns, "fix", "--apply", "--yes", "--backup-dir", str(backups)).returncode == 0
        [original] = list(backups.iterdir())
        fixed = snapshot(ns)
        for tamper in TAMPERED:
            root = tmp_path / tamper.__name__
            root.mkdir(mode=0o700)
            copy = root / original.name
            shutil.copytree(original, copy)
            tamper(copy)
            proc = lbfw_in(ns, "rollback", "--backup-dir", str(root))
            assert proc.returncode == 2, (tamper.__name__, proc.stderr)
            assert "will not use it" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
            assert snapshot(ns) == fixed, tamper.__name__
        # the untouched original is still good
        assert lbfw_in(ns, "rollback", "--backup-dir", str(backups)).returncode == 0


@pytest.mark.parametrize("kind", ["world-writable", "foreign-owned", "symlink"])
def test_an_untrusted_backup_directory_is_refused_before_anything_changes(examples_dir, tmp_path, kind):
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    backups = tmp_path / "b"
    if kind == "symlink":
        backups.symlink_to(target)
    else:
        backups.mkdir()
        if kind == "world-writable":
            os.chmod(backups, 0o777)
        else:
            os.chown(backups, NOBODY, NOBODY)
    with Namespace() as ns:
        setup(ns, examples_dir / "input-narrow-accept.rules", None)
        before = snapshot(ns)
        proc = lbfw_in(ns, "fix", "--apply", "--yes", "--backup-dir", str(backups))
        assert proc.returncode == 2, proc.stderr
        assert "will not use it" in proc.stderr and "Traceback" not in proc.stderr
        assert snapshot(ns) == before
    assert not any(target.iterdir()) and (kind == "symlink" or not any(backups.iterdir()))

"""`-o` onto special files (root: mknod): a character device stays a device, a FIFO is written
through, a regular file is replaced whole, and a full disk leaves nothing behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

pytestmark = pytest.mark.kernel

LBFW = [sys.executable, "-m", "lbfw"]


def audit_to(examples_dir, output) -> subprocess.CompletedProcess:
    return subprocess.run(
        LBFW + ["audit", str(examples_dir / "input-narrow-accept.rules"), "-f", "json", "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_output_onto_a_character_device_leaves_it_a_device(examples_dir, tmp_path):
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    proc = audit_to(examples_dir, null)
    assert proc.returncode == 1, proc.stderr  # findings; the report went into the device
    assert stat.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temporary file left


def test_output_onto_a_fifo_is_written_through(examples_dir, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    proc = audit_to(examples_dir, fifo)
    reader.join(timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert '"findings"' in got[0]


FULL_DISK = r"""
import os, subprocess, sys
disk, rules = sys.argv[1:3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", disk], check=True)
report = os.path.join(disk, "report.json")
with open(report, "w") as f:
    f.write("old\n")
try:
    with open(os.path.join(disk, "filler"), "wb") as f:
        f.write(b"x" * 8192)
except OSError:
    pass  # full now
proc = subprocess.run([sys.executable, "-m", "lbfw", "audit", rules, "-f", "json", "-o", report],
                      capture_output=True, text=True)
print(proc.returncode)
print(open(report).read().strip())
print(" ".join(sorted(os.listdir(disk))))
print(proc.stderr.strip().replace("\n", " "))
"""


def test_a_full_disk_leaves_the_old_report_and_no_temporary_file(examples_dir, tmp_path):
    """In a private mount namespace: a tmpfs of two pages, already full."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            sys.executable,
            "-c",
            FULL_DISK,
            str(disk),
            str(examples_dir / "input-narrow-accept.rules"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    code, old, names, stderr = proc.stdout.splitlines()
    assert code == "2" and "No space left" in stderr, stderr
    assert old == "old"
    assert names == "filler report.json"  # no temporary file left behind

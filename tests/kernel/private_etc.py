"""A private /etc for commands run in a test's network namespace: a temporary directory bound over
/etc in a mount namespace of their own (the host's /etc is never read or written)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the few files commands, pwd and the iptables tools need inside the private /etc
ETC_KEEP = ("passwd", "group", "nsswitch.conf", "protocols", "services", "ethertypes", "iproute2", "alternatives")

# in the command's own mount namespace: bind the private /etc (and more) over the real ones, then exec
_WITH_ETC = (
    "import json, os, subprocess, sys\n"
    "subprocess.run(['mount', '--make-rprivate', '/'], check=True)\n"
    "for src, dst in json.loads(sys.argv[1]):\n"
    "    os.makedirs(dst, exist_ok=True)\n"
    "    subprocess.run(['mount', '--bind', src, dst], check=True)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def make_etc(files: dict) -> Path:
    """A private /etc: ETC_KEEP copied from the host, then ``files`` ({"iptables/rules.v4": text})."""
    folder = Path(tempfile.mkdtemp(prefix="lbfw-etc-"))
    os.chmod(folder, 0o755)
    for name in ETC_KEEP:
        src = Path("/etc") / name
        if src.is_dir():
            shutil.copytree(src, folder / name, symlinks=True)
        elif src.exists():
            shutil.copy2(src, folder / name)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def run_with_etc(ns, etc: Path, argv: list, binds: tuple = (), timeout: float = 180, pid: bool = False):
    """``argv`` in ``ns`` with ``etc`` as /etc (and each (src, dst) of ``binds`` bound too).
    ``pid``: in a PID namespace of its own too, so that every daemon it starts dies with it."""
    import json

    pairs = json.dumps([(str(etc), "/etc"), *[(str(s), str(d)) for s, d in binds]])
    own = ["-p", "-f", "--mount-proc"] if pid else []
    return ns.run(
        ["unshare", "-m", *own, "--", sys.executable, "-c", _WITH_ETC, pairs, *argv],
        check=False,
        cwd=str(ROOT),
        timeout=timeout,
    )


def lbfw_with_etc(ns, etc: Path, *args, binds: tuple = ()):
    return run_with_etc(ns, etc, [sys.executable, "-m", "lbfw", *map(str, args)], binds)

"""The install role (lbfw.loopback.install) on a namespace host reached by real ssh: a venv from a
wheelhouse built here, idempotent, and a clear failure naming a Python that is too old or a
wheelhouse without lbfw. Its own module: building the wheel and three plays take 30-90 s here."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from test_fleet_ansible import BIN, HOSTS, ROOT, SSHD, Fleet, _need, _run, ruleset_digest

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

INSTALL_PLAY = """\
- hosts: a
  gather_facts: false
  roles:
    - role: lbfw.loopback.install
  tasks:
    - name: The installed lbfw runs
      ansible.builtin.command:
        argv: ["{{ lbfw_bin }}", rules, --format, json]
      changed_when: false
"""


@pytest.fixture(scope="module")
def fleet():
    _need("ssh", "ssh-keygen", SSHD, str(BIN / "ansible-playbook"), "ip", "iptables-legacy-restore")
    tmp = Path(tempfile.mkdtemp(prefix="lbfw-fleet-install-"))
    own_before = ruleset_digest(None)
    f = Fleet(tmp, {"a": HOSTS["a"]}, missing=(), broken=())
    try:
        f.setup()
        yield f
    finally:
        f.teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    assert ruleset_digest(None) == own_before, "this machine's own firewall changed"


def test_install_role_is_idempotent_and_names_a_too_old_python(fleet):
    wheelhouse = fleet.tmp / "wheelhouse"
    build = _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheelhouse), str(ROOT)], timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    play = fleet.tmp / "install.yml"
    play.write_text(INSTALL_PLAY)
    venv = fleet.tmp / "opt-lbfw"
    argv = [
        str(BIN / "ansible-playbook"),
        "-i",
        str(fleet.tmp / "inventory"),
        str(play),
        "-e",
        f"lbfw_venv={venv}",
        "-e",
        f"lbfw_wheelhouse={wheelhouse}",
    ]
    first = _run(argv, env=fleet.env(), cwd=fleet.tmp, timeout=300)
    assert first.returncode == 0, first.stdout[-4000:]
    assert re.search(r"^a\s+: ok=\d+\s+changed=[1-9]", first.stdout, re.M)
    assert (venv / "bin" / "lbfw").exists()
    again = _run(argv, env=fleet.env(), cwd=fleet.tmp, timeout=300)
    assert again.returncode == 0 and re.search(r"^a\s+: ok=\d+\s+changed=0 ", again.stdout, re.M), again.stdout
    version = ".".join(map(str, sys.version_info[:3])) if sys.executable.startswith("/usr/bin/") else None
    old = _run(argv + ["-e", "lbfw_min_python=99.0"], env=fleet.env(), cwd=fleet.tmp, timeout=300)
    assert old.returncode == 2
    message = re.search(
        r"a: lbfw needs Python 99.0 or newer, but /usr/bin/python3 is Python (\d+\.\d+\.\d+)",
        " ".join(old.stdout.split()),
    )
    assert message, old.stdout[-3000:]
    assert version is None or message.group(1) == version
    missing = _run(argv + ["-e", f"lbfw_wheelhouse={fleet.tmp / 'empty'}"], env=fleet.env(), cwd=fleet.tmp)
    assert missing.returncode == 2 and "no lbfw wheel in" in " ".join(missing.stdout.split())

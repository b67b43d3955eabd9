"""The Ansible collection as a user gets it: it builds, installs offline, documents every module option
the module accepts, and its playbooks pass Ansible's syntax check."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODULES = ("audit", "check", "fix")


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_HOME=str(tmp / "home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "home" / "tmp"),
        ANSIBLE_COLLECTIONS_PATH=str(tmp / "coll"),
        ANSIBLE_CONFIG=str(tmp / "no-ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
    )
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    if not (BIN / "ansible-galaxy").exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true and ansible-core is missing (pip install -e '.[test]')", pytrace=False)
        pytest.skip("ansible-core is not installed (the test extra)")
    tmp = tmp_path_factory.mktemp("collection")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=_env(tmp), cwd=tmp, timeout=120
        )

    build = run("ansible-galaxy", "collection", "build", str(ROOT / "ansible"), "--output-path", str(tmp / "dist"))
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = next((tmp / "dist").glob("lbfw-loopback-*.tar.gz"))
    inst = run("ansible-galaxy", "collection", "install", "--offline", str(tarball), "-p", str(tmp / "coll"))
    assert inst.returncode == 0, inst.stdout + inst.stderr
    return tmp


def _argument_spec(module: str) -> set:
    """The option names main() passes to AnsibleModule (read from the source, not imported)."""
    tree = ast.parse((ROOT / "ansible" / "plugins" / "modules" / f"{module}.py").read_text())
    names = {"lbfw_bin"}  # LBFW_ARGS from module_utils
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "argument_spec" and isinstance(node.value, ast.Call):
            names.update(k.arg for k in node.value.keywords if k.arg)
            for k in node.value.keywords:
                if k.arg is None and isinstance(k.value, ast.Dict):
                    names.update(key.value for key in k.value.keys if isinstance(key, ast.Constant))
    return names


@pytest.mark.parametrize("module", MODULES)
def test_every_module_option_is_documented(installed, module):
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", f"lbfw.loopback.{module}"],
        capture_output=True,
        text=True,
        env=_env(installed),
        cwd=installed,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[f"lbfw.loopback.{module}"]
    assert set(doc["doc"]["options"]) == _argument_spec(module)
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert doc["examples"].strip() and doc["return"]


@pytest.mark.parametrize("playbook", ["audit", "fix"])
def test_playbooks_pass_the_syntax_check(installed, playbook):
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", f"lbfw.loopback.{playbook}"],
        capture_output=True,
        text=True,
        env=_env(installed),
        cwd=installed,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

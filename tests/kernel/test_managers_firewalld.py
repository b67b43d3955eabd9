"""The real firewalld (Debian's package: `scripts/system-deps.sh`) in private network, mount and PID
namespaces: its own D-Bus system bus (a private dbus-daemon whose socket is in a private /run),
a private /etc and /var/log, the nftables backend. A direct rule and a zone rich rule for 127.0.0.1:

- `lbfw audit --live` attributes the kernel rules they make to firewalld, with direct.xml:LINE or
  zones/public.xml:LINE and the `firewall-cmd --permanent` commands;
- `lbfw fix` shows those commands; `lbfw fix --apply --yes` runs them in its transaction: the
  kernel, direct.xml and public.xml change and a client bound to 127.0.0.2 reaches 127.0.0.1:8080;
- `lbfw rollback` and the watchdog of an unconfirmed `--detach` put both files back byte for byte
  and reload firewalld: the flow is blocked again.

Every process the test starts lives in the PID namespace and dies with it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from private_etc import make_etc, run_with_etc  # tests/kernel is on sys.path

from lbfw.sandbox.netns import Namespace

pytestmark = pytest.mark.kernel

DIRECT = """\
<?xml version="1.0" encoding="utf-8"?>
<direct>
  <!-- port 8080 for this host's own clients only -->
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-s 127.0.0.1 -p tcp --dport 8080 -j ACCEPT</rule>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="1">-p tcp --dport 8080 -j DROP</rule>
</direct>
"""
ZONE = """\
<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>Public</short>
  <service name="ssh"/>
  <rule family="ipv4">
    <source address="127.0.0.1"/>
    <port port="9000" protocol="tcp"/>
    <accept/>
  </rule>
</zone>
"""
# A system bus for firewalld alone: no service activation (nothing else is started), root only.
BUS = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow send_type="signal"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"""

# In the private namespaces: the bus and firewalld (its backend from argv[2]), then STEPS.
START = r"""
import glob, json, os, socket, subprocess, sys, time
out = {}

def run(*argv):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    return {"code": p.returncode, "out": p.stdout, "err": p.stderr}

def flow(port):
    # a client bound to 127.0.0.2 connecting to 127.0.0.1:port (True: the handshake completed)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    client = socket.socket()
    client.bind(("127.0.0.2", 0))
    client.settimeout(1.5)
    try:
        client.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        client.close()
        server.close()

def state(label):
    files = {p: open(p).read() if os.path.exists(p) else None for p in
             ("/etc/firewalld/direct.xml", "/etc/firewalld/zones/public.xml", "/etc/firewalld/direct.xml.old")}
    out[label] = {"flow": flow(8080), "files": files, "direct": run("firewall-cmd", "--direct", "--get-all-rules"),
                  "rich": run("firewall-cmd", "--zone=public", "--list-rich-rules"), "save": run("iptables-nft-save")}

conf = open("/etc/firewalld/firewalld.conf").read()
with open("/etc/firewalld/firewalld.conf", "w") as handle:
    handle.write(conf.replace("FirewallBackend=nftables", "FirewallBackend=" + sys.argv[2]))
os.makedirs("/run/dbus", exist_ok=True)
bus = subprocess.Popen(["dbus-daemon", "--config-file=/etc/lbfw-test-bus.conf", "--nofork", "--nopidfile"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    if os.path.exists("/run/dbus/system_bus_socket"):
        break
    time.sleep(0.1)
log = open("/var/log/firewalld-test.log", "w")
daemon = subprocess.Popen(["firewalld", "--nofork", "--nopid"], stdout=log, stderr=subprocess.STDOUT)
for _ in range(300):
    if run("firewall-cmd", "--state")["out"].strip() == "running":
        break
    time.sleep(0.2)
out["firewalld"] = run("firewall-cmd", "--state")
backups = sys.argv[1]
lbfw = [sys.executable, "-m", "lbfw"]
"""
STOP = r"""
daemon.terminate()
daemon.wait(timeout=60)
bus.terminate()
bus.wait(timeout=10)
log.close()
out["log"] = open("/var/log/firewalld-test.log").read()[-3000:]
print(json.dumps(out))
"""
AUDIT = r"""
state("before")
out["audit"] = run(*lbfw, "audit", "--live", "--format", "json")
"""
# a real flow after each step
FIX = r"""
state("before")
out["dry"] = run(*lbfw, "fix")
out["apply"] = run(*lbfw, "fix", "--apply", "--yes", "--backup-dir", backups + "/a")
state("applied")
out["rollback"] = run(*lbfw, "rollback", "--backup-dir", backups + "/a")
state("rolled back")
out["detach"] = run(*lbfw, "fix", "--apply", "--detach", "--confirm-timeout", "3", "--format", "json",
                    "--backup-dir", backups + "/d")
state("pending")
deadline = time.time() + 90
while time.time() < deadline:
    states = [json.load(open(p)) for p in glob.glob(backups + "/d/*/state.json")]
    if states and states[0].get("state") != "pending":
        break
    time.sleep(0.3)
out["watchdog"] = states[0] if states else None
state("reverted")
"""


@pytest.fixture
def etc():
    missing = [tool for tool in ("firewalld", "firewall-cmd", "dbus-daemon") if shutil.which(tool) is None]
    if missing:
        why = f"{', '.join(missing)} not installed: run scripts/system-deps.sh (make setup)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    folder = make_etc({"firewalld/direct.xml": DIRECT, "firewalld/zones/public.xml": ZONE, "lbfw-test-bus.conf": BUS})
    shutil.copytree(
        "/etc/firewalld", folder / "firewalld", dirs_exist_ok=True, ignore=shutil.ignore_patterns("direct.xml")
    )
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _kernel_rules(save: str) -> list[str]:
    return [line for line in save.splitlines() if line.startswith("-A ")]


def run_firewalld(etc: Path, steps: str, backend: str = "nftables") -> dict:
    """START, ``steps`` and STOP in private namespaces (network, mount, PID) with ``etc`` as /etc and
    firewalld on ``backend``; what the script gathered in ``out``."""
    scratch = [Path(tempfile.mkdtemp(prefix=f"lbfw-{name}-")) for name in ("run", "log", "backups")]
    run_dir, log_dir, backups = scratch
    try:
        with Namespace() as ns:
            proc = run_with_etc(
                ns,
                etc,
                [sys.executable, "-c", START + steps + STOP, str(backups), backend],
                binds=((run_dir, "/run"), (log_dir, "/var/log")),
                timeout=600,
                pid=True,
            )
    finally:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["firewalld"]["out"].strip() == "running", out["log"]
    return out


def test_firewalld_rules_are_attributed_with_file_line_and_commands(etc):
    out = run_firewalld(etc, AUDIT)
    before = out["before"]
    # the nftables backend puts the direct rules into iptables-nft's own INPUT chain
    assert _kernel_rules(before["save"]["out"]) == [
        "-A INPUT -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 8080 -j DROP",
    ]
    assert before["flow"] is False

    findings = json.loads(out["audit"]["out"])["findings"]
    direct = next(f for f in findings if f["check"] == "LB002" and f["chain"] == "INPUT")
    add = "firewall-cmd --permanent --direct --add-rule ipv4 filter INPUT 0 -i lo -p tcp --dport 8080 -j ACCEPT"
    remove = "firewall-cmd --permanent --direct --remove-rule ipv4 filter INPUT 0 -s 127.0.0.1 -p tcp --dport 8080"
    assert direct["owner"] == "firewalld" and "/etc/firewalld/direct.xml:4: `" in direct["message"]
    assert f"`{add}`" in direct["message"] and f"`{remove} -j ACCEPT`" in direct["message"]
    drop = next(f for f in findings if f["check"] == "LB001" and f["chain"] == "INPUT")
    assert (
        drop["owner"] == "firewalld" and "(/etc/firewalld/direct.xml:5: change it with `firewall-cmd" in drop["message"]
    )
    rich = next(f for f in findings if f["check"] == "LB002" and f["chain"] == "filter_IN_public_allow")
    assert rich["owner"] == "firewalld" and "/etc/firewalld/zones/public.xml:5: `" in rich["message"]
    assert (
        '`firewall-cmd --permanent --zone=public --add-rich-rule \'rule family="ipv4" source '
        'address="127.0.0.0/8" port port="9000" protocol="tcp" accept\'`' in rich["message"]
    )


def test_lbfw_fix_runs_firewall_cmd_in_its_transaction_and_the_revert_undoes_it(etc):
    out = run_firewalld(etc, FIX)
    before = out["before"]
    add = "firewall-cmd --permanent --direct --add-rule ipv4 filter INPUT 0 -i lo -p tcp --dport 8080 -j ACCEPT"
    assert f"runs `{add}`" in out["dry"]["err"], out["dry"]["err"]
    assert "runs `firewall-cmd --reload`" in out["dry"]["err"]
    assert before["files"]["/etc/firewalld/direct.xml"] == DIRECT  # the dry run changed nothing

    applied = out["applied"]
    assert "ran `firewall-cmd --reload`" in out["apply"]["err"], out["apply"]["err"]
    assert applied["flow"] is True, (out["apply"]["err"], applied["save"]["out"])
    assert "ipv4 filter INPUT 0 -i lo -p tcp --dport 8080 -j ACCEPT" in applied["direct"]["out"]
    assert "-s 127.0.0.1" not in applied["direct"]["out"]
    assert "-A INPUT -i lo -p tcp -m tcp --dport 8080 -j ACCEPT" in _kernel_rules(applied["save"]["out"])
    assert '"127.0.0.0/8"' in applied["files"]["/etc/firewalld/zones/public.xml"]
    assert 'address="127.0.0.0/8"' in applied["rich"]["out"]

    for label in ("rolled back", "reverted"):
        again = out[label]
        assert again["files"] == before["files"], label
        assert _kernel_rules(again["save"]["out"]) == _kernel_rules(before["save"]["out"]), label
        assert again["flow"] is False, label
    assert out["rollback"]["code"] == 0, out["rollback"]["err"]
    assert out["detach"]["code"] == 0, out["detach"]["err"]
    assert out["pending"]["flow"] is True  # applied until the deadline
    assert out["watchdog"]["state"] == "reverted" and "watchdog" in out["watchdog"]["why"]


def test_on_the_iptables_backend_the_same_entries_are_traced(etc):
    """firewalld's iptables backend puts direct rules into INPUT_direct and rich rules into
    IN_public_allow (iptables-nft here, as Debian's iptables is)."""
    out = run_firewalld(etc, 'out["audit"] = run(*lbfw, "audit", "--live", "--format", "json")\n', "iptables")
    findings = json.loads(out["audit"]["out"])["findings"]
    traced = {(f["chain"], f["message"].split("instead (")[-1].split(": `")[0]) for f in findings if f["owner"]}
    assert ("INPUT_direct", "/etc/firewalld/direct.xml:4") in traced, findings
    assert ("IN_public_allow", "/etc/firewalld/zones/public.xml:5") in traced, findings

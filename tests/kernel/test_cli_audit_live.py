"""`lbfw audit` with no SOURCE reads the live kernel: run inside a private network namespace
holding example rules (legacy iptables and native nftables at once), never on the host."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "rules" / "examples"


@pytest.fixture(scope="module")
def ns():
    from lbfw.sandbox.netns import Namespace

    with Namespace() as space:
        space.load_iptables((EX / "input-narrow-accept.rules").read_text(), family="ip", backend="legacy")
        space.load_nft(EX / "nft-saddr-narrow.nft")
        yield space


def lbfw_in(ns, *args):
    return ns.run([sys.executable, "-m", "lbfw", *args], check=False)


@pytest.mark.kernel
def test_live_audit_json_names_backend_index_and_handle(ns):
    proc = lbfw_in(ns, "audit", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    got = {
        (f["check"], f["source"], f["table"], f["chain"], f["index"], f["handle"], f["line"]) for f in doc["findings"]
    }
    assert ("LB002", "live:legacy", "filter", "INPUT", 1, None, None) in got
    nft = [f for f in doc["findings"] if f["source"] == "live:nftables"]
    assert [(f["check"], f["chain"], f["rule"]) for f in nft] == [("LB002", "input", "ip saddr 127.0.0.1 accept")]
    assert isinstance(nft[0]["handle"], int)
    assert ("LB001", "live:legacy", "filter", "INPUT", None, None, None) in got
    assert {s["source"] for s in doc["sources"]} >= {"live:legacy", "live:nftables"}


@pytest.mark.kernel
def test_live_audit_text_and_sarif_locations(ns):
    text = lbfw_in(ns, "audit").stdout
    assert "live:legacy ip filter INPUT #1: LB002 warning" in text
    assert "live:legacy ip filter INPUT policy: LB001 error" in text
    assert "live:nftables inet filter input handle " in text
    doc = json.loads(lbfw_in(ns, "audit", "--format", "sarif").stdout)
    for res in doc["runs"][0]["results"]:
        loc = res["locations"][0]
        assert "physicalLocation" not in loc
        host, where = loc["logicalLocations"]
        assert host["kind"] == "resource" and where["fullyQualifiedName"].startswith(f"{host['name']}/live:")
    assert doc["runs"][0]["automationDetails"]["id"] == f"lbfw/{host['name']}/"


@pytest.mark.kernel
def test_live_check_in_the_namespace(ns):
    proc = lbfw_in(ns, "check", "--to", "127.0.0.53:53/udp", "--format", "json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["flows"][0]["verdict"] == "blocked"


@pytest.mark.kernel
def test_live_audit_verify_agrees_with_real_traffic(ns):
    proc = lbfw_in(ns, "audit", "--verify", "--format", "json", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    flows = json.loads(proc.stdout)["flows"]
    observed = [f for f in flows if not str(f["observed"]).startswith("not observed")]
    assert observed, flows
    assert all(f["verified"] for f in observed), [f for f in observed if not f["verified"]]
    assert {f["verdict"] for f in observed} == {"delivered", "blocked"}


@pytest.mark.kernel
def test_verify_reads_standard_input_once():
    from typer.testing import CliRunner

    from lbfw.cli import app

    text = (EX / "input-narrow-accept.rules").read_text()
    result = CliRunner().invoke(app, ["audit", "-", "--verify", "--format", "json", "--fail-on", "never"], input=text)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {f["check"] for f in doc["findings"]} == {"LB001", "LB002"}
    assert doc["flows"] and all(f["verified"] for f in doc["flows"])


@pytest.mark.kernel
def test_live_iptables_nft_backend_is_audited_under_its_own_name():
    from lbfw.sandbox.netns import Namespace

    with Namespace() as space:
        space.load_iptables((EX / "output-narrow-accept.rules").read_text(), family="ip", backend="nft")
        proc = lbfw_in(space, "audit", "--format", "json")
        assert proc.returncode == 1, proc.stderr
        doc = json.loads(proc.stdout)
        got = {(f["check"], f["source"], f["chain"], f["index"]) for f in doc["findings"]}
        assert ("LB002", "live:iptables-nft", "OUTPUT", 1) in got
        assert all(f["source"] == "live:iptables-nft" for f in doc["findings"])  # not counted twice via nft


@pytest.mark.kernel
def test_nft_json_dump_file_is_audited_with_handles(tmp_path):
    from lbfw.sandbox.netns import Namespace

    with Namespace() as space:
        space.load_nft(EX / "nft-named-set.nft")
        dump = space.run(["nft", "-j", "list", "ruleset"]).stdout
    path = tmp_path / "ruleset.json"
    path.write_text(dump)
    from lbfw.pipeline import audit_ruleset
    from lbfw.read import read_sources

    findings, _ = audit_ruleset(read_sources([str(path)]))
    lb002 = [f for f in findings if f.check == "LB002"]
    assert len(lb002) == 1 and lb002[0].handle is not None and lb002[0].source == str(path)
    assert "@trusted" in lb002[0].rule.text and "set @trusted" in lb002[0].message
    assert {f.check for f in findings} == {"LB001", "LB002"}


@pytest.mark.kernel
def test_live_host_facts_lo_without_127_8_and_route_localnet():
    """LB006 and LB005 from the host facts the live reader sees, in a namespace set up badly on purpose."""
    from lbfw.sandbox.netns import Namespace

    with Namespace() as space:
        space.run(["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"])
        space.run(["ip", "addr", "add", "127.0.0.1/32", "dev", "lo"])
        space.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "lbfwpeer1"])
        space.run(["sysctl", "-q", "-w", "net.ipv4.conf.eth0.route_localnet=1"])
        space.load_iptables(
            (EX / "lo-accept.rules").read_text().replace(":INPUT DROP", ":INPUT ACCEPT"), family="ip", backend="legacy"
        )
        # the kernel agrees that 127.0.0.2 is unreachable before any rule
        probe = space.run(["ip", "route", "get", "127.0.0.2"], check=False)
        assert probe.returncode != 0 and "unreachable" in probe.stderr, (probe.stdout, probe.stderr)
        doc = json.loads(lbfw_in(space, "audit", "--format", "json").stdout)
    got = {f["check"]: f for f in doc["findings"]}
    assert set(got) == {"LB005", "LB006"}, doc["findings"]
    assert got["LB006"]["source"] == "live:host" and "127.0.0.1/32" in got["LB006"]["message"]
    assert "eth0" in got["LB005"]["message"]


@pytest.mark.kernel
@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_live_docker_and_kube_rules_stay_quiet(backend):
    """Docker's published-on-127.0.0.1 rules and kube-proxy's KUBE-FIREWALL, loaded for real with
    either iptables backend: the live audit reports nothing."""
    from lbfw.sandbox.netns import Namespace

    with Namespace() as space:
        space.load_iptables((EX / "docker-published-localhost.rules").read_text(), family="ip", backend=backend)
        # --noflush: a second restore would otherwise flush the tables the first one filled
        space.run([f"iptables-{backend}-restore", "--noflush"], input=(EX / "kube-proxy-firewall.rules").read_text())
        saved = space.run([f"iptables-{backend}-save"]).stdout
        assert "DROP REMOTE LOOPBACK" in saved and "KUBE-FIREWALL" in saved and "DNAT" in saved
        proc = lbfw_in(space, "audit", "--format", "json", "--fail-on", "note")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["findings"] == [] and doc["flows"]
    assert {s["source"] for s in doc["sources"]} >= {f"live:{'iptables-nft' if backend == 'nft' else 'legacy'}"}

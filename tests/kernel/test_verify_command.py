"""`lbfw verify`: the engine agrees with the kernel on every sample and corpus ruleset the
kernel loads; the command's output, exit codes and clean-up under Ctrl-C."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from lbfw.pipeline import verify_rows

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
LBFW = [sys.executable, "-m", "lbfw"]

# Corpus files iptables-restore itself rejects (README.md quirks): not loadable, so not verifiable.
REJECTED = {
    "configs_ugent__iptables-save": 71,  # iptables 1.3.5 dotted netmasks
    "config_veroneau.net__iptables-save": 269,  # trailing spaces: `COMMIT ` is a bad argument
    "configs_serverfault__759927.txt": 20,  # -m set: the ipset does not exist
}
CHAIR = "configs_chair_for_Network_Architectures_and_Services__iptables-save-2016-06-27_16-29-01"


def _disagreements(path: str):
    rows, results, _, _ = verify_rows([path], timeout=0.3)
    assert rows, path
    return [r for r in rows if r["agree"] is False], sum(r["agree"] is True for r in rows), len(rows)


def _verify_all(paths):
    # Processes, not threads: reading and predicting hold the GIL; and more workers than cores,
    # since most of each run is spent waiting for blocked flows to time out.
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("forkserver")) as pool:
        return dict(zip(paths, pool.map(_disagreements, paths)))


def test_every_example_agrees_with_the_kernel(examples_dir):
    paths = sorted(str(p) for p in examples_dir.iterdir() if p.suffix in (".rules", ".v4", ".v6", ".nft"))
    assert len(paths) >= 20
    outcome = _verify_all(paths)
    for path, (wrong, _agree, _total) in outcome.items():
        assert wrong == [], path
    # Most flows are definite verdicts that were compared, not skipped as unknown.
    assert sum(a for _, a, _ in outcome.values()) > 0.9 * sum(t for _, _, t in outcome.values())


def test_every_loadable_corpus_ruleset_agrees_with_the_kernel(corpus_dir, tmp_path):
    paths = []
    for p in sorted(corpus_dir.iterdir()):
        if p.name == "README.md" or p.name in REJECTED:
            continue
        if p.name == CHAIR:
            fixed = tmp_path / CHAIR
            fixed.write_text(p.read_text().replace("XX:XX:XX:XX:XX:XX", "02:00:00:00:00:01"))
            p = fixed
        paths.append(str(p))
    assert len(paths) == 12
    outcome = _verify_all(paths)
    for path, (wrong, agree, _total) in outcome.items():
        assert wrong == [], path
        assert agree > 0, path


@pytest.mark.parametrize("name,line", sorted(REJECTED.items()))
def test_corpus_rulesets_the_kernel_rejects_are_input_errors_naming_the_line(corpus_dir, name, line):
    from lbfw.errors import InputError

    with pytest.raises(InputError) as err:
        verify_rows([str(corpus_dir / name)], timeout=0.3)
    assert (err.value.path, err.value.line) == (str(corpus_dir / name), line)
    assert err.value.message.startswith("the kernel rejected it")


def test_a_rejected_ruleset_exits_2_with_path_and_line(corpus_dir):
    path = corpus_dir / "configs_ugent__iptables-save"
    proc = subprocess.run(LBFW + ["verify", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:71: the kernel rejected it (iptables-legacy-restore): Bad argument")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_json_output_agrees_and_has_the_documented_shape(examples_dir):
    proc = subprocess.run(
        LBFW + ["verify", str(examples_dir / "input-narrow-accept-established.rules"), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["agree"] is True and doc["bug_report"] is None
    for row in doc["flows"]:
        assert {"proto", "client", "server", "port", "predicted", "observed", "agree"} <= set(row)
        assert row["agree"] is True
    seen = {(r["client"], r["server"], r["proto"]): r["observed"] for r in doc["flows"]}
    # DOMAIN.md: conntrack lets the reply from .53 in, but a client bound to .2 still fails.
    assert seen[(None, "127.0.0.53", "tcp")] == "delivered"
    assert seen[("127.0.0.2", "127.0.0.1", "udp")] == "blocked"


def test_standard_input_and_a_plan(examples_dir, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[[flow]]\nproto = "udp"\nserver = "127.0.0.53"\nport = 53\n\n'
        '[[flow]]\nproto = "tcp"\nclient = "127.0.0.2"\nserver = "127.0.0.1"\nport = 8080\n'
    )
    text = (examples_dir / "nft-iif-lo.nft").read_text()
    proc = subprocess.run(
        LBFW + ["verify", "-", "--plan", str(plan)], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("udp default -> 127.0.0.53:53" in ln and ln.split()[-1] == "yes" for ln in lines)
    assert any("tcp 127.0.0.2 -> 127.0.0.1:8080" in ln and ln.split()[-1] == "yes" for ln in lines)
    assert "2 flows, observed in a private network namespace: 2 agree, 0 disagree" in proc.stdout


def _children(pid: int) -> list:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _net_namespaces() -> set:
    out = subprocess.run(["lsns", "-t", "net", "-n", "-o", "NS"], capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines()}


def _dead(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) in ("Z", "X")
    except OSError:
        return True


@pytest.mark.parametrize("to_group", [False, True], ids=["kill-pid", "ctrl-c-to-process-group"])
def test_sigint_during_verify_leaves_no_namespace_process_or_socket(tmp_path, examples_dir, to_group):
    # 300 flows the narrow rules block: about three probe batches of a second each.
    plan = tmp_path / "plan.toml"
    plan.write_text(
        "".join(
            f'[[flow]]\nproto = "tcp"\nserver = "127.0.{i // 250}.{i % 250 + 2}"\nport = 80\n\n' for i in range(300)
        )
    )
    proc = subprocess.Popen(
        LBFW + ["verify", str(examples_dir / "input-narrow-accept.rules"), "--plan", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=to_group,
    )
    try:
        holder = probe = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (holder is None or probe is None):
            for child in _children(proc.pid):
                try:
                    comm = Path(f"/proc/{child}/comm").read_text().strip()
                except OSError:
                    continue  # a short-lived helper (ip, a restore tool) already gone
                if comm == "unshare":
                    holder = child
                elif comm.startswith("python") or comm == "nsenter":
                    probe = child
            time.sleep(0.02)
        assert holder is not None and probe is not None, f"the probe never started: {proc.poll()}"
        inode = os.readlink(f"/proc/{holder}/ns/net")
        inode = inode.split("[")[1].rstrip("]")
        time.sleep(0.3)  # well inside the probe's first batch
        if to_group:  # what a terminal's Ctrl-C does: lbfw and the probe get it at once
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (_dead(holder) and _dead(probe) and inode not in _net_namespaces()):
        time.sleep(0.05)
    assert _dead(holder) and _dead(probe)
    assert inode not in _net_namespaces()


@pytest.mark.parametrize(
    "iptables,nft",
    [
        ("input-narrow-accept-established.rules", "nft-saddr-narrow.nft"),
        # a native `table ip filter` beside legacy rules: iptables-nft-save calls it incompatible and
        # shows it empty; `lbfw verify` live caught the reader losing its drop policy once
        ("input-narrow-accept-established.rules", "nft-vmap.nft"),
    ],
)
def test_live_verify_inside_a_namespace_agrees_and_changes_nothing(examples_dir, iptables, nft):
    """`lbfw verify` with no SOURCE, run as root inside a namespace of ours: the live reader sees
    that namespace's tables (legacy and nftables at once), the probe runs there, and sockets and
    rules are exactly as before."""
    from lbfw.sandbox.netns import Namespace

    with Namespace() as ns:
        ns.load_iptables((examples_dir / iptables).read_text())
        ns.load_nft((examples_dir / nft).read_text())
        before = ns.dump(), sorted(ns.run(["ss", "-tuanH"]).stdout.splitlines())
        proc = ns.run(LBFW + ["verify", "--format", "json"], check=False, timeout=120)
        after = ns.dump(), sorted(ns.run(["ss", "-tuanH"]).stdout.splitlines())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    rows = json.loads(proc.stdout)["flows"]
    assert all(r["agree"] is not False for r in rows)
    assert sum(r["agree"] is True for r in rows) >= 0.8 * len(rows)
    assert any(r["observed"] == "blocked" for r in rows)  # the rules did bite, live
    assert before == after


def test_sigint_during_live_verify_leaves_no_socket(tmp_path, examples_dir):
    from lbfw.sandbox.netns import Namespace

    plan = tmp_path / "plan.toml"
    plan.write_text(
        "".join(
            f'[[flow]]\nproto = "{"tcp" if i % 2 else "udp"}"\nserver = "127.0.1.{i % 250 + 2}"\nport = {2000 + i}\n\n'
            for i in range(300)
        )
    )
    with Namespace() as ns:
        ns.load_iptables((examples_dir / "input-narrow-accept.rules").read_text())
        before = ns.dump()
        proc = subprocess.Popen(
            ns.enter_argv(LBFW + ["verify", "--plan", str(plan)]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "LISTEN" not in ns.run(["ss", "-tanH"]).stdout:
                time.sleep(0.02)
            assert proc.poll() is None, "finished before it could be interrupted"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err
        # Request sockets whose SYN-ACK was dropped go at the kernel's 1 s retransmission timer.
        deadline = time.monotonic() + 4
        while (left := ns.run(["ss", "-tuanH"]).stdout.strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == ""
        assert ns.dump() == before


RESOLVER = """
import socket, sys, time
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.11", 46635))
tcp = socket.socket(); tcp.bind(("127.0.0.11", 40561)); tcp.listen(4)
udp.settimeout(0.05); tcp.settimeout(0.05)
print("ready", flush=True)
seen = 0
import select
while not select.select([sys.stdin], [], [], 0)[0]:  # until the test closes our stdin
    for sock in (udp, tcp):
        try:
            got = sock.recvfrom(512) if sock is udp else sock.accept()
            seen += 1
        except socket.timeout:
            pass
print(seen, flush=True)
"""


DIRECT = """
import json, sys
from lbfw.results import Flow
from lbfw.sandbox.verify import verify_live
flows = [Flow("udp", "127.0.0.11", 53), Flow("tcp", "127.0.0.11", 53), Flow("udp", "127.0.0.1", 5353)]
print(json.dumps({"flows": [{"observed": o} for o in verify_live(flows, timeout=0.4)]}))
"""


@pytest.mark.parametrize("how", ["lbfw verify", "verify_live"])
def test_live_verify_never_sends_to_the_service_nat_leads_to(examples_dir, tmp_path, how):
    """Docker's resolver behind NAT (127.0.0.11:53 -> :46635/:40561) in a namespace of ours:
    live `lbfw verify` (and `verify_live` called alone, as `audit --verify` does) reports those
    flows not observed, and the resolver receives nothing."""
    from lbfw.sandbox.netns import Namespace

    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[[flow]]\nproto = "udp"\nserver = "127.0.0.11"\nport = 53\n\n'
        '[[flow]]\nproto = "tcp"\nserver = "127.0.0.11"\nport = 53\n\n'
        '[[flow]]\nproto = "udp"\nserver = "127.0.0.1"\nport = 5353\n'
    )
    with Namespace() as ns:
        ns.load_iptables((examples_dir / "docker-embedded-dns.rules").read_text())
        resolver = subprocess.Popen(
            ns.enter_argv([sys.executable, "-c", RESOLVER]), stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
        )
        try:
            assert resolver.stdout.readline().strip() == "ready"
            argv = (
                LBFW + ["verify", "--plan", str(plan), "--format", "json"]
                if how == "lbfw verify"
                else [sys.executable, "-c", DIRECT]
            )
            proc = ns.run(argv, check=False, timeout=60)
            resolver.stdin.close()
            resolver.wait(15)
            seen = int(resolver.stdout.readline())
        finally:
            if resolver.poll() is None:
                resolver.kill()
                resolver.wait()
            resolver.stdout.close()
    assert proc.returncode == 0, proc.stderr
    observed = [r["observed"] for r in json.loads(proc.stdout)["flows"]]
    assert (
        observed[:2] == ["not observed: NAT sends it to another address or port, where a real service may answer"] * 2
    )
    assert observed[2] == "delivered"
    assert seen == 0


def test_veroneau_agrees_once_its_trailing_spaces_are_gone(corpus_dir):
    # iptables-restore refuses `COMMIT ` (a trailing space); lbfw reads the file as written. The
    # same rules without the spaces load, and the prediction from the original matches them.
    from lbfw.analyze.engine import Engine
    from lbfw.analyze.flows import default_flows
    from lbfw.pipeline import compare
    from lbfw.read import read_sources
    from lbfw.sandbox.verify import RulesetText, observe_files_detailed

    path = corpus_dir / "config_veroneau.net__iptables-save"
    ruleset = read_sources([str(path)])
    flows = default_flows(ruleset)
    engine = Engine(ruleset)
    results = [engine.evaluate(f) for f in flows]
    stripped = "\n".join(line.rstrip() for line in path.read_text().splitlines()) + "\n"
    rows = compare(results, observe_files_detailed([RulesetText(path.name, stripped)], flows, timeout=0.3))
    assert [r for r in rows if r["agree"] is False] == []
    assert sum(r["agree"] is True for r in rows) == len(rows)

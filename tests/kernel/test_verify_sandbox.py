"""lbfw.sandbox.verify: rulesets loaded with the real tools, flows observed with real traffic,
and the live probe proven harmless inside a namespace of our own."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lbfw.errors import InputError
from lbfw.results import Flow
from lbfw.sandbox.netns import Namespace
from lbfw.sandbox.verify import NOT_LOOPBACK, RulesetText, load_sources, observe_files

pytestmark = pytest.mark.kernel

T = 0.4
D, B = "delivered", "blocked"
ROOT = Path(__file__).resolve().parents[2]

NARROW = (
    "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    "-A INPUT -s 127.0.0.1/32 -j ACCEPT\nCOMMIT\n"
)
FLOWS = [Flow("tcp", "127.0.0.1", 80), Flow("tcp", "127.0.0.53", 53), Flow("udp", "127.0.0.1", 53, "127.0.0.2")]


def test_files_load_by_path_and_by_text(tmp_path, examples_dir):
    path = tmp_path / "rules.v4"
    path.write_text(NARROW)
    assert observe_files([str(path)], FLOWS, timeout=T) == [D, B, B]
    assert observe_files([RulesetText("-", NARROW)], FLOWS, timeout=T) == [D, B, B]
    assert observe_files([RulesetText("-", NARROW, backend="nft")], FLOWS, timeout=T) == [D, B, B]
    assert observe_files([examples_dir / "nft-iif-lo.nft"], FLOWS, timeout=T) == [D, D, D]


def test_a_drop_in_any_table_wins_over_an_accept_in_another():
    # DOMAIN.md: an accept ends only its base chain; iptables' DROP policy still drops.
    nft = (
        "table inet filter {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
        "  iif lo accept\n }\n}\n"
    )
    sources = [RulesetText("fw.nft", nft, format="nft"), RulesetText("rules.v4", NARROW)]
    assert observe_files(sources, FLOWS, timeout=T) == [D, B, B]


def test_a_file_the_kernel_rejects_names_itself(tmp_path):
    path = tmp_path / "bad.rules"
    path.write_text("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m nosuchmatch -j ACCEPT\nCOMMIT\n")
    with pytest.raises(InputError) as err:
        observe_files([str(path)], FLOWS)
    assert err.value.path == str(path) and err.value.line == 3
    assert "kernel rejected" in err.value.message


def test_a_file_that_does_not_exist_fails_before_any_namespace(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        observe_files([str(tmp_path / "missing.rules")], FLOWS)


def test_interfaces_the_nft_file_names_are_made_so_it_loads():
    text = textwrap.dedent("""\
        define WAN = wan0
        define INSIDE = { "lan0", "lan1" }
        table inet f {
          chain input {
            type filter hook input priority 0; policy drop;
            iif lo accept
            iif $WAN drop
            iif $INSIDE ip saddr 127.0.0.0/8 drop
            iif . ip saddr { "eth9" . 10.0.0.1 } accept
            meta iif "eth0" accept
            oif vmap { "tun0" : accept }
          }
        }
        """)
    with Namespace() as ns:
        load_sources(ns, [RulesetText("fw.nft", text)])
        links = ns.run(["ip", "-o", "link"]).stdout
        for name in ("wan0", "lan0", "lan1", "eth9", "eth0", "tun0"):
            assert f" {name}@" in links, name


def test_interfaces_named_in_nft_json_are_made_so_it_loads():
    doc = {
        "nftables": [
            {"table": {"family": "inet", "name": "f"}},
            {
                "chain": {
                    "family": "inet",
                    "table": "f",
                    "name": "c",
                    "type": "filter",
                    "hook": "input",
                    "prio": 0,
                    "policy": "drop",
                }
            },
            {
                "rule": {
                    "family": "inet",
                    "table": "f",
                    "chain": "c",
                    "expr": [
                        {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}},
                        {"accept": None},
                    ],
                }
            },
            {
                "rule": {
                    "family": "inet",
                    "table": "f",
                    "chain": "c",
                    "expr": [
                        {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "eth7"}},
                        {"drop": None},
                    ],
                }
            },
        ]
    }
    assert observe_files([RulesetText("rs.json", json.dumps(doc))], FLOWS, timeout=T) == [D, D, D]


def test_the_chair_dump_loads_with_a_dummy_mac(corpus_dir):
    # The collectors censored 1,931 MACs as XX:XX:...; the kernel takes any real-looking one.
    path = corpus_dir / "configs_chair_for_Network_Architectures_and_Services__iptables-save-2016-06-27_16-29-01"
    text = path.read_text().replace("XX:XX:XX:XX:XX:XX", "02:00:00:00:00:01")
    with pytest.raises(InputError) as err:
        observe_files([str(path)], FLOWS, timeout=T)
    assert err.value.line == 1826
    assert observe_files([RulesetText(path.name, text)], FLOWS, timeout=T) == [D, D, D]


# --------------------------------------------------------------------------- live mode, in our own namespace

SERVICE = textwrap.dedent("""\
    import socket, sys, time
    tcp = socket.socket(); tcp.bind(("127.0.0.1", 8080)); tcp.listen(8)
    any6 = socket.socket(socket.AF_INET6); any6.bind(("::", 9090)); any6.listen(8)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); udp.bind(("0.0.0.0", 5353))
    print("ready", flush=True)
    conn, _ = tcp.accept(); conn.sendall(b"still mine"); conn.close()
    time.sleep(30)
    """)

LIVE = textwrap.dedent("""\
    import json, sys
    from lbfw.results import Flow
    from lbfw.sandbox.verify import verify_live_detailed
    flows = [Flow(**f) for f in json.load(sys.stdin)]
    json.dump(verify_live_detailed(flows, timeout=0.4), sys.stdout)
    """)


def _state(ns: Namespace) -> tuple:
    sockets = sorted(ns.run(["ss", "-tuanH"]).stdout.splitlines())
    return sockets, ns.dump()


def test_live_probe_touches_no_service_no_socket_and_no_rule():
    import subprocess

    flows = [
        Flow("tcp", "127.0.0.1", 8080),  # a service's port: never touched
        Flow("tcp", "127.0.0.53", 9090),  # a wildcard [::]:9090 listener holds it too
        Flow("udp", "127.0.0.53", 5353),  # 0.0.0.0:5353 with SO_REUSEADDR: still its own
        Flow("tcp", "127.0.0.1", 8081),
        Flow("tcp", "127.0.0.53", 8081),  # SYN-ACK dropped: a half-open socket until 1 s
        Flow("udp", "127.0.0.1", 8082, "127.0.0.2"),
        Flow("tcp", "10.9.9.9", 80),
    ]  # not loopback: no listener there
    with Namespace() as ns:
        ns.load_iptables(NARROW.replace("-A INPUT -s", "-A INPUT -p tcp --dport 8080 -j ACCEPT\n-A INPUT -s"))
        service = subprocess.Popen(ns.enter_argv([sys.executable, "-c", SERVICE]), stdout=subprocess.PIPE, text=True)
        try:
            assert service.stdout.readline().strip() == "ready"
            before = _state(ns)
            start = time.monotonic()
            proc = ns.run([sys.executable, "-c", LIVE], input=json.dumps([f.to_json() for f in flows]))
            elapsed = time.monotonic() - start
            after = _state(ns)
            got = [r["observed"] for r in json.loads(proc.stdout)]
            # The service still has its port and answers on it.
            reply = ns.run(
                [
                    sys.executable,
                    "-c",
                    "import socket; s = socket.create_connection(('127.0.0.1', 8080), 2); print(s.recv(64).decode())",
                ]
            ).stdout.strip()
        finally:
            service.kill()
            service.wait()
            service.stdout.close()
    assert got == [
        "not observed: port in use",
        "not observed: port in use",
        "not observed: port in use",
        D,
        B,
        B,
        NOT_LOOPBACK,
    ]
    assert before == after  # same sockets (the service's listeners only), same rules, byte for byte
    assert elapsed < 6
    assert reply == "still mine"

"""The pure parts of verify and the sandbox: comparing, rendering, reading tool messages."""

from __future__ import annotations

import json
import sys

import pytest

from lbfw.model import Action, Origin, Rule
from lbfw.pipeline import agreement, compare
from lbfw.render.verify import bug_report, render_json, render_text
from lbfw.results import Flow, FlowResult, Step
from lbfw.sandbox import probe
from lbfw.sandbox.netns import _comparable_save, _rejected, missing_interfaces, valid_ifname
from lbfw.sandbox.verify import _hex_to_addr, _is_loopback, interfaces_named


def _result(flow, verdict, steps=()):
    return FlowResult(flow=flow, verdict=verdict, steps=list(steps))


@pytest.mark.parametrize(
    "predicted,observed,agree",
    [
        ("delivered", "delivered", True),
        ("blocked", "blocked", True),
        ("delivered", "blocked", False),
        ("blocked", "delivered", False),
        ("unknown", "blocked", None),
        ("delivered", "not observed: port in use", None),
    ],
)
def test_agreement_compares_only_definite_verdicts(predicted, observed, agree):
    assert agreement(predicted, observed) is agree


def test_a_disagreement_is_reported_as_a_bug_with_the_engine_path():
    rule = Rule(
        matches=(),
        action=Action("accept"),
        text="-A INPUT -s 127.0.0.1/32 -j ACCEPT",
        origin=Origin("rules.v4", line=5),
    )
    steps = [Step("request", "input", "filter", "ip", "INPUT", "accept", rule=rule, origin=rule.origin)]
    flows = [Flow("tcp", "127.0.0.53", 53), Flow("udp", "127.0.0.1", 53, "127.0.0.2"), Flow("tcp", "::1", 80)]
    results = [_result(flows[0], "delivered", steps), _result(flows[1], "blocked"), _result(flows[2], "unknown")]
    rows = compare(results, ["blocked", {"observed": "blocked", "reason": "reply: timeout"}, "delivered"])
    assert [r["agree"] for r in rows] == [False, True, None]
    assert rows[1]["reason"] == "reply: timeout"
    from lbfw.model import Chain, Ruleset, SourceInfo, Table

    table = Table("ip", "filter", "file", "iptables", "rules.v4", chains={"INPUT": Chain("INPUT", [rule], "input")})
    ruleset = Ruleset(tables=[table], sources=[SourceInfo("rules.v4", "iptables-save", warnings=("odd line",))])
    report = bug_report(rows, results, {"nft": "nftables v1.0.6"}, ruleset)
    assert report is not None and "bug in lbfw" in report["message"]
    assert report["kernel"] and report["lbfw"]
    [item] = report["flows"]
    assert item["flow"] == "tcp default -> 127.0.0.53:53"
    assert any("rules.v4:5" in line and "-s 127.0.0.1/32" in line for line in item["path"])

    doc = json.loads(render_json(rows, report))
    assert doc["agree"] is False and doc["bug_report"]["tools"] == {"nft": "nftables v1.0.6"}
    assert [r["agree"] for r in doc["flows"]] == [False, True, None]

    text = render_text(rows, report, "in a private network namespace")
    assert "\x1b[" not in text  # no colour unless asked
    assert "3 flows, observed in a private network namespace: 1 agree, 1 disagree, 1 predicted unknown" in text
    assert "bug in lbfw" in text and "nftables v1.0.6" in text and "rules.v4:5" in text
    assert "NO" in text.split("\n")[1]
    assert "ip filter (file, rules.v4): 1 chains, 1 rules" in text and "reader warning: odd line" in text


def test_no_report_when_all_agree():
    flows = [Flow("tcp", "127.0.0.1", 22)]
    rows = compare([_result(flows[0], "delivered")], ["delivered"])
    assert bug_report(rows, [_result(flows[0], "delivered")], {}) is None
    assert json.loads(render_json(rows, None)) == {
        "flows": [
            {
                "proto": "tcp",
                "client": None,
                "server": "127.0.0.1",
                "port": 22,
                "predicted": "delivered",
                "observed": "delivered",
                "agree": True,
                "reason": "",
            }
        ],
        "agree": True,
        "bug_report": None,
    }


def test_nft_names_the_interfaces_it_cannot_find():
    stderr = (
        "/dev/stdin:5:20-25: Error: Interface does not exist\n"
        '  iif . ip saddr { "eth9" . 1.2.3.4 } accept\n'
        "                   ^^^^^^\n"
        "/dev/stdin:1:12-15: Error: Interface does not exist\n"
        "define W = wan0\n"
        "           ^^^^\n"
    )
    assert missing_interfaces(stderr) == ["eth9", "wan0"]
    assert missing_interfaces("Error: syntax error\n") == []


def test_interfaces_named_by_nft_text_need_iif_or_oif():
    text = (
        'define WAN = "ppp0"\ntable inet f {\n chain c {\n  iif lo accept\n  iif "eth0" drop\n'
        '  iifname "wild*" drop\n  oif { "a0", b1 } accept\n  iif $WAN drop\n  meta oif tun0 accept\n'
        "  iiftype ether accept\n }\n}\n"
    )
    assert interfaces_named(text, "nft") == ["eth0", "tun0", "a0", "b1", "ppp0"]
    assert interfaces_named("-A INPUT -i eth0 -j ACCEPT\n", "iptables-save") == []
    doc = {
        "nftables": [
            {"rule": {"expr": [{"match": {"left": {"meta": {"key": "oif"}}, "right": {"set": ["x0", "y0"]}}}]}}
        ]
    }
    assert sorted(interfaces_named(json.dumps(doc), "nft-json")) == ["x0", "y0"]


@pytest.mark.parametrize(
    "name,ok",
    [
        ("eth0", True),
        ("a" * 15, True),
        ("a" * 16, False),
        ("eth+", False),
        ("br*", False),
        ("a/b", False),
        ("a:1", False),
        ("..", False),
        ("", False),
    ],
)
def test_valid_interface_names(name, ok):
    assert valid_ifname(name) is ok


def test_restore_errors_become_input_errors_with_the_line():
    err = _rejected(
        "iptables-legacy-restore",
        "iptables-restore v1.8.9 (legacy): Couldn't load match `nosuch'\nError occurred at line: 3\n"
        "Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
        "rules.v4",
    )
    assert (err.path, err.line) == ("rules.v4", 3)
    assert "Try `" not in err.message and "nosuch" in err.message
    err = _rejected("nft", "/dev/stdin:4:22-26: Error: syntax error, unexpected newline\n  x\n  ^\n", "fw.nft")
    assert (err.path, err.line) == ("fw.nft", 4)
    assert err.message.endswith("syntax error, unexpected newline")


def test_dumps_are_made_comparable():
    text = "# Generated by iptables-save v1.8.9 on Sun\n*filter\n:INPUT DROP [12:3400]\n-A INPUT -j ACCEPT\nCOMMIT\n"
    assert _comparable_save(text) == "*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
    assert _comparable_save("") == ""


def test_proc_net_tcp_addresses_are_decoded():
    if sys.byteorder != "little":
        pytest.skip("the fixture below is little-endian /proc/net/tcp text")
    assert _hex_to_addr("3500007F") == "127.0.0.53"
    assert _hex_to_addr("00000000000000000000000001000000") == "::1"


def test_only_loopback_servers_are_probed_live():
    assert _is_loopback("127.0.0.53") and _is_loopback("::1") and _is_loopback("[::1]")
    assert not _is_loopback("10.0.0.1") and not _is_loopback("nonsense") and not _is_loopback(None)


def test_probe_refuses_what_it_cannot_observe():
    with pytest.raises(ValueError):
        probe.observe_flows([{"proto": "icmp", "server": "127.0.0.1", "port": 1}])
    with pytest.raises(ValueError):
        probe.observe_flows([{"proto": "tcp", "server": "127.0.0.1", "port": 0}])
    with pytest.raises(ValueError):
        probe.observe_flows([{"proto": "tcp", "server": "127.0.0.1", "port": 1}] * (probe.MAX_FLOWS + 1))


def test_nat_targets_are_read_from_both_tools_listings():
    from lbfw.sandbox.traffic import nat_targets_in

    text = (
        "-A DOCKER_OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:40561\n"
        "-A OUTPUT -p tcp --dport 53 -j REDIRECT --to-ports 5353\n"
        "-A OUTPUT -d 127.0.0.12/32 -j DNAT --to-destination 127.0.0.13\n"
        "-A DOCKER -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n"
        "\t\tip daddr 127.0.0.11 udp dport 53 counter packets 0 bytes 0 dnat to 127.0.0.11:46635\n"
        "\t\tip6 daddr ::1 udp dport 53 dnat ip6 to [::1]:5300\n"
        "\t\tmeta l4proto udp redirect to :7000-7001\n"
        '-A INPUT -m comment --comment "no nat here" -j ACCEPT\n'
    )
    assert nat_targets_in(text) == [
        ("tcp", "127.0.0.11", 40561),
        ("tcp", "127.0.0.1", 5353),
        ("tcp", "::1", 5353),
        ("tcp", "127.0.0.13", None),
        ("udp", "127.0.0.13", None),  # address only: the flow's port
        ("udp", "127.0.0.11", 46635),
        ("udp", "::1", 5300),  # 172.17.0.2 is not loopback: skipped
        ("udp", "127.0.0.1", 7000),
        ("udp", "127.0.0.1", 7001),
        ("udp", "::1", 7000),
        ("udp", "::1", 7001),
    ]
    assert nat_targets_in("-A OUTPUT -p udp -j REDIRECT --to-ports 1-100000\n")[-1] == ("udp", "::1", 32)


def test_live_probes_skip_flows_nat_rewrites():
    from lbfw.model import Chain, Ruleset, Table
    from lbfw.sandbox.verify import nat_rewritten

    flows = [Flow("udp", "127.0.0.11", 53), Flow("tcp", "127.0.0.1", 22), Flow("tcp", "127.0.0.1", 23)]
    nat_step = Step("request", "output", "nat", "ip", "DOCKER_OUTPUT", "dnat")
    results = [_result(flows[0], "delivered", [nat_step]), _result(flows[1], "delivered"), _result(flows[2], "unknown")]
    no_nat = Ruleset(tables=[])
    with_nat = Ruleset(
        tables=[
            Table(
                "ip",
                "nat",
                "file",
                "iptables",
                "x",
                chains={"OUTPUT": Chain("OUTPUT", [object()], "output", -100, "nat", "accept")},
            )
        ]
    )
    assert nat_rewritten(no_nat, results) == [0]
    assert nat_rewritten(with_nat, results) == [0, 2]


def _lbfw(*args, input=None):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "lbfw", "verify", *args], capture_output=True, text=True, input=input, timeout=60
    )


def test_cli_errors_exit_2_before_any_traffic(examples_dir, tmp_path):
    rules = str(examples_dir / "cis.rules")
    proc = _lbfw(rules, "--format", "xml")
    assert proc.returncode == 2 and "--format" in proc.stderr and proc.stdout == ""
    proc = _lbfw(str(tmp_path / "missing.rules"))
    assert proc.returncode == 2 and proc.stderr.startswith(f"{tmp_path / 'missing.rules'}: no such file")
    plan = tmp_path / "plan.toml"
    plan.write_text('[[flow]]\nproto = "sctp"\nserver = "127.0.0.1"\nport = 1\n')
    proc = _lbfw(rules, "--plan", str(plan))
    assert proc.returncode == 2 and proc.stderr.startswith(f"{plan}:2: ") and proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_flows_the_probe_cannot_observe_are_refused_before_any_socket():
    from lbfw.sandbox.netns import SandboxError
    from lbfw.sandbox.traffic import observe_here

    with pytest.raises(SandboxError, match="at most"):
        observe_here([Flow("tcp", "127.0.0.1", 80)] * (probe.MAX_FLOWS + 1))
    with pytest.raises(SandboxError, match="tcp or udp"):
        observe_here([Flow("sctp", "127.0.0.1", 80)])
    with pytest.raises(SandboxError, match="ports 1-65535"):
        observe_here([Flow("udp", "127.0.0.1", 70000)])

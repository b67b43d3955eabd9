"""doctor's pure parts: the Linux parsers, fail2ban and resolver reading, capacity arithmetic, the
severity threshold, the CLI's input errors and the generated docs/doctor.md. The kernel side is in
tests/kernel/test_doctor_live.py, macOS in tests/test_doctor_macos.py."""

from __future__ import annotations

import json
import plistlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lbfw.cli import app
from lbfw.doctor import capacity, diagnose
from lbfw.doctor.facts_linux import lo_state_from, local_nets_from, parse_port_list, parse_ss
from lbfw.doctor.fail2ban import covers_loopback, effective_ignoreip
from lbfw.doctor.host import Host, Listener, User
from lbfw.doctor.items import Item, at_or_above, ok, skipped
from lbfw.doctor.resolver import loopback_nameservers
from lbfw.results import Flow

ROOT = Path(__file__).resolve().parent.parent

SS = """\
udp UNCONN 0      0      127.53.53.53:53   0.0.0.0:* users:(("unbound",pid=29522,fd=6))
udp UNCONN 0      0      127.0.0.53%lo:53  0.0.0.0:* users:(("systemd-resolve",pid=310,fd=13))
udp UNCONN 0      0                 *:54         *:*
tcp LISTEN 0      128         0.0.0.0:8003 0.0.0.0:*
tcp LISTEN 0      128               *:8001       *:* users:(("nginx",pid=91,fd=3))
tcp LISTEN 0      128            [::]:8002    [::]:*
tcp LISTEN 0      128  [::ffff:127.0.0.1]:8004    *:*
"""


def test_ss_listeners_tell_dual_stack_from_ipv6_only():
    got = parse_ss(SS)
    assert got == (
        Listener("udp", "127.53.53.53", 53, "unbound"),
        Listener("udp", "127.0.0.53", 53, "systemd-resolve"),
        Listener("udp", "*", 54),
        Listener("tcp", "0.0.0.0", 8003),
        Listener("tcp", "*", 8001, "nginx"),
        Listener("tcp", "::", 8002),
        Listener("tcp", "127.0.0.1", 8004),
    )


def test_reserved_ports_and_local_routes():
    assert parse_port_list("8000-8002,9000\n") == frozenset({8000, 8001, 8002, 9000})
    assert parse_port_list("\n") == frozenset()
    routes = [
        {"type": "local", "dst": "127.0.0.0/8", "dev": "lo"},
        {"type": "local", "dst": "127.0.0.1", "dev": "lo"},
        {"type": "local", "dst": "192.0.2.7", "dev": "eth0"},
        {"type": "broadcast", "dst": "127.255.255.255", "dev": "lo"},
    ]
    assert local_nets_from(routes) == ("127.0.0.0/8", "127.0.0.1/32")
    link = {
        "ifname": "lo",
        "flags": ["LOOPBACK", "UP", "LOWER_UP"],
        "addr_info": [{"local": "127.0.0.1", "prefixlen": 32}, {"local": "::1", "prefixlen": 128}],
    }
    up, addrs = lo_state_from([link])
    assert up is True and addrs == ("127.0.0.1/32", "::1/128")


def test_fail2ban_reads_files_in_its_own_order():
    files = {
        "/etc/fail2ban/jail.local": "[DEFAULT]\nignoreip = 127.0.0.1/8 ::1\n[sshd]\nignoreip = 127.0.0.1\n",
        "/etc/fail2ban/jail.conf": "[DEFAULT]\nignoreip =\n[sshd]\nenabled = false\n",
        "/etc/fail2ban/jail.d/defaults-debian.conf": "[DEFAULT]\nignoreip = 10.0.0.0/8\n",
        "/etc/fail2ban/filter.d/sshd.conf": "[DEFAULT]\nignoreip = ignored: not a jail file\n",
    }
    assert effective_ignoreip(files) == {"DEFAULT": "127.0.0.1/8 ::1", "sshd": "127.0.0.1"}
    assert covers_loopback("127.0.0.1/8 ::1") and covers_loopback("0.0.0.0/0")
    assert not covers_loopback("127.0.0.1 ::1") and not covers_loopback(None) and not covers_loopback("localhost")


def test_loopback_nameservers_in_resolv_conf():
    text = "# x\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\nsearch example\n nameserver 127.1.2.3\n"
    assert loopback_nameservers(text) == ["127.0.0.53", "::1", "127.1.2.3"]


def linux(**kw) -> Host:
    base = dict(
        platform="linux",
        lo_up=True,
        lo_addrs=("127.0.0.1/8", "::1/128"),
        local_nets=("127.0.0.0/8", "127.0.0.1/32", "::1/128"),
        nonlocal_bind=False,
        port_range=(32768, 60999),
        unprivileged_port_start=1024,
        time_wait_seconds=60,
        conntrack_max=262144,
        listeners=(),
        nofile=(1024, 524288),
    )
    base.update(kw)
    return Host(**base)


def by(items, check_id):
    return [i for i in items if i.id == check_id]


def test_capacity_default_range_and_reserved_ports():
    assert capacity.ports_available(linux()) == 28232
    assert capacity.ports_available(linux(reserved_ports=frozenset({1000, 40000, 40001}))) == 28230
    items = diagnose(
        linux(), [Flow("tcp", "127.10.0.1", 8001)], User("root", 0, True), ruleset=None, ruleset_unread="test"
    )
    per = by(items, "DR020")[0]
    assert per.severity == "ok" and per.data["bind_churn_per_second"] == 470  # 28232 ports / 60 s TIME_WAIT
    assert by(items, "DR022") == [] and by(items, "DR021") == []  # one unbound flow: no scale to speak of


def test_bound_client_with_two_servers_shares_one_range():
    flows = [Flow("tcp", "127.10.0.1", 8001, "127.0.0.2"), Flow("tcp", "127.20.0.1", 8002, "127.0.0.2")]
    items = diagnose(linux(), flows, User("root", 0, True))
    warn = by(items, "DR021")[0]
    assert warn.severity == "warning" and "IP_BIND_ADDRESS_NO_PORT" in warn.fix[0]
    nofile = by(items, "DR022")[0]
    assert nofile.severity == "note" and nofile.data["plan_connections"] == 28232  # one range for both servers
    many = diagnose(linux(), flows, User("root", 0, True), connections=20000)
    assert by(many, "DR021")[0].severity == "warning"  # 40,000 ports wanted, 28,232 exist
    assert by(many, "DR022")[0].severity == "warning"  # 40,000 > 1024
    too_many = diagnose(linux(), flows[:1], User("root", 0, True), connections=30000)
    assert by(too_many, "DR021")[0].severity == "error"


def test_nonlocal_bind_with_a_narrow_lo_is_named():
    host = linux(lo_addrs=("127.0.0.1/32",), local_nets=("127.0.0.1/32",), nonlocal_bind=True)
    items = diagnose(host, [Flow("udp", "127.53.53.53", 5353)], User("root", 0, True))
    assert by(items, "DR003")[0].severity == "warning"
    assert "connect() to it fails" in by(items, "DR010")[0].why


def test_unsupported_platform_says_what_it_cannot_check():
    items = diagnose(Host(platform="FreeBSD"), [Flow("tcp", "127.0.0.2", 80)])
    assert [(i.id, i.severity) for i in items] == [("DR090", "note")]
    assert "FreeBSD" in items[0].message


def test_threshold_ignores_ok_and_skipped():
    from lbfw.doctor.addresses import LO_DOWN

    passed = [ok(LO_DOWN, "lo", "up"), skipped(LO_DOWN, "lo", "not read")]
    assert not at_or_above(passed, "note")
    note = passed + [Item(LO_DOWN, "note", "lo", "x")]
    assert at_or_above(note, "note") and not at_or_above(note, "warning") and not at_or_above(note, "never")
    with pytest.raises(ValueError):
        Item(LO_DOWN, "fatal", "lo", "x")


@pytest.mark.parametrize(
    "args, says",
    [
        (["--to", "10.0.0.1:80"], "not a loopback address"),
        (["--to", "127.0.0.2:99999"], "port"),
        (["--format", "xml"], "--format must be one of"),
        (["--fail-on", "always"], "--fail-on must be one of"),
        (["--connections", "0"], "--connections must be at least 1"),
        (["--user", "no-such-user-lbfw"], "no such user"),
        (["--from", "127.0.0.2"], "--from goes with --to"),
        (["--emit-launchd"], "--emit-launchd needs"),
    ],
)
def test_bad_input_exits_2_without_a_traceback(args, says):
    result = CliRunner().invoke(app, ["doctor", *args])
    assert result.exit_code == 2 and says in result.stderr and "Traceback" not in result.stderr


def test_bad_plan_names_the_line(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[flow]]\nproto = "tcp"\nserver = "127.0.0.2"\nport = 0\n')
    result = CliRunner().invoke(app, ["doctor", "--plan", str(plan)])
    assert result.exit_code == 2 and f"{plan}:4:" in result.stderr


def test_emit_launchd_prints_a_plist_for_the_plan_aliases():
    result = CliRunner().invoke(app, ["doctor", "--to", "127.10.0.1:8001", "--emit-launchd"])
    assert result.exit_code == 0
    doc = plistlib.loads(result.stdout.encode())
    assert doc["Label"] == "org.lbfw.loopback-aliases" and doc["RunAtLoad"] is True
    assert doc["ProgramArguments"][-1] == "/sbin/ifconfig lo0 alias 127.10.0.1 netmask 255.255.255.255 up"


def test_json_lists_every_item_with_its_severity():
    from lbfw.doctor.render import render_json, render_text

    items = diagnose(linux(lo_up=False), [Flow("tcp", "127.10.0.1", 8001)], User("dev", 1000, False), None, "test")
    doc = json.loads(render_json(items, {"platform": "linux", "root": False}))
    assert len(doc["items"]) == len(items) and doc["items"][0]["severity"] == "error"
    assert sum(doc["summary"].values()) == len(items)
    text = render_text(items, {"platform": "linux", "root": False})
    assert text.splitlines()[2].startswith("error    DR001 lo-down  lo: lo is down")
    assert "fix: ip link set lo up" in text


def test_docs_doctor_md_is_generated_from_the_checks():
    from lbfw.doctor import CHECKS
    from lbfw.doctor.docs import render

    assert (ROOT / "docs" / "doctor.md").read_text() == render(), "run `make docs`"
    ids = [c.id for c in CHECKS]
    assert len(ids) == len(set(ids))
    for check in CHECKS:
        heads = [line for line in check.doc.splitlines() if line.startswith("## ")]
        assert heads == ["## What it checks", "## Why", "## Fix"], check.id

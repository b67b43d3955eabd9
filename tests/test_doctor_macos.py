"""doctor's macOS logic on hand-written transcripts (tests/data/macos/README.md): the parsers, and
the items a Mac with and without lo0 aliases gets for the same plan."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from lbfw.analyze.flows import parse_plan
from lbfw.doctor import diagnose
from lbfw.doctor.facts_macos import COMMANDS, host_from, launchd_aliases, parse_ifconfig, parse_netstat_listeners
from lbfw.doctor.host import User
from lbfw.doctor.macos import launchd_plist, plan_aliases

DATA = Path(__file__).resolve().parent / "data" / "macos"
PLAN = parse_plan(str(DATA / "plan.toml"))
NOFILE = (256, 10240)  # macOS' default soft and hard limits for a shell


def _transcript(path: Path):
    if not path.exists():
        return None
    lines = path.read_text().splitlines(keepends=True)
    assert lines[0].startswith("# HAND-WRITTEN"), path  # every transcript says what it is
    return "".join(lines[1:])


def mac(name: str, is_root: bool):
    folder = DATA / name
    outputs = {key: _transcript(folder / f"{key}.txt") for key in COMMANDS}
    files = {f"/etc/{p.name}": p.read_text() for p in (folder / "pf.conf", folder / "resolv.conf") if p.exists()}
    plists = {f"/Library/LaunchDaemons/{p.name}": p.read_bytes() for p in folder.glob("*.plist")}
    return host_from(outputs, files, is_root=is_root, plists=plists, nofile=NOFILE)


def by_id(items) -> dict:
    out: dict = {}
    for item in items:
        out.setdefault(item.id, []).append(item)
    return out


def test_ifconfig_lo0_addresses_and_netmasks():
    up, addrs = parse_ifconfig(_transcript(DATA / "aliases" / "ifconfig.txt"))
    assert up is True
    assert addrs == ("127.0.0.1/8", "127.10.0.1/32", "127.20.0.1/32", "127.53.53.53/8", "127.0.0.2/32", "::1/128")


def test_netstat_listeners_keep_dual_stack_apart():
    socks = parse_netstat_listeners(_transcript(DATA / "no-aliases" / "tcp.txt"), "tcp")
    assert {(s.addr, s.port) for s in socks} == {
        ("*", 8001),
        ("127.0.0.1", 631),
        ("::1", 631),
        ("0.0.0.0", 22),
        ("::", 22),
    }


def test_without_aliases_every_plan_address_but_127_0_0_1_is_an_error():
    host = mac("no-aliases", is_root=False)
    assert host.port_range == (49152, 65535) and host.time_wait_seconds == 30
    items = by_id(diagnose(host, PLAN, User("dev", 501, False), None, "lbfw does not analyse pf rulesets"))
    bad = {i.subject: i for i in items["DR010"] + items["DR011"] if i.severity == "error"}
    assert set(bad) == {"127.10.0.1 (server)", "127.20.0.1 (server)", "127.53.53.53 (server)", "127.0.0.2 (client)"}
    assert bad["127.10.0.1 (server)"].fix[0] == "sudo ifconfig lo0 alias 127.10.0.1 netmask 255.255.255.255 up"
    assert "errno 49" in bad["127.0.0.2 (client)"].why
    assert items["DR002"][0].severity == "note"
    held = [i for i in items["DR012"] if i.subject == "127.10.0.1:8001/tcp"]
    assert held[0].severity == "warning" and "*:8001/tcp" in held[0].message  # BSD: SO_REUSEADDR lets it in
    assert {i.severity for i in items["DR052"]} == {"skipped"}  # pfctl needs root
    assert {i.severity for i in items["DR015"]} == {"skipped"}
    assert items["DR014"][0].severity == "skipped"  # no unprivileged_port_start
    per = items["DR020"][0]
    assert per.data["per_client_address_and_server"] == 16384 and per.data["bind_churn_per_second"] == 546
    dns = items["DR032"][0]
    assert dns.severity == "note" and dns.subject == "nameserver 127.53.53.53"


def test_with_aliases_addresses_pass_and_persistence_netmask_pf_are_reported():
    host = mac("aliases", is_root=True)
    items = by_id(diagnose(host, PLAN, User("root", 0, True), None, "lbfw does not analyse pf rulesets"))
    assert all(i.severity == "ok" for i in items["DR010"] + items["DR011"])
    persist = {i.subject: i.severity for i in items["DR050"]}
    assert persist == {
        "127.0.0.2 (lo0 alias)": "warning",
        "127.10.0.1 (lo0 alias)": "ok",
        "127.20.0.1 (lo0 alias)": "warning",
        "127.53.53.53 (lo0 alias)": "warning",
    }
    assert [i.subject for i in items["DR051"]] == ["127.53.53.53 (lo0 alias)"]
    assert items["DR052"][0].severity == "note"
    assert items["DR032"][0].severity == "ok"  # /etc/resolver/test made it a system resolver
    conntrack = items["DR023"][0]
    assert conntrack.subject == "pf states limit" and conntrack.data["limit"] == 10000
    assert all(i.severity == "ok" for i in items["DR012"])


def test_emitted_launchd_plist_adds_the_plan_aliases_and_is_recognised():
    addrs = plan_aliases(PLAN)
    assert addrs == ["127.10.0.1", "127.20.0.1", "127.53.53.53", "127.0.0.2"]
    text = launchd_plist(addrs + ["::2"])
    doc = plistlib.loads(text.encode())
    assert doc["RunAtLoad"] is True and doc["ProgramArguments"][:2] == ["/bin/sh", "-c"]
    assert "/sbin/ifconfig lo0 alias 127.53.53.53 netmask 255.255.255.255 up" in doc["ProgramArguments"][2]
    assert launchd_aliases({"x.plist": text.encode()}) == (
        "127.10.0.1",
        "127.20.0.1",
        "127.53.53.53",
        "127.0.0.2",
        "::2",
    )


@pytest.mark.parametrize("name", ["no-aliases", "aliases"])
def test_every_item_has_a_documented_id_and_fix_when_it_is_a_problem(name):
    from lbfw.doctor import BY_ID

    for item in diagnose(mac(name, is_root=name == "aliases"), PLAN, User("dev", 501, False)):
        assert BY_ID[item.id] is item.check
        if item.severity in ("error", "warning"):
            assert item.fix and item.why, item


def test_missing_127_route_on_lo0_is_an_error():
    folder = DATA / "no-aliases"
    outputs = {key: _transcript(folder / f"{key}.txt") for key in COMMANDS}
    outputs["routes"] = "".join(
        line for line in outputs["routes"].splitlines(keepends=True) if not line.startswith("127 ")
    )
    items = by_id(diagnose(host_from(outputs, {}, nofile=NOFILE), PLAN, User("dev", 501, False)))
    assert items["DR002"][0].severity == "error" and "netmask 255.0.0.0" in items["DR002"][0].fix[0]

"""The audit's flow set, PLAN.toml and --to parsing."""

from __future__ import annotations

import textwrap

import pytest

from lbfw.analyze import flows as flows_mod
from lbfw.analyze.flows import default_flows, parse_plan, parse_to
from lbfw.errors import InputError
from lbfw.model import Ruleset
from lbfw.read import iptables, read_sources
from lbfw.results import Flow


def ipt(text: str) -> Ruleset:
    return Ruleset(tables=iptables.parse(textwrap.dedent(text).lstrip(), "rules.v4", family="ip"))


EMPTY = ipt("""
    *filter
    :INPUT DROP [0:0]
    :OUTPUT ACCEPT [0:0]
    -A INPUT -s 127.0.0.1/32 -j ACCEPT
    COMMIT
    """)

PORTS = ipt("""
    *filter
    :INPUT DROP [0:0]
    :OUTPUT ACCEPT [0:0]
    -A INPUT -p tcp --dport 22 -j ACCEPT
    -A INPUT -p udp --dport 53 -j ACCEPT
    -A INPUT -p tcp -m multiport --dports 8000:8100,9000 -j ACCEPT
    -A INPUT -p tcp --dport 8080 -j DROP
    -A INPUT -d 10.0.0.1/32 -p tcp --dport 6443 -j ACCEPT
    -A INPUT -i eth0 -p tcp --dport 25 -j ACCEPT
    COMMIT
    """)


# --------------------------------------------------------------------------- default_flows


def test_default_flows_cover_clients_servers_ipv6_and_both_protocols():
    flows = default_flows(EMPTY)
    pairs = {(f.client, f.server) for f in flows}
    # the kernel's default source is 127.0.0.1 (::1): an explicit 127.0.0.1 client would be the same packet
    assert pairs == {(c, s) for c in (None, "127.0.0.2") for s in ("127.0.0.1", "127.0.0.53", "127.66.66.66")} | {
        (None, "::1")
    }
    assert {f.proto for f in flows} == {"tcp", "udp"}
    assert len(flows) == 14  # 7 pairs x 2 protocols x 1 port
    assert len(set(flows)) == len(flows)


def test_default_flows_try_the_well_known_loopback_services_where_the_rules_name_their_ports():
    flows, unnamed = flows_mod.audit_flows(PORTS)
    assert unnamed == flows_mod.UNNAMED_CANDIDATES[0]
    # systemd-resolved's stub: the rules name udp 53 (not tcp 53)
    assert Flow("udp", "127.0.0.53", 53) in flows and Flow("tcp", "127.0.0.53", 53) not in flows
    # Debian's hostname address, on each port the rules single out, never on the unnamed port
    debian = {(f.proto, f.port) for f in flows if f.server == "127.0.1.1"}
    assert debian == {("tcp", 22), ("tcp", 8000), ("tcp", 8080), ("tcp", 9000), ("udp", 53)}
    tcp53 = ipt("""
        *filter
        :INPUT DROP [0:0]
        -A INPUT -p tcp -m tcp --dport 1:1024 -j ACCEPT
        COMMIT
        """)
    # a range covering 53 has its representative at 1, yet the stub's own port is tried
    assert Flow("tcp", "127.0.0.53", 53) in default_flows(tcp53)
    assert not any(f.server == "127.0.1.1" for f in default_flows(EMPTY))


def test_default_flows_use_a_port_no_rule_names():
    (port,) = {f.port for f in default_flows(EMPTY)}
    assert port == flows_mod.UNNAMED_CANDIDATES[0]
    named = ipt(f"""
        *filter
        :INPUT ACCEPT [0:0]
        -A INPUT -p tcp --dport {flows_mod.UNNAMED_CANDIDATES[0]} -j DROP
        COMMIT
        """)
    ports = {f.port for f in default_flows(named)}
    assert flows_mod.UNNAMED_CANDIDATES[1] in ports and flows_mod.UNNAMED_CANDIDATES[0] in ports


def test_default_flows_add_one_port_per_class_the_rules_single_out():
    flows = default_flows(PORTS)
    tcp = sorted({f.port for f in flows if f.proto == "tcp"})
    udp = sorted({f.port for f in flows if f.proto == "udp"})
    unnamed = flows_mod.UNNAMED_CANDIDATES[0]
    # 22; 8000:8100 minus 8080 (one class, rep 8000); 8080 (inside 8000:8100 but its own class); 9000
    assert tcp == sorted([22, 8000, 8080, 9000, unnamed])
    assert udp == sorted([53, unnamed])
    # rules that never see loopback traffic add nothing: -d 10.0.0.1 (6443), -i eth0 (25)
    assert 6443 not in tcp and 25 not in tcp


def test_default_flows_are_deterministic_and_bounded():
    lines = ["*filter", ":INPUT ACCEPT [0:0]"]
    lines += [f"-A INPUT -p tcp --dport {30000 + i} -j ACCEPT" for i in range(3000)]
    lines += ["COMMIT", ""]
    many = Ruleset(tables=iptables.parse("\n".join(lines), "many", family="ip"))
    first = default_flows(many)
    assert first == default_flows(many)
    tcp_ports = {f.port for f in first if f.proto == "tcp"}
    assert len(tcp_ports) == flows_mod.MAX_PORT_CLASSES + 1


def test_default_flows_on_the_corpus_stay_small(corpus_dir):
    rs = read_sources([str(corpus_dir / "configs_srvs_ufw__server1-iptables-save")])
    flows = default_flows(rs)
    assert 0 < len(flows) <= 32 * (flows_mod.MAX_PORT_CLASSES + 1)
    assert 22 in {f.port for f in flows}


# --------------------------------------------------------------------------- --to


@pytest.mark.parametrize(
    "spec,client,expected",
    [
        ("127.0.0.53:53/udp", None, Flow("udp", "127.0.0.53", 53)),
        ("127.0.0.1:22", None, Flow("tcp", "127.0.0.1", 22)),
        ("[::1]:80", None, Flow("tcp", "::1", 80)),
        ("[::1]:443/TCP", "::1", Flow("tcp", "::1", 443, "::1")),
        ("127.0.0.1:8080/tcp", "127.0.0.2", Flow("tcp", "127.0.0.1", 8080, "127.0.0.2")),
    ],
)
def test_parse_to_accepts(spec, client, expected):
    assert parse_to(spec, client) == expected


@pytest.mark.parametrize(
    "spec,client,words",
    [
        ("127.0.0.1", None, "ADDR:PORT"),
        ("127.0.0.1:0", None, "1 to 65535"),
        ("127.0.0.1:70000", None, "1 to 65535"),
        ("127.0.0.1:http", None, "1 to 65535"),
        ("127.0.0.1:53/icmp", None, "tcp or udp"),
        ("10.0.0.1:22", None, "not a loopback address"),
        ("localhost:22", None, "not an IP address"),
        ("::1:80", None, "ADDR:PORT"),
        ("127.0.0.1:22", "::1", "same IP version"),
        ("127.0.0.1:22", "192.168.1.2", "not a loopback address"),
    ],
)
def test_parse_to_rejects_with_a_clear_message(spec, client, words):
    with pytest.raises(InputError) as err:
        parse_to(spec, client)
    assert words in str(err.value)


# --------------------------------------------------------------------------- PLAN.toml


def write(tmp_path, text: str):
    path = tmp_path / "PLAN.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def test_parse_plan_reads_flows_in_order(tmp_path):
    path = write(
        tmp_path,
        """
        # what we deploy
        [[flow]]
        proto = "udp"
        server = "127.0.0.53"
        port = 53

        [[flow]]
        proto = "tcp"
        server = "::1"
        port = 8080
        client = "::1"

        [[flow]]
        proto = "tcp"
        server = "127.0.0.1"
        port = 5432
        client = "127.0.0.2"
        """,
    )
    assert parse_plan(path) == [
        Flow("udp", "127.0.0.53", 53),
        Flow("tcp", "::1", 8080, "::1"),
        Flow("tcp", "127.0.0.1", 5432, "127.0.0.2"),
    ]


@pytest.mark.parametrize(
    "body,line,words",
    [
        ('[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = 22\nclinet = "127.0.0.2"\n', 5, "unknown key 'clinet'"),
        (
            '[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = 22\n\n'
            '[[flow]]\nproto = "tcp"\nserver = "127.0.0.300"\n'
            "port = 22\n",
            8,
            "not an IP address",
        ),
        ('[[flow]]\nproto = "tcp"\nserver = "192.168.1.10"\nport = 22\n', 3, "lbfw only speaks about loopback"),
        ('[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = 70000\n', 4, "out of range"),
        ('[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = "22"\n', 4, "expected an integer"),
        ('[[flow]]\nproto = "sctp"\nserver = "127.0.0.1"\nport = 22\n', 2, '"tcp" or "udp"'),
        ('[[flow]]\nproto = "tcp"\nport = 22\n', 1, "lacks 'server'"),
        ('[[flow]]\nproto = "tcp"\nserver = "::1"\nport = 22\nclient = "127.0.0.1"\n', 5, "same IP version"),
        ('[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = 22\n[flows]\nx = 1\n', 5, "unknown key 'flows'"),
        ('[[flow]]\nproto = "tcp\nserver = "127.0.0.1"\n', 2, "not valid TOML"),
        ("# nothing here\n", 1, "no [[flow]] tables"),
    ],
)
def test_parse_plan_errors_name_the_line(tmp_path, body, line, words):
    path = tmp_path / "PLAN.toml"
    path.write_text(body)
    with pytest.raises(InputError) as err:
        parse_plan(str(path))
    assert err.value.path == str(path)
    assert err.value.line == line
    assert words in err.value.message


def test_parse_plan_missing_file(tmp_path):
    with pytest.raises(InputError) as err:
        parse_plan(str(tmp_path / "nope.toml"))
    assert "cannot read" in err.value.message


def test_user_for_to_and_plan(tmp_path):
    from lbfw.analyze.flows import parse_plan, parse_to

    flow = parse_to("127.0.0.1:9050", None, "106")
    assert (flow.user, flow.uid) == ("106", 106)
    root = parse_to("127.0.0.1:80", None, "root")
    assert (root.uid, root.gid) == (0, 0)
    # a name this host lacks is not an error: the audited host may have it
    ghost = parse_to("127.0.0.1:80", None, "no-such-user-here")
    assert (ghost.user, ghost.uid) == ("no-such-user-here", None)
    plan = tmp_path / "plan.toml"
    plan.write_text('[[flow]]\nproto = "tcp"\nserver = "127.0.0.1"\nport = 9050\nuser = "debian-tor"\n')
    assert parse_plan(str(plan))[0].user == "debian-tor"

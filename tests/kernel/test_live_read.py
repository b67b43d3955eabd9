"""The live reader, run INSIDE private network namespaces that hold rules loaded with every
backend at once (iptables-legacy-restore, iptables-nft-restore, nft -f): it returns exactly
what was loaded, each table from its own backend, nothing twice; and the host facts."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel

LO = 0x7F000001

# Runs inside the namespace: the setup steps, then the reader; the model comes back pickled,
# plus what the kernel's own tools print, to compare with.
_SCRIPT = r"""
import json, pickle, subprocess, sys
steps, code = json.loads(sys.stdin.read())
for argv, stdin in steps:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)
result = {}
exec(code)
sys.stdout.buffer.write(pickle.dumps(result))
"""


def in_netns(steps, code):
    """Run the setup ``steps`` ([argv, stdin]) and ``code`` (which fills ``result``) in a new
    network namespace; return ``result``."""
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", _SCRIPT],
        input=json.dumps([steps, code]).encode(),
        capture_output=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise AssertionError(proc.stderr.decode(errors="replace"))
    return pickle.loads(proc.stdout)


LEGACY_V4 = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:LOG_DROP - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -j ACCEPT
-A INPUT -s 127.0.0.0/8 ! -i lo -j LOG_DROP
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LOG_DROP -j LOG --log-prefix "drop: "
-A LOG_DROP -j DROP
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i lo -j CT --notrack
COMMIT
"""
LEGACY_V6 = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s ::1/128 -j ACCEPT
COMMIT
"""
NFT_V4 = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -s 127.0.0.1/32 -m comment --comment "hello world" -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:46635
COMMIT
"""
NFT_V6 = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s ::1/128 -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""
NATIVE = """table inet fw {
	set lo_ok {
		type ipv4_addr
		flags interval
		elements = { 127.0.0.0/8 }
	}
	chain in {
		type filter hook input priority 10; policy drop;
		iif lo accept
		ip saddr @lo_ok tcp dport { 22, 80, 443 } accept
		ip saddr vmap { 127.0.0.1 : accept, 10.0.0.1 : drop }
	}
	chain user {
		return
	}
}
table ip6 extra {
	chain out {
		type filter hook output priority 0; policy accept;
		ip6 daddr ::1 accept
	}
}
"""

ALL_BACKENDS = [
    [["ip", "link", "set", "lo", "up"], None],
    [["iptables-legacy-restore"], LEGACY_V4],
    [["ip6tables-legacy-restore"], LEGACY_V6],
    [["iptables-nft-restore"], NFT_V4],
    [["ip6tables-nft-restore"], NFT_V6],
    [["nft", "-f", "-"], NATIVE],
]

READ = r"""
from lbfw.read.live import read_live
result["ruleset"] = read_live(READER)
for tool in ("iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save"):
    result[tool] = subprocess.run([tool], capture_output=True, text=True).stdout
result["nft_tables"] = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
"""


def _rule_lines(save_text):
    return [line for line in save_text.splitlines() if line.startswith("-A ")]


@pytest.fixture(scope="module")
def live():
    return in_netns(ALL_BACKENDS, READ.replace("READER", '"auto"'))


def test_each_table_comes_from_its_own_backend_and_none_twice(live):
    rs = live["ruleset"]
    keys = [(t.backend, t.family, t.name) for t in rs.tables]
    assert sorted(keys) == sorted(
        [
            ("legacy", "ip", "filter"),
            ("legacy", "ip", "raw"),
            ("legacy", "ip6", "filter"),
            ("iptables-nft", "ip", "filter"),
            ("iptables-nft", "ip", "nat"),
            ("iptables-nft", "ip6", "filter"),
            ("nftables", "inet", "fw"),
            ("nftables", "ip6", "extra"),
        ]
    )
    # the iptables-nft tables are nft tables too: they must not come back as native ones
    assert {(f, n) for b, f, n in keys if b == "nftables"}.isdisjoint(
        {(f, n) for b, f, n in keys if b == "iptables-nft"}
    )
    assert all(t.source == f"live:{t.backend}" for t in rs.tables)
    # the kernel lists every nf_tables table once: iptables-nft's and the native ones
    listed = {tuple(line.split()[1:3]) for line in live["nft_tables"].splitlines() if line.startswith("table")}
    assert listed == {(f, n) for b, f, n in keys if b in ("iptables-nft", "nftables")}


def test_rule_counts_match_what_the_kernel_tools_dump(live):
    rs = live["ruleset"]

    def count(backend, family):
        return sum(
            len(c.rules) for t in rs.tables if (t.backend, t.family) == (backend, family) for c in t.chains.values()
        )

    assert count("legacy", "ip") == len(_rule_lines(live["iptables-legacy-save"])) == 7
    assert count("legacy", "ip6") == len(_rule_lines(live["ip6tables-legacy-save"])) == 1
    assert count("iptables-nft", "ip") == len(_rule_lines(live["iptables-nft-save"])) == 3
    assert count("iptables-nft", "ip6") == len(_rule_lines(live["ip6tables-nft-save"])) == 1
    assert count("nftables", "inet") == 4 and count("nftables", "ip6") == 1
    infos = {s.source: (s.format, s.tables, s.chains, s.rules) for s in rs.sources}
    assert infos == {
        "live:legacy": ("live", 3, 9, 8),
        "live:iptables-nft": ("live", 3, 10, 4),
        "live:nftables": ("live", 2, 3, 5),
    }
    assert rs.rule_count() == 17


def test_legacy_and_iptables_nft_rules_keep_their_matches_index_and_text(live):
    tables = {(t.backend, t.family, t.name): t for t in live["ruleset"].tables}
    legacy = tables[("legacy", "ip", "filter")].chains["INPUT"]
    assert legacy.policy == "drop" and legacy.hook == "input" and legacy.priority == 0
    narrow = legacy.rules[1]
    assert narrow.text == "-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -j ACCEPT"
    assert narrow.origin.source == "live:legacy" and narrow.origin.index == 2
    assert [(m.field, m.values) for m in narrow.matches] == [("ip.saddr", ((LO, LO),)), ("ip.daddr", ((LO, LO),))]
    assert tables[("legacy", "ip", "raw")].chains["PREROUTING"].rules[0].action.kind == "notrack"
    nft_filter = tables[("iptables-nft", "ip", "filter")].chains["INPUT"].rules
    assert nft_filter[1].comment == "hello world"
    assert nft_filter[1].origin.source == "live:iptables-nft"
    dnat = tables[("iptables-nft", "ip", "nat")].chains["OUTPUT"].rules[0].action
    assert (dnat.kind, dnat.to_addr, dnat.to_port) == ("dnat", 0x7F00000B, 46635)


def test_native_tables_come_through_libnftables_with_handles_and_printed_text(live):
    tables = {(t.backend, t.family, t.name): t for t in live["ruleset"].tables}
    fw = tables[("nftables", "inet", "fw")]
    chain = fw.chains["in"]
    assert (chain.hook, chain.priority, chain.policy, chain.type) == ("input", 10, "drop", "filter")
    texts = [r.text for r in chain.rules]
    assert texts == [
        'iif "lo" accept',
        "ip saddr @lo_ok tcp dport { 22, 80, 443 } accept",
        "ip saddr vmap { 10.0.0.1 : drop, 127.0.0.1 : accept }",
    ]
    assert all(r.origin.source == "live:nftables" and isinstance(r.origin.handle, int) for r in chain.rules)
    assert (chain.rules[1].matches[0].field, chain.rules[1].matches[0].values) == ("meta.nfproto", ("ipv4",))
    assert chain.rules[1].matches[1].set_name == "lo_ok"
    assert chain.rules[1].matches[1].values == ((0x7F000000, 0x7FFFFFFF),)
    assert chain.rules[2].action.kind == "vmap"
    assert fw.chains["user"].rules[0].action.kind == "return"


def test_host_facts_of_a_namespace_with_lo_up():
    rs = in_netns(
        [[["ip", "link", "set", "lo", "up"], None], [["sysctl", "-qw", "net.ipv4.conf.lo.route_localnet=1"], None]],
        "from lbfw.read.live import read_live\nresult['r'] = read_live()",
    )["r"]
    assert rs.host.lo_addrs == ("127.0.0.1/8", "::1/128")
    assert rs.host.local_127_route is True
    assert rs.host.route_localnet["lo"] == 1 and rs.host.route_localnet["all"] == 0
    assert rs.host.interfaces == ("lo",)
    assert rs.tables == []  # an empty namespace: nothing read, nothing invented


def test_host_facts_when_lo_has_only_127_0_0_1_32():
    rs = in_netns(
        [
            [["ip", "link", "set", "lo", "up"], None],
            [["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"], None],
            [["ip", "addr", "add", "127.0.0.1/32", "dev", "lo"], None],
            [["ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth10"], None],
        ],
        "from lbfw.read.live import read_live\nresult['r'] = read_live()",
    )["r"]
    assert "127.0.0.1/32" in rs.host.lo_addrs and "127.0.0.1/8" not in rs.host.lo_addrs
    assert rs.host.local_127_route is False
    assert set(rs.host.interfaces) == {"lo", "eth9", "eth10"}


def test_native_table_with_an_iptables_name_is_not_misread_through_iptables_nft_save():
    """iptables-nft-save 1.8.9 prints a native `ip filter` table's verdict-map rule as a bare
    `-A INPUT` (measured here): the reader notices and reads that table through nft JSON.
    It also prints built-in chains iptables-nft never created: they are not in the model."""
    steps = [
        [["iptables-nft", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.11", "-j", "ACCEPT"], None],
        [
            ["nft", "-f", "-"],
            "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority 0;\n"
            "\t\tip saddr vmap { 127.0.0.1 : accept }\n\t}\n}\n",
        ],
    ]
    live = in_netns(steps, READ.replace("READER", '"auto"'))
    assert "-A INPUT\n" in live["iptables-nft-save"]  # the tool's own misreading
    rs = live["ruleset"]
    tables = {(t.backend, t.family, t.name): t for t in rs.tables}
    assert set(tables) == {("iptables-nft", "ip", "nat"), ("nftables", "ip", "filter")}
    assert tables[("nftables", "ip", "filter")].chains["INPUT"].rules[0].action.kind == "vmap"
    # iptables-nft created the nat OUTPUT chain only
    assert list(tables[("iptables-nft", "ip", "nat")].chains) == ["OUTPUT"]
    warnings = {s.source: s.warnings for s in rs.sources}["live:iptables-nft"]
    assert any("ip filter" in w for w in warnings)


def _semantic(tables):
    """Tables as the engine sees them: everything but where each rule came from and its text."""
    out = {}
    for t in tables:
        chains = {}
        for name, c in t.chains.items():
            # matches are ANDed: iptables-save reorders them (-s before -i), the meaning stays
            # (ignore is left out: a file's `# lbfw: ignore` line above a rule never reaches the kernel)
            # (nor a match's text: `/255.255.255.255` is dumped as `/32`, same match)
            rules = [
                (sorted((dataclasses.replace(m, text="") for m in r.matches), key=repr), r.action, r.comment, r.before)
                for r in c.rules
            ]
            chains[name] = (c.hook, c.priority, c.type, c.policy, rules)
        sets = {n: (s.key, s.elements, s.flags, s.is_map, s.map_type, s.known) for n, s in t.sets.items()}
        out[(t.family, t.name)] = (chains, sets)
    return out


def test_the_live_model_equals_the_model_of_the_files_that_were_loaded(live, tmp_path):
    """Exactly what was loaded: each backend's live tables equal, match for match, the model of
    the very file loaded into it (only origins and the normalised text differ)."""
    from lbfw.read import iptables
    from lbfw.read.nft import files as nft_files

    rs = live["ruleset"]

    def backend(name):
        return _semantic([t for t in rs.tables if t.backend == name])

    files = {}
    for fam, text in (("ip", LEGACY_V4), ("ip6", LEGACY_V6)):
        files.update(_semantic(iptables.parse(text, "f", family=fam)))
    assert backend("legacy") == files
    files = {}
    for fam, text in (("ip", NFT_V4), ("ip6", NFT_V6)):
        files.update(_semantic(iptables.parse(text, "f", family=fam)))
    assert backend("iptables-nft") == files
    assert backend("nftables") == _semantic(nft_files.read(NATIVE, "-"))


EACH_EXAMPLE = r"""
from lbfw.read.live import read_live
for name, text in TEXTS:
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    subprocess.run(["nft", "-f", "-"], input=text, text=True, check=True, capture_output=True)
    result[name] = read_live()
"""


def test_every_nft_example_loaded_live_reads_back_as_its_file_model(examples_dir):
    from lbfw.read.nft import files as nft_files

    files = sorted(examples_dir.glob("*.nft"))
    texts = [(f.name, f.read_text()) for f in files]
    res = in_netns([], f"TEXTS = {texts!r}\n" + EACH_EXAMPLE)
    for f in files:
        rs = res[f.name]
        assert {t.backend for t in rs.tables} == {"nftables"}, f.name
        assert _semantic(rs.tables) == _semantic(nft_files.read(str(f), str(f))), f.name
        assert all(r.text and r.origin.handle for t in rs.tables for c in t.chains.values() for r in c.rules)


def test_a_native_table_with_non_iptables_base_chains_is_read_natively():
    """`table ip filter { chain input { type filter hook input ... } }` (lower-case chain):
    iptables-nft-save 1.8.9 says it "contains incompatible base-chains" yet prints `*filter`
    with invented INPUT/FORWARD/OUTPUT and none of its rules (measured here)."""
    text = (
        "table ip filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n"
        "\t\tip saddr 127.0.0.1 accept\n\t}\n}\n"
    )
    live = in_netns([[["nft", "-f", "-"], text]], READ.replace("READER", '"auto"'))
    assert "contains incompatible base-chains" in live["iptables-nft-save"]
    assert "*filter" in live["iptables-nft-save"]
    tables = live["ruleset"].tables
    assert [(t.backend, t.family, t.name, list(t.chains)) for t in tables] == [("nftables", "ip", "filter", ["input"])]
    rule = tables[0].chains["input"].rules[0]
    assert rule.text == "ip saddr 127.0.0.1 accept" and rule.matches[0].values == ((LO, LO),)


EACH_IPTABLES_EXAMPLE = r"""
from lbfw.read.live import read_live
for name, fam, text in TEXTS:
    for prefix in ("iptables", "ip6tables"):
        names = "/proc/net/%s_tables_names" % ("ip" if prefix == "iptables" else "ip6")
        try:
            listed = open(names).read().split()
        except OSError:
            listed = []
        for table in listed:  # empty what the previous example left in the legacy tables
            subprocess.run([prefix + "-legacy", "-t", table, "-F"], check=True)
            subprocess.run([prefix + "-legacy", "-t", table, "-X"], check=True)
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    tool = "iptables" if fam == "ip" else "ip6tables"
    for backend in ("legacy", "nft"):
        subprocess.run([tool + "-" + backend + "-restore"], input=text, text=True, check=True, capture_output=True)
    result[name] = read_live()
"""


def test_every_iptables_example_loaded_with_both_backends_reads_back_as_its_file_model(examples_dir):
    from lbfw.read import iptables

    files = sorted(
        list(examples_dir.glob("*.rules")) + list(examples_dir.glob("*.v4")) + list(examples_dir.glob("*.v6"))
    )
    texts = [(f.name, "ip6" if f.suffix == ".v6" else "ip", f.read_text()) for f in files]
    res = in_netns([], f"TEXTS = {texts!r}\n" + EACH_IPTABLES_EXAMPLE)
    for name, fam, text in texts:
        rs = res[name]
        want = _semantic(iptables.parse(text, name, family=fam))
        # legacy tables keep every built-in chain; iptables-nft-restore creates the declared ones
        legacy = _semantic([t for t in rs.tables if t.backend == "legacy" and t.family == fam])
        nft = _semantic([t for t in rs.tables if t.backend == "iptables-nft"])
        assert nft == want, name
        for key, (chains, _sets) in want.items():
            assert {n: c for n, c in legacy[key][0].items() if n in chains} == chains, name
        assert not [t for t in rs.tables if t.backend == "nftables"], name

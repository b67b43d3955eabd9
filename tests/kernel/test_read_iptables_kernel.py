"""The kernel settles what a spelling means: load hand-written files (bare, dotted, host-bit
spellings ...) and every loadable corpus dump with the real iptables-restore inside a private
network namespace, dump them back with iptables-save, and require the parser to give the same
matches and actions for the file as written and for the kernel's normalised dump."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import pytest

from lbfw.model import LazyRules, Origin
from lbfw.read.iptables import parse

pytestmark = pytest.mark.kernel

# Fixed scripts (nothing from the input goes into them): restore the file in $1, then save,
# both inside the same fresh network namespace.
_ROUNDTRIP = {
    ("ip", "legacy"): 'iptables-legacy-restore "$1" && exec iptables-legacy-save',
    ("ip6", "legacy"): 'ip6tables-legacy-restore "$1" && exec ip6tables-legacy-save',
    ("ip", "nft"): 'iptables-nft-restore "$1" && exec iptables-nft-save',
    ("ip6", "nft"): 'ip6tables-nft-restore "$1" && exec ip6tables-nft-save',
}

LO = 0x7F000001
NET8 = (0x7F000000, 0x7FFFFFFF)

HAND_V4 = r"""# written by hand, never normalised by iptables-save
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i lo -j NOTRACK
-A OUTPUT -o lo -j CT --notrack
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -d 127.0.0.11 -p udp --dport 53 -j DNAT --to-destination 127.0.0.11:46635
-A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 80
-A POSTROUTING -s 10.0.0.0/255.0.0.0 -j MASQUERADE
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -o lo -j MARK --set-mark 1
-A OUTPUT -j MARK --set-mark 0x3/0x1
-A OUTPUT -j MARK --and-mark 0xfe
-A OUTPUT -j MARK --or-mark 4
-A PREROUTING -m mark --mark 0x1/0xff -j CONNMARK --save-mark
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:lo-in - [0:0]
-A INPUT -s 127.0.0.1 -j ACCEPT
-A INPUT -s 127.0.0.1/255.255.255.255 -d 127.0.0.1/32 -j ACCEPT
-A INPUT -s 127.0.0.1/8 -j ACCEPT
-A INPUT -d 127.0.0.53/255.0.0.0 -j ACCEPT
-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP
-A INPUT -s 192.168.1.77/255.255.255.0 -p tcp --dport 22 -j ACCEPT
-A INPUT -p tcp --syn -m multiport --dports 80,443,8000:8080 -j ACCEPT
-A INPUT -p tcp --tcp-flags ALL NONE -j DROP
-A INPUT -p udp --sport 53 --dport 1024: -j ACCEPT
-A INPUT -p tcp --dport ssh -j ACCEPT
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A INPUT -m conntrack --ctstatus SEEN_REPLY --ctdir REPLY -j ACCEPT
-A INPUT -m addrtype --dst-type LOCAL ! --src-type LOCAL -j lo-in
-A INPUT -m iprange --src-range 127.0.0.1-127.0.0.9 -j ACCEPT
-A INPUT -m comment --comment "loopback \"lo\", all of it" -i lo -j ACCEPT
-A INPUT -p icmp --icmp-type 8 -j ACCEPT
-A INPUT -i eth+ -p tcp -m tcp ! --dport 22 -j REJECT --reject-with tcp-reset
-A INPUT -m mark ! --mark 7 -g lo-in
-A INPUT -m limit --limit 5/min -j LOG --log-prefix "in: "
-A INPUT -4 -i lo -j ACCEPT
-A INPUT -6 -i lo -j DROP
-A INPUT -p 17 -m udp --dport 5353 -j ACCEPT
-A INPUT -s 127.1 -j DROP
-A INPUT -s 10/8 -d 0x7f.0.0.1 -j ACCEPT
-A INPUT -s 010.0.0.1 -d 127.0.0.1/010 -j ACCEPT
-A INPUT -d 127.256 -j ACCEPT
-A INPUT -s 127.0.0.0/255.255.0.255 -j ACCEPT
-A INPUT -p tcp --dport 022 --sport 0x400: -j ACCEPT
-A INPUT -p udp -m multiport --dports 022,0x50,domain:0x40 -j ACCEPT
-A lo-in -i lo -j RETURN
-A lo-in -j DROP
-A OUTPUT -m owner --uid-owner 0 -d 127.0.0.1 -j ACCEPT
-A OUTPUT -o lo
COMMIT
"""

HAND_V6 = r"""*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s ::1 -j ACCEPT
-A INPUT -s ::1/128 -d ::1/128 -j ACCEPT
-A INPUT -s 2001:db8::1/64 -j DROP
-A INPUT ! -i lo -s ::1 -j DROP
-A INPUT -p ipv6-icmp --icmpv6-type 128 -j ACCEPT
-A INPUT -6 -i lo -j ACCEPT
-A INPUT -4 -i lo -j DROP
-A INPUT -p tcp --dport 22 -j REJECT --reject-with icmp6-port-unreachable
-A INPUT -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -d ::1 -p tcp --dport 80 -j DNAT --to-destination [::1]:8080
COMMIT
"""


def kernel_dump(text: str, family: str, backend: str) -> str:
    """Load ``text`` with the real restore tool in a throwaway network namespace and return
    what the matching save tool prints."""
    with tempfile.TemporaryDirectory(prefix="lbfw-test-") as tmp:
        path = os.path.join(tmp, "rules")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        argv = ["unshare", "-n", "sh", "-c", _ROUNDTRIP[(family, backend)], "sh", path]
        if os.geteuid() != 0:
            argv.insert(1, "-r")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def match_key(m):
    if m.opaque:
        return ("opaque", repr(m.field))
    values, negate = m.values, m.negate
    if m.field in ("ct.state", "ct.status", "fib.saddr.type", "fib.daddr.type"):
        values = tuple(sorted(values))  # sets: iptables-save prints them in its own order
    if m.field in ("th.sport", "th.dport") and negate and len(values) == 1:
        # iptables-nft saves `! --sport 0:1023` as `--sport 1024:65535`: the same ports
        ((lo, hi),) = values
        if lo == 0 and hi < 65535:
            values, negate = ((hi + 1, 65535),), False
        elif hi == 65535 and lo > 0:
            values, negate = ((0, lo - 1),), False
    return (repr(m.field), values, negate, m.mask, m.set_name)


def action_key(a):
    # NOTRACK is saved as CT --notrack, MARK --set-mark as --set-xmark: compare what they do
    target = a.target if a.kind in ("jump", "goto", "unknown") else None
    return (a.kind, target, a.to_addr, a.to_port, a.set_mark)


def semantics(tables) -> dict:
    """What the kernel would do, per table and chain, without texts and origins."""
    out = {}
    for t in tables:
        for c in t.chains.values():
            out[(t.family, t.name, c.name)] = (
                (c.hook, c.priority, c.type, c.policy),
                [(sorted(map(match_key, r.matches)), action_key(r.action), r.comment) for r in c.rules],
            )
    return out


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_hand_written_ipv4_spellings_mean_what_the_kernel_saves(backend):
    written = parse(HAND_V4, "hand.v4", family="ip")
    saved_text = kernel_dump(HAND_V4, "ip", backend)
    saved = parse(saved_text, f"live:{backend}", family="ip", backend=backend)
    assert semantics(written) == semantics(saved)
    # and the kernel did normalise: the texts differ, the meaning does not
    filt = next(t for t in saved if t.name == "filter").chains["INPUT"].rules
    assert filt[0].text == "-A INPUT -s 127.0.0.1/32 -j ACCEPT"
    assert filt[2].text == "-A INPUT -s 127.0.0.0/8 -j ACCEPT"
    assert filt[2].matches[0].values == (NET8,)
    written_input = next(t for t in written if t.name == "filter").chains["INPUT"].rules
    assert written_input[0].matches[0].values == ((LO, LO),)
    assert written_input[2].text == "-A INPUT -s 127.0.0.1/8 -j ACCEPT"
    # -6 rules are skipped by iptables-restore and by the reader alike
    assert (
        sum(len(c.rules) for t in written for c in t.chains.values())
        == sum(len(c.rules) for t in saved for c in t.chains.values())
        == 43
    )


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_hand_written_ipv6_spellings_mean_what_the_kernel_saves(backend):
    written = parse(HAND_V6, "hand.v6", family="ip6")
    saved = parse(kernel_dump(HAND_V6, "ip6", backend), f"live:{backend}", family="ip6", backend=backend)
    assert semantics(written) == semantics(saved)
    rules = next(t for t in written if t.name == "filter").chains["INPUT"].rules
    assert rules[0].matches[0].values == ((1, 1),)
    assert rules[2].matches[0].values == ((0x20010DB8 << 96, (0x20010DB8 << 96) | (2**64 - 1)),)


def test_a_repeated_table_section_replaces_the_earlier_one_as_in_the_kernel():
    text = (
        "*filter\n:INPUT DROP [0:0]\n:x - [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n"
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 127.0.0.1 -j ACCEPT\nCOMMIT\n"
    )
    for backend in ("legacy", "nft"):
        kernel = semantics(parse(kernel_dump(text, "ip", backend), "k", family="ip"))
        written = semantics(parse(text, "f", family="ip"))
        assert kernel.pop(("ip", "filter", "FORWARD")) == (("forward", 0, "filter", "accept"), [])
        assert kernel.pop(("ip", "filter", "OUTPUT")) == (("output", 0, "filter", "accept"), [])
        assert written == kernel


def loadable(text: str) -> str:
    """What iptables 1.8.9 needs to load an old dump: no trailing spaces (it rejects `COMMIT `),
    `! -s X` for the old `-s ! X`, and a MAC where the collectors censored one."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"(\s)(-[sdio]|-p|--dport|--sport|--state) ! ", r"\1! \2 ", text)
    return text.replace("XX:XX:XX:XX:XX:XX", "02:00:00:00:00:01")


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_every_loadable_corpus_dump_reads_the_same_as_the_kernels_own_dump(corpus_dir, backend):
    compared = 0
    for path in sorted(corpus_dir.iterdir()):
        if path.name == "README.md" or "nft-ruleset" in path.name:
            continue
        if "759927" in path.name:
            continue  # needs the ipset "whitelist", which an empty namespace lacks
        original = path.read_text()
        saved = kernel_dump(loadable(original), "ip", backend)
        written = semantics(parse(original, path.name, family="ip"))
        kernel = semantics(parse(saved, f"live:{backend}", family="ip", backend=backend))
        # the kernel has every built-in chain of a table; a 2006 dump may not list nat INPUT
        for key in kernel.keys() - written.keys():
            assert kernel[key] == ((key[2].lower(), 100, "nat", "accept"), []), (path.name, key)
            del kernel[key]
        assert written.keys() == kernel.keys(), path.name
        for key in written:
            assert written[key] == kernel[key], (path.name, key)
        compared += sum(len(rules) for _, rules in written.values())
    assert compared == 7565  # every rule of the 13 dumps: README total 7,588 minus 759927's 23


@pytest.mark.parametrize("family, backend", [("ip", "legacy"), ("ip6", "legacy"), ("ip", "nft"), ("ip6", "nft")])
def test_every_save_tools_dump_is_detected_with_its_family(family, backend):
    """No address in the rules: only the header the real tool writes can say IPv6."""
    from lbfw.read.detect import detect_format

    dump = kernel_dump("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n", family, backend)
    assert detect_format(dump) == ("ip6tables-save" if family == "ip6" else "iptables-save")
    tables = parse(dump, f"live:{backend}", backend=backend)
    assert [(t.family, t.name) for t in tables] == [(family, "filter")]
    assert [r.origin for r in tables[0].chains["INPUT"].rules] == [Origin(f"live:{backend}", index=1)]


def random_rules(seed: int, n: int) -> str:
    """n rules drawn from the spellings people write by hand, in random order and combination."""
    import random

    rnd = random.Random(seed)
    addrs = [
        "127.0.0.1",
        "127.0.0.1/32",
        "127.0.0.1/8",
        "127.0.0.53/255.0.0.0",
        "127.1",
        "10/8",
        "0x7f.0.0.1",
        "192.168.1.77/24",
        "192.168.1.77/255.255.255.0",
        "0.0.0.0/0",
        "10.0.0.1/255.255.0.255",
        "172.16.0.0/12",
        "127.0.0.01",
        "010.1.2.3/16",
    ]
    ifaces = ["lo", "eth0", "eth+", "br-+", "docker0", "wg0"]
    ports = ["22", "1024:", ":1023", "8000:8080", "ssh", "0x50", "022", "domain"]
    pieces = [
        # (iptables-nft refuses `! -s 0.0.0.0/0`; legacy takes it)
        lambda: (lambda a: f"{'' if a.endswith('/0') else rnd.choice(['', '! '])}-s {a}")(rnd.choice(addrs)),
        lambda: (lambda a: f"{'' if a.endswith('/0') else rnd.choice(['', '! '])}-d {a}")(rnd.choice(addrs)),
        lambda: f"{rnd.choice(['', '! '])}-i {rnd.choice(ifaces)}",
        lambda: f"-p tcp {rnd.choice(['', '-m tcp '])}{rnd.choice(['', '! '])}--dport {rnd.choice(ports)}",
        # udp reads `022` as 22 and any protocol's service names, refuses 0x50 (see _port)
        lambda: (
            f"-p udp {rnd.choice(['', '-m udp '])}{rnd.choice(['', '! '])}--sport "
            f"{rnd.choice(['22', '1024:', ':1023', '022', 'domain', 'ssh', 'domain-s:08080'])}"
        ),
        lambda: (
            f"-p tcp -m multiport {rnd.choice(['', '! '])}--dports "
            f"{','.join(rnd.sample(['22', '80', '443', '8000:8080', 'ssh', '0x50'], 3))}"
        ),
        lambda: (
            f"-m conntrack {rnd.choice(['', '! '])}--ctstate "
            f"{','.join(rnd.sample(['NEW', 'ESTABLISHED', 'RELATED', 'INVALID', 'UNTRACKED'], 2))}"
        ),
        lambda: f"-m state --state {rnd.choice(['NEW', 'ESTABLISHED,RELATED', 'INVALID'])}",
        lambda: (
            f"-m addrtype {rnd.choice(['', '! '])}--{rnd.choice(['src', 'dst'])}-type "
            f"{rnd.choice(['LOCAL', 'UNICAST', 'LOCAL,BROADCAST'])}"
        ),
        lambda: f"-m mark {rnd.choice(['', '! '])}--mark {rnd.choice(['1', '0x10/0xf0', '010'])}",
        lambda: f"-m iprange --src-range 127.0.0.{rnd.randint(1, 9)}-127.0.0.{rnd.randint(10, 99)}",
        lambda: f'-m comment --comment "{rnd.choice(["lo", "two words", "lbfw: ignore LB002"])}"',
        lambda: "-p icmp --icmp-type 8",
        lambda: "-m limit --limit 5/min",
    ]
    targets = [
        "-j ACCEPT",
        "-j DROP",
        "-j RETURN",
        "-j REJECT --reject-with icmp-port-unreachable",
        "-j u",
        "-g u",
        '-j LOG --log-prefix "x: "',
        "",
    ]
    lines = []
    for _ in range(n):
        chosen, used = [], set()
        for _ in range(rnd.randint(0, 4)):
            k = rnd.randrange(len(pieces))
            if k in used or (k in (3, 4, 5, 12) and used & {3, 4, 5, 12}):
                continue  # one protocol per rule, each kind once (as iptables insists)
            used.add(k)
            chosen.append(pieces[k]())
        target = rnd.choice(targets)
        # (-i is refused in OUTPUT, so the rules go where it is allowed)
        lines.append(" ".join(["-A", rnd.choice(["INPUT", "FORWARD", "u2"])] + chosen + ([target] if target else [])))
    return (
        "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":u - [0:0]\n:u2 - [0:0]\n" + "\n".join(lines) + "\nCOMMIT\n"
    )


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_random_hand_written_rules_mean_what_the_kernel_saves(backend):
    for seed in (1, 2, 3):
        text = random_rules(seed, 250)
        written = semantics(parse(text, "random.v4", family="ip"))
        kernel = semantics(parse(kernel_dump(text, "ip", backend), f"live:{backend}", family="ip", backend=backend))
        assert written.keys() == kernel.keys()
        for key in written:
            for k, (w, s) in enumerate(zip(written[key][1], kernel[key][1])):
                assert w == s, (seed, key, k)
            assert written[key] == kernel[key], (seed, key)


def random_rules6(seed: int, n: int) -> str:
    """The IPv6 counterpart of random_rules (ip6tables spellings)."""
    import random

    rnd = random.Random(seed)
    addrs = [
        "::1",
        "::1/128",
        "::1/0x80",
        "::1/010",
        "2001:db8::1/64",
        "2001:db8::1/ffff:ffff::",
        "2001:DB8::1",
        "::ffff:127.0.0.1",
        "fe80::1%lo",
        "fe80::/10",
        "2001:db8::1/ffff::ffff",
        "::/0",
    ]
    pieces = [
        lambda: (lambda a: f"{'' if a.endswith('/0') else rnd.choice(['', '! '])}-s {a}")(rnd.choice(addrs)),
        lambda: (lambda a: f"{'' if a.endswith('/0') else rnd.choice(['', '! '])}-d {a}")(rnd.choice(addrs)),
        lambda: f"{rnd.choice(['', '! '])}-i {rnd.choice(['lo', 'eth+', 'wg0'])}",
        lambda: f"-p tcp {rnd.choice(['', '! '])}--dport {rnd.choice(['22', '0x50', '022', 'ssh', '1024:'])}",
        lambda: f"-p ipv6-icmp --icmpv6-type {rnd.choice(['128', 'echo-request', '135/0'])}",
        lambda: f"-m conntrack --ctstate {rnd.choice(['NEW', 'ESTABLISHED,RELATED', 'INVALID,UNTRACKED'])}",
        lambda: f"-m addrtype {rnd.choice(['', '! '])}--dst-type {rnd.choice(['LOCAL', 'MULTICAST'])}",
    ]
    targets = ["-j ACCEPT", "-j DROP", "-j REJECT --reject-with icmp6-port-unreachable", "-j t", "-g t", ""]
    lines = []
    for _ in range(n):
        chosen, used = [], set()
        for _ in range(rnd.randint(0, 4)):
            k = rnd.randrange(len(pieces))
            if k in used or (k in (3, 4) and used & {3, 4}):
                continue
            used.add(k)
            chosen.append(pieces[k]())
        target = rnd.choice(targets)
        lines.append(" ".join(["-A", rnd.choice(["INPUT", "u"])] + chosen + ([target] if target else [])))
    return (
        "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:u - [0:0]\n:t - [0:0]\n"
        + "\n".join(lines)
        + "\nCOMMIT\n"
    )


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_random_hand_written_ipv6_rules_mean_what_the_kernel_saves(backend):
    for seed in (1, 2):
        text = random_rules6(seed, 200)
        written = semantics(parse(text, "random.v6", family="ip6"))
        kernel = semantics(parse(kernel_dump(text, "ip6", backend), f"live:{backend}", family="ip6", backend=backend))
        assert written.keys() == kernel.keys()
        for key in written:
            for k, (w, s) in enumerate(zip(written[key][1], kernel[key][1])):
                assert w == s, (seed, key, k)
            assert written[key] == kernel[key], (seed, key)


@pytest.mark.parametrize("family", ["ip", "ip6"])
def test_the_kernels_own_dump_of_a_kube_proxy_ruleset_is_deferred_and_reads_as_built(family):
    """What iptables-save / ip6tables-save print for a kube-proxy ruleset (not what a
    generator writes) is the shape the reader defers: nearly every rule, and the model equals
    building everything at once (tests/test_read_iptables_lazy.py holds the reader to that)."""
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent.parent  # tests/
    sys.path.insert(0, str(here / "benchmarks"))
    sys.path.insert(0, str(here))
    import generate

    from test_read_iptables_lazy import _kube6

    text = generate.kube_dump(3_000)
    if family == "ip6":
        text = _kube6(text)
    dumped = kernel_dump(text, family, "legacy")
    assert dumped.count("\n-A ") == text.count("\n-A ")
    lazy = parse(dumped, "saved", family=family)
    total = sum(c.rule_count for t in lazy for c in t.chains.values())
    deferred = sum(c.rules.unbuilt_count() for t in lazy for c in t.chains.values() if isinstance(c.rules, LazyRules))
    assert deferred > 0.95 * total, f"{deferred} of {total} deferred"
    assert parse(dumped, "saved", family=family, lazy=False) == lazy


_RPFILTER_RECENT = [
    "-m rpfilter",
    "-m rpfilter --loose",
    "-m rpfilter --invert --loose --validmark --accept-local",
    "-m rpfilter --accept-local --invert",
    "-m recent --set",
    "-m recent --set --name SSH --mask 255.255.255.255 --rsource",
    "-m recent --rcheck --seconds 60 --hitcount 4 --name SSH --rsource",
    "-m recent --update --seconds 60 --reap --rttl --name ssh --rdest",
    "-m recent --remove --name x",
    "-m recent ! --rcheck --name SSH",
    "-m recent --name SSH ! --update --seconds 10",
]
_REFUSED = [
    "-m rpfilter ! --loose",
    "-m rpfilter --invert --invert",
    "-m recent --name X",
    "-m recent",
    "-m recent --set --rcheck",
    "-m recent ! --name X --rcheck",
    "-m recent --rcheck --name A --name B",
]


def _raw(lines: list) -> str:
    return "*raw\n:PREROUTING ACCEPT [0:0]\n" + "".join(f"-A PREROUTING {x} -j DROP\n" for x in lines) + "COMMIT\n"


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_rpfilter_and_recent_fields_are_what_the_kernel_saves(backend):
    """The rpfilter / recent Matches of hand-written lines are those of the kernel's own dump
    of them (iptables-save adds defaults such as `--mask` and `--rsource`: the values agree)."""
    text = _raw(_RPFILTER_RECENT)
    ours = parse(text, "hand")[0].chains["PREROUTING"].rules
    theirs = parse(kernel_dump(text, "ip", backend), "saved")[0].chains["PREROUTING"].rules
    assert len(ours) == len(theirs) == len(_RPFILTER_RECENT)
    for mine, saved in zip(ours, theirs):
        assert [(m.field, m.values, m.negate) for m in mine.matches] == [
            (m.field, m.values, m.negate) for m in saved.matches
        ], (mine.text, saved.text)
        assert mine.matches[0].field in ("rpfilter", "recent") and not mine.matches[0].opaque


@pytest.mark.parametrize("line", _REFUSED)
def test_rpfilter_and_recent_options_the_reader_refuses_the_kernel_tools_refuse(line):
    with tempfile.TemporaryDirectory(prefix="lbfw-test-") as tmp:
        path = os.path.join(tmp, "rules")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(_raw([line]))
        argv = ["unshare", "-n", "iptables-legacy-restore", path]
        if os.geteuid() != 0:
            argv.insert(1, "-r")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, line

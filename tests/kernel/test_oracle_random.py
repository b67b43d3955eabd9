"""Differential proof on generated rulesets: random (seeded, so reproducible) iptables and nft
rulesets built from the constructs loopback rules use (addresses /32 and /8, interfaces and their
negation, protocols, ports, conntrack states, user chains with jump/goto/return, policies, raw
notrack, marks, and issue 11's ordinary matches the kernel decides from the packet alone: ttl,
length, dscp/tos/ecn, fragments, pkttype, iprange, devgroup, helper, connlimit, statistic nth,
connmark, tcp options, icmp types, nft's implicit protocol dependencies and concatenations, and
statements that only set a mark or log), loaded into a private namespace; the engine must agree
with real traffic on every flow it does not call unknown."""

from __future__ import annotations

import os
import random

import pytest

from lbfw.analyze.engine import Engine
from lbfw.model import Ruleset
from lbfw.read import iptables
from lbfw.read.nft import files as nft_files
from lbfw.results import UNKNOWN, Flow
from lbfw.sandbox.verify import RulesetText, observe_files_detailed

pytestmark = pytest.mark.kernel

TIMEOUT = 0.4
# More seeds for a deeper hunt: LBFW_RANDOM_SEEDS=200 pytest tests/kernel/test_oracle_random.py
SEEDS = int(os.environ.get("LBFW_RANDOM_SEEDS", "12"))
FIRST = int(os.environ.get("LBFW_RANDOM_FIRST", "0"))
PORTS = (5001, 5002)
FLOWS = [
    Flow(proto, server, port, client)
    for proto in ("tcp", "udp")
    for server in ("127.0.0.1", "127.0.0.53")
    for client in (None, "127.0.0.2")
    for port in PORTS
] + [Flow(proto, "::1", 5001) for proto in ("tcp", "udp")]

ADDRS = ("127.0.0.1/32", "127.0.0.53/32", "127.0.0.2/32", "127.0.0.0/8", "10.0.0.0/8")
STATES = ("NEW", "ESTABLISHED", "RELATED,ESTABLISHED", "UNTRACKED", "INVALID", "NEW,ESTABLISHED")


ADDRS6 = ("::1/128", "::/0", "fe80::/10", "::1/127")


def _ipt_matches(rng: random.Random, chain: str, addrs=ADDRS) -> str:
    parts = []
    if rng.random() < 0.35:
        parts.append(f"{rng.choice(['', '! '])}-s {rng.choice(addrs)}")
    if rng.random() < 0.35:
        parts.append(f"{rng.choice(['', '! '])}-d {rng.choice(addrs)}")
    if rng.random() < 0.25 and chain in ("INPUT", "PREROUTING", "USER"):
        parts.append(f"{rng.choice(['', '! '])}-i {rng.choice(['lo', 'eth0', 'l+'])}")
    if rng.random() < 0.25 and chain in ("OUTPUT", "POSTROUTING", "USER"):
        parts.append(f"{rng.choice(['', '! '])}-o {rng.choice(['lo', 'eth0'])}")
    if rng.random() < 0.45:
        proto = rng.choice(["tcp", "udp"])
        parts.append(f"-p {proto}")
        if rng.random() < 0.6:
            option = rng.choice(["dport", "sport"])  # drawn in this order: the seeds' rulesets stay the same
            parts.append(f"--{option} {rng.choice(['5001', '5002', '5000:5001', '1024:65535'])}")
        if proto == "tcp" and rng.random() < 0.2:
            parts.append(rng.choice(["--syn", "--tcp-flags SYN,ACK SYN,ACK", "! --syn"]))
    if rng.random() < 0.3:
        parts.append(f"-m conntrack {rng.choice(['', '! '])}--ctstate {rng.choice(STATES)}")
    if rng.random() < 0.12:
        parts.append(
            rng.choice(
                [
                    "-m conntrack --ctdir ORIGINAL",
                    "-m conntrack --ctdir REPLY",
                    "-m conntrack --ctstatus SEEN_REPLY",
                    "-m conntrack --ctstatus ASSURED",
                    "-m conntrack ! --ctstatus CONFIRMED",
                    "-m state --state NEW",
                ]
            )
        )
    if rng.random() < 0.1:
        parts.append(f"-m mark --mark {rng.choice(['0x1', '0x0'])}")
    if rng.random() < 0.1 and addrs is ADDRS:
        parts.append(f"-m addrtype --{rng.choice(['src', 'dst'])}-type {rng.choice(['LOCAL', 'UNICAST'])}")
    if rng.random() < 0.3:
        # iptables refuses a second -p, and devgroup/physdev input matches on a chain OUTPUT may reach
        choices = [
            m
            for m in (ISSUE11_IPT if addrs is ADDRS else ISSUE11_IP6T)
            if not (m.startswith("-p ") and any(p.startswith("-p ") for p in parts))
            and not ((" devgroup " in f" {m} " or "physdev" in m) and chain != "INPUT")
        ]
        parts.append(rng.choice(choices))
    if rng.random() < 0.1 and "-p tcp" in parts:
        flags_given = any("syn" in p or "tcp-flags" in p for p in parts)  # iptables takes one of them
        extra = [] if flags_given else ["--tcp-flags ALL NONE"]
        parts.append(
            rng.choice(
                [
                    "-m tcpmss --mss 1000:65535",
                    "-m tcpmss --mss 1:536",
                    "-m tcp --tcp-option 2",
                    "-m multiport --dports 5001,5002",
                ]
                + extra
            )
        )
    return " ".join(parts)


# Matches the kernel decides from a loopback packet alone (issue 11); no rates, quotas or lists.
ISSUE11_IPT = (
    "-m ttl --ttl-eq 64",
    "-m ttl --ttl-lt 10",
    "-m length --length 0:1000",
    "-m length --length 1400:65535",
    "-m dscp --dscp 0",
    "-m dscp ! --dscp 0x2e",
    "-m tos --tos 0x00/0xff",
    "-m ecn --ecn-ip-ect 0",
    "-f",
    "! -f",
    "-m pkttype --pkt-type host",
    "-m pkttype --pkt-type broadcast",
    "-m iprange --src-range 127.0.0.2-127.0.0.9",
    "-m iprange ! --dst-range 127.0.0.50-127.0.0.60",
    "-m devgroup --src-group 0",
    "-m helper --helper ftp",
    "-m connlimit --connlimit-above 50",
    "-m statistic --mode nth --every 1 --packet 0",
    "-m connmark --mark 0x0",
    "-m connmark --mark 0x1",
    "-p icmp -m icmp --icmp-type 8",
    "-m physdev --physdev-is-bridged",
)
ISSUE11_IP6T = (
    "-m hl --hl-eq 64",
    "-m hl --hl-lt 10",
    "-m length --length 0:1000",
    "-m pkttype --pkt-type host",
    "-m connmark --mark 0x0",
    "-m helper --helper ftp",
    "-p ipv6-icmp -m icmp6 --icmpv6-type 128",
)


def random_iptables(seed: int, family: str = "ip") -> str:
    rng = random.Random(seed)
    addrs = ADDRS6 if family == "ip6" else ADDRS
    users = ["U1", "U2", "U3"]
    lines = []
    if rng.random() < 0.5:
        lines += ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        for _ in range(rng.randint(0, 2)):
            chain = rng.choice(["OUTPUT", "PREROUTING"])
            lines.append(f"-A {chain} {_ipt_matches(rng, chain, addrs)} -j CT --notrack".replace("  ", " "))
        lines.append("COMMIT")
    if rng.random() < 0.4:
        lines += [
            "*mangle",
            ":PREROUTING ACCEPT [0:0]",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD ACCEPT [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            ":POSTROUTING ACCEPT [0:0]",
        ]
        lines.append(f"-A OUTPUT {_ipt_matches(rng, 'OUTPUT', addrs)} -j MARK --set-mark 0x1".replace("  ", " "))
        if rng.random() < 0.5:
            lines.append(f"-A POSTROUTING {_ipt_matches(rng, 'POSTROUTING', addrs)} -j DROP".replace("  ", " "))
        lines.append("COMMIT")
    lines += [
        "*filter",
        f":INPUT {rng.choice(['ACCEPT', 'DROP'])} [0:0]",
        ":FORWARD DROP [0:0]",
        f":OUTPUT {rng.choice(['ACCEPT', 'ACCEPT', 'DROP'])} [0:0]",
    ]
    lines += [f":{u} - [0:0]" for u in users]
    for chain in ("INPUT", "OUTPUT") + tuple(users):
        for _ in range(rng.randint(0 if chain in users else 1, 4)):
            target = rng.choice(
                [
                    "ACCEPT",
                    "ACCEPT",
                    "DROP",
                    "REJECT",
                    "RETURN",
                    "LOG",
                    "NFLOG",
                    "CONNMARK --set-mark 0x1",
                    "CONNMARK --restore-mark",
                ]
                + [f"jump {u}" for u in users if u > chain or chain in ("INPUT", "OUTPUT")]
                + [f"goto {u}" for u in users if u > chain or chain in ("INPUT", "OUTPUT")]
            )
            # user chains may test either interface: the one a hook lacks is the empty name
            matches = _ipt_matches(rng, "USER" if chain in users else chain, addrs)
            if target.startswith("jump "):
                action = f"-j {target[5:]}"
            elif target.startswith("goto "):
                action = f"-g {target[5:]}"
            else:
                action = f"-j {target}"
            lines.append(f"-A {chain} {matches} {action}".replace("  ", " "))
    lines += ["COMMIT", ""]
    return "\n".join(lines)


def _nft_matches(rng: random.Random, hook: str) -> str:
    parts = []
    if rng.random() < 0.35:
        op = rng.choice(["", "!= "])  # drawn in this order: the seeds' rulesets stay the same
        parts.append(f"ip saddr {op}{rng.choice(['127.0.0.1', '127.0.0.0/8', '{ 127.0.0.2, 127.0.0.53 }'])}")
    if rng.random() < 0.3:
        parts.append(f"ip daddr {rng.choice(['', '!= '])}{rng.choice(['127.0.0.1', '127.0.0.53', '127.0.0.0/8'])}")
    if rng.random() < 0.3:
        parts.append(f"{rng.choice(['iifname', 'oifname'])} {rng.choice(['', '!= '])}{rng.choice(['lo', 'eth0'])}")
    if rng.random() < 0.4:
        proto = rng.choice(["tcp", "udp"])
        parts.append(f"{proto} {rng.choice(['dport', 'sport'])} {rng.choice(['5001', '{ 5001, 5002 }', '5000-5001'])}")
    if rng.random() < 0.3:
        parts.append(f"ct state {rng.choice(['new', 'established', 'established,related', 'untracked', 'invalid'])}")
    if rng.random() < 0.1:
        parts.append("meta nfproto ipv6")
    if rng.random() < 0.3:
        # nft refuses rules whose implied protocols conflict (udp dport with icmp type, ip with ip6)
        text = " ".join(parts)
        l4 = any(word in text for word in ("tcp ", "udp "))
        choices = [
            m
            for m in ISSUE11_NFT
            if not (
                l4
                and m.split()[0] in ("icmp", "icmpv6", "ip", "ip6", "meta", "th", "tcp")
                and any(word in m for word in ("icmp", "protocol", "nexthdr", "l4proto", "th ", "tcp "))
            )
            and not ("ip " in text and m.startswith(("ip6 ", "icmpv6 ")))
            and not ("nfproto ipv6" in text and m.startswith(("ip ", "icmp ")))
        ]
        parts.append(rng.choice(choices))
    return " ".join(parts)


# nft spellings of issue 11's packet-decided matches, and its implicit protocol dependencies
ISSUE11_NFT = (
    "ip ttl 64",
    "ip ttl < 10",
    "ip6 hoplimit 64",
    "ip length 0-1000",
    "meta length > 1400",
    "ip dscp cs0",
    "ip ecn not-ect",
    "ip frag-off & 0x1fff != 0",
    "meta pkttype host",
    "fib daddr type local",
    "ip saddr 127.0.0.2-127.0.0.9",
    "meta iiftype loopback",
    "meta oiftype loopback",
    "meta iifgroup 0",
    'ct helper "ftp"',
    "ct count over 50",
    "ct mark 0x1",
    "meta mark 0x0",
    "ct status seen-reply",
    "ct direction reply",
    "icmp type echo-request",
    "icmpv6 type echo-request",
    "ip protocol tcp",
    "ip6 nexthdr udp",
    "meta l4proto udp",
    "th dport 5001",
    "tcp flags & (syn|ack) == syn",
    "tcp option maxseg size 1000-65535",
    "ip saddr . th dport { 127.0.0.2 . 5001, 127.0.0.1 . 5002 }",
    "numgen inc mod 1 0",
)


def random_nft(seed: int) -> str:
    rng = random.Random(seed)
    body = []
    for idx, hook in enumerate(rng.sample(["input", "output", "prerouting", "input"], rng.randint(1, 3))):
        prio = rng.choice([-300, -150, 0, 10])
        rules = []
        for _ in range(rng.randint(1, 4)):
            verdict = rng.choice(
                [
                    "accept",
                    "drop",
                    "jump sub",
                    "goto sub",
                    "return",
                    "counter",
                    "meta mark set ct mark",
                    "ct mark set 0x1",
                    "log",
                ]
            )
            if hook == "prerouting" and prio == -300 and rng.random() < 0.3:
                verdict = "notrack"
            rules.append(f"        {_nft_matches(rng, hook)} {verdict}".rstrip())
        body.append(
            f"    chain c{idx} {{\n        type filter hook {hook} priority {prio}; "
            f"policy {rng.choice(['accept', 'accept', 'drop'])};\n" + "\n".join(rules) + "\n    }"
        )
    sub = [
        f"        {_nft_matches(rng, 'input')} {rng.choice(['accept', 'drop', 'return'])}".rstrip()
        for _ in range(rng.randint(0, 3))
    ]
    body.append("    chain sub {\n" + "\n".join(sub) + "\n    }")
    return "table inet t {\n" + "\n".join(body) + "\n}\n"


FLOWS6 = [Flow(proto, "::1", port, client) for proto in ("tcp", "udp") for port in PORTS for client in (None, "::1")]


def _check(ruleset: Ruleset, source: RulesetText, flows=FLOWS):
    engine = Engine(ruleset)  # the probe exchanges two datagrams each way, as the engine predicts
    predicted = [engine.evaluate(f) for f in flows]
    observed = [o["observed"] for o in observe_files_detailed([source], flows, timeout=TIMEOUT)]
    compared = 0
    wrong = []
    for result, seen in zip(predicted, observed):
        if result.verdict == UNKNOWN or seen not in ("delivered", "blocked"):
            continue
        compared += 1
        if result.verdict != seen:
            wrong.append(
                (
                    result.flow.label(),
                    result.verdict,
                    seen,
                    [
                        f"{s.packet} {s.hook} {s.table}/{s.chain} {s.verdict} {s.rule.text if s.rule else ''}"
                        for s in result.steps
                    ],
                )
            )
    return compared, wrong


@pytest.mark.parametrize("seed", range(FIRST, FIRST + SEEDS))
def test_engine_equals_kernel_on_random_iptables(seed):
    text = random_iptables(seed)
    ruleset = Ruleset(tables=iptables.parse(text, f"random-{seed}.rules", family="ip"))
    compared, wrong = _check(ruleset, RulesetText(name=f"random-{seed}.rules", text=text, format="iptables-save"))
    assert not wrong, (text, wrong[:3])
    assert compared >= len(FLOWS) - 4


@pytest.mark.parametrize("seed", range(1000 + FIRST, 1000 + FIRST + max(1, SEEDS * 2 // 3)))
def test_engine_equals_kernel_on_random_nft(seed):
    text = random_nft(seed)
    ruleset = Ruleset(tables=nft_files.read(text, f"random-{seed}.nft"))
    compared, wrong = _check(ruleset, RulesetText(name=f"random-{seed}.nft", text=text, format="nft"))
    assert not wrong, (text, wrong[:3])
    assert compared >= len(FLOWS) - 4


@pytest.mark.parametrize("seed", range(2000 + FIRST, 2000 + FIRST + max(1, SEEDS // 2)))
def test_engine_equals_kernel_on_random_ip6tables(seed):
    text = random_iptables(seed, family="ip6")
    ruleset = Ruleset(tables=iptables.parse(text, f"random-{seed}.v6", family="ip6"))
    compared, wrong = _check(ruleset, RulesetText(name=f"random-{seed}.v6", text=text, format="ip6tables-save"), FLOWS6)
    assert not wrong, (text, wrong[:3])
    assert compared >= len(FLOWS6) - 2

"""The kernel decides every ordinary match from the packet: lbfw must decide it the same way (issue 11).

Each case adds one ordinary rule to a narrow accept (`-s 127.0.0.1 -j ACCEPT` / `ip saddr 127.0.0.1
accept` under policy drop), with and without `ct state established,related accept`, written for
iptables (loaded by iptables-legacy-restore and, once, by iptables-nft-restore) and for nft (an inet
table). Every ruleset is loaded into its own private namespace and the same loopback flows are sent
with real sockets: clients unbound and bound to 127.0.0.2, servers 127.0.0.1:5001, 127.0.0.53:53 and
127.10.0.1:5002, tcp and udp, plus ::1 (which the nft cases' inet table sees). lbfw's verdict must
equal the kernel's for every flow; "unknown" is allowed only for a runtime condition the ruleset
cannot show (a rate, a quota, a `recent` list, a queue reader, the time, the cpu), and then the
reason must name it.

The namespaces are independent, so all the cases selected in a session are observed at once in a
thread pool (each waits on socket timeouts, not on the cpu).
"""

from __future__ import annotations

import dataclasses
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from lbfw.analyze.engine import Engine
from lbfw.model import Ruleset
from lbfw.read import iptables
from lbfw.read.nft import files as nft_files
from lbfw.results import UNKNOWN, Flow
from lbfw.sandbox.verify import RulesetText, observe_files_detailed

pytestmark = pytest.mark.kernel

TIMEOUT = 0.6  # 0.4 s lost a delivered flow now and then with eight namespaces busy on two cores
WORKERS = 8
SERVERS = (("127.0.0.1", 5001), ("127.0.0.53", 53), ("127.10.0.1", 5002))
FLOWS = [
    Flow(proto, server, port, client)
    for proto in ("tcp", "udp")
    for server, port in SERVERS
    for client in (None, "127.0.0.2")
]
FLOWS += [Flow("tcp", "::1", 5001), Flow("udp", "::1", 5001)]

RATE = ("rate", "limit")
QUOTA = ("quota",)
RECENT = ("recent",)
QUEUE = ("queue",)
TIME = ("time",)
CPU = ("cpu",)


@dataclass(frozen=True)
class Case:
    """One ordinary rule, in both syntaxes. ``ipt``: filter lines (`-A INPUT ...`); ``nft``: statements
    of the inet input chain. ``before``: the rule comes before the accepts (a hygiene DROP, a
    statement that must not end the packet). ``*_extra``: more tables (iptables) or chains (nft).
    ``runtime``: words one of which an "unknown" reason must contain (empty: never unknown)."""

    name: str
    ipt: str = ""
    nft: str = ""
    before: bool = False
    ipt_extra: str = ""
    nft_extra: str = ""
    runtime: tuple = ()
    nft_backend: bool = True  # iptables-nft-restore loads it too


CASES = [
    # protocol and ports, and nft's implicit protocol dependencies
    Case("tcp-dport", "-A INPUT -p tcp --dport 5001 -j ACCEPT", "tcp dport 5001 accept"),
    Case("udp-sport-reply", "-A INPUT -p udp --sport 53 -j ACCEPT", "udp sport 53 accept"),
    Case("proto-udp", "-A INPUT -p udp -j ACCEPT", "meta l4proto udp accept"),
    Case("ip-protocol-tcp", "-A INPUT -p tcp -j ACCEPT", "ip protocol tcp accept"),
    Case("ip6-nexthdr-tcp", "", "ip6 nexthdr tcp accept"),
    Case("th-dport", "", "th dport 53 accept"),
    Case("ip-daddr-inet", "-A INPUT -d 127.10.0.1/32 -j ACCEPT", "ip daddr 127.10.0.1 accept"),
    # icmp and icmpv6 types never match tcp or udp
    Case("icmp-echo", "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT", "icmp type echo-request accept"),
    Case("icmp-any", "-A INPUT -p icmp -m icmp --icmp-type any -j ACCEPT", "icmp type != echo-reply accept"),
    Case("icmpv6-echo", "", "icmpv6 type echo-request accept"),
    Case("icmp-drop-first", "-A INPUT -p icmp -m icmp --icmp-type 0 -j DROP", "icmp type echo-reply drop", before=True),
    # TTL and hop limit: the host's default, 64
    Case("ttl-eq-64", "-A INPUT -m ttl --ttl-eq 64 -j ACCEPT", "ip ttl 64 accept"),
    Case("ttl-lt-10-drop", "-A INPUT -m ttl --ttl-lt 10 -j DROP", "ip ttl < 10 drop", before=True),
    Case("ttl-gt-100", "-A INPUT -m ttl --ttl-gt 100 -j ACCEPT", "ip ttl > 100 accept"),
    Case("hoplimit-64", "", "ip6 hoplimit 64 accept"),
    # length: loopback test packets are small
    Case("length-small", "-A INPUT -m length --length 0:1000 -j ACCEPT", "ip length 0-1000 accept"),
    Case("length-big-drop", "-A INPUT -m length --length 1400:65535 -j DROP", "meta length > 1400 drop", before=True),
    # tos, dscp, ecn: all zero on loopback
    Case("dscp-0", "-A INPUT -m dscp --dscp 0 -j ACCEPT", "ip dscp cs0 accept"),
    Case("dscp-ef-drop", "-A INPUT -m dscp --dscp 0x2e -j DROP", "ip dscp ef drop", before=True),
    Case("tos-0", "-A INPUT -m tos --tos 0x00/0xff -j ACCEPT", "ip dscp 0 ip ecn not-ect accept"),
    Case("ecn-ect-0", "-A INPUT -m ecn --ecn-ip-ect 0 -j ACCEPT", "ip ecn not-ect accept"),
    # tcp flags of each packet of the exchange
    Case("tcp-syn-only", "-A INPUT -p tcp --tcp-flags SYN,ACK SYN -j ACCEPT", "tcp flags & (syn|ack) == syn accept"),
    Case("tcp-not-syn", "-A INPUT -p tcp ! --syn -j ACCEPT", "tcp flags & (syn|rst|ack) != syn accept"),
    Case(
        "tcp-null-drop",
        "-A INPUT -p tcp --tcp-flags ALL NONE -j DROP",
        "tcp flags & (fin|syn|rst|psh|ack|urg) == 0x0 drop",
        before=True,
    ),
    Case(
        "tcp-synrst-drop",
        "-A INPUT -p tcp --tcp-flags SYN,RST SYN,RST -j DROP",
        "tcp flags & (syn|rst) == syn|rst drop",
        before=True,
    ),
    # MSS and tcp options: loopback MSS is 65483; only SYN and SYN-ACK carry options
    Case("mss-big", "-A INPUT -p tcp -m tcpmss --mss 1000:65535 -j ACCEPT", "tcp option maxseg size 1000-65535 accept"),
    Case(
        "mss-small-drop",
        "-A INPUT -p tcp -m tcpmss --mss 1:536 -j DROP",
        "tcp option maxseg size 1-536 drop",
        before=True,
    ),
    Case("tcp-option-mss", "-A INPUT -p tcp -m tcp --tcp-option 2 -j ACCEPT", "tcp option maxseg exists accept"),
    # fragments: none on loopback
    Case("fragment-drop", "-A INPUT -f -j DROP", "ip frag-off & 0x1fff != 0 drop", before=True),
    Case("not-fragment", "-A INPUT ! -f -j ACCEPT", "ip frag-off & 0x1fff == 0 accept"),
    # pkttype, addrtype / fib (the local 127/8 route)
    Case("pkttype-host", "-A INPUT -m pkttype --pkt-type host -j ACCEPT", "meta pkttype host accept"),
    Case("pkttype-broadcast", "-A INPUT -m pkttype --pkt-type broadcast -j ACCEPT", "pkttype broadcast accept"),
    Case("addrtype-dst-local", "-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT", "fib daddr type local accept"),
    Case("addrtype-src-unicast", "-A INPUT -m addrtype --src-type UNICAST -j ACCEPT", "fib saddr type unicast accept"),
    # iprange, multiport, concatenations and th
    Case(
        "iprange-src",
        "-A INPUT -m iprange --src-range 127.0.0.2-127.0.0.9 -j ACCEPT",
        "ip saddr 127.0.0.2-127.0.0.9 accept",
    ),
    Case(
        "iprange-dst",
        "-A INPUT -m iprange --dst-range 127.0.0.50-127.0.0.60 -j ACCEPT",
        "ip daddr 127.0.0.50-127.0.0.60 accept",
    ),
    Case(
        "multiport-dports", "-A INPUT -p tcp -m multiport --dports 53,5001 -j ACCEPT", "tcp dport { 53, 5001 } accept"
    ),
    Case(
        "multiport-sports", "-A INPUT -p udp -m multiport --sports 53,5002 -j ACCEPT", "udp sport { 53, 5002 } accept"
    ),
    Case("concat-th", "", "ip saddr . th dport { 127.0.0.2 . 53, 127.0.0.2 . 5002 } accept"),
    Case("concat-l4proto", "", "meta l4proto . th sport { udp . 53, tcp . 5002 } accept"),
    # meta nfproto / l4proto / iiftype / oiftype, devgroup
    Case("nfproto-ipv4", "", "meta nfproto ipv4 accept"),
    Case("iiftype-loopback", "", "meta iiftype loopback accept"),
    Case("iiftype-ether", "", "meta iiftype ether accept"),
    Case("oiftype-input", "", "meta oiftype loopback accept"),
    Case("devgroup-0", "-A INPUT -m devgroup --src-group 0 -j ACCEPT", "meta iifgroup 0 accept"),
    Case("devgroup-1", "-A INPUT -m devgroup --src-group 1 -j ACCEPT", "meta iifgroup 1 accept"),
    # helper (none), physdev (not bridged)
    Case("helper-ftp", "-A INPUT -m helper --helper ftp -j ACCEPT", 'ct helper "ftp" accept'),
    Case("physdev-bridged", "-A INPUT -m physdev --physdev-is-bridged -j ACCEPT", ""),
    # connlimit (a handful of connections at once), statistic nth
    Case(
        "connlimit-above-drop",
        "-A INPUT -p tcp -m connlimit --connlimit-above 50 -j DROP",
        "ct count over 50 drop",
        before=True,
    ),
    Case("connlimit-upto", "-A INPUT -p tcp -m connlimit --connlimit-upto 50 -j ACCEPT", "ct count 50 accept"),
    Case("nth-every-1", "-A INPUT -m statistic --mode nth --every 1 --packet 0 -j ACCEPT", "numgen inc mod 1 0 accept"),
    # conntrack state, status, direction
    Case("ctstate-new", "-A INPUT -m conntrack --ctstate NEW -j ACCEPT", "ct state new accept"),
    Case(
        "ctstate-invalid-drop", "-A INPUT -m conntrack --ctstate INVALID -j DROP", "ct state invalid drop", before=True
    ),
    Case("ctstatus-seen-reply", "-A INPUT -m conntrack --ctstatus SEEN_REPLY -j ACCEPT", "ct status seen-reply accept"),
    Case("ctdir-reply", "-A INPUT -m conntrack --ctdir REPLY -j ACCEPT", "ct direction reply accept"),
    # marks and connmarks
    Case(
        "mark-set-output",
        "-A INPUT -m mark --mark 0x1 -j ACCEPT",
        "meta mark 0x1 accept",
        ipt_extra="""*mangle
            :PREROUTING ACCEPT [0:0]
            :INPUT ACCEPT [0:0]
            :FORWARD ACCEPT [0:0]
            :OUTPUT ACCEPT [0:0]
            :POSTROUTING ACCEPT [0:0]
            -A OUTPUT -d 127.10.0.1/32 -j MARK --set-mark 0x1
            COMMIT""",
        nft_extra="chain out { type route hook output priority -150; ip daddr 127.10.0.1 meta mark set 0x1; }",
    ),
    Case(
        "connmark-restore",
        "-A INPUT -m mark --mark 0x2 -j ACCEPT",
        "meta mark 0x2 accept",
        ipt_extra="""*mangle
            :PREROUTING ACCEPT [0:0]
            :INPUT ACCEPT [0:0]
            :FORWARD ACCEPT [0:0]
            :OUTPUT ACCEPT [0:0]
            :POSTROUTING ACCEPT [0:0]
            -A OUTPUT -p udp --dport 53 -j CONNMARK --set-mark 0x2
            -A PREROUTING -j CONNMARK --restore-mark
            COMMIT""",
        nft_extra="""chain out { type filter hook output priority -150; udp dport 53 ct mark set 0x2; }
            chain pre { type filter hook prerouting priority -150; meta mark set ct mark; }""",
    ),
    Case(
        "connmark-match",
        "-A INPUT -m connmark --mark 0x3 -j ACCEPT",
        "ct mark 0x3 accept",
        ipt_extra="""*mangle
            :PREROUTING ACCEPT [0:0]
            :INPUT ACCEPT [0:0]
            :FORWARD ACCEPT [0:0]
            :OUTPUT ACCEPT [0:0]
            :POSTROUTING ACCEPT [0:0]
            -A OUTPUT -m mark --mark 0x0 -p tcp --dport 5002 -j CONNMARK --set-xmark 0x3/0xff
            COMMIT""",
        nft_extra="chain out { type filter hook output priority -150; meta mark 0 tcp dport 5002 ct mark set 0x3; }",
    ),
    Case(
        "wg-quick-mark",
        "-A INPUT -p udp -j CONNMARK --restore-mark",
        "meta l4proto udp meta mark set ct mark",
        before=True,
    ),
    Case(
        "mark-unknown-value", "-A INPUT -j MARK --set-xmark 0x5/0xf", "meta mark set jhash ip saddr mod 4", before=True
    ),
    # statements that cannot end a packet
    Case("log-counter", '-A INPUT -j LOG --log-prefix "in "', 'counter log prefix "in "', before=True),
    Case("nflog", "-A INPUT -j NFLOG --nflog-group 5", "log group 5", before=True),
    Case("audit", "-A INPUT -j AUDIT --type accept", "meta nftrace set 1", before=True),
    Case(
        "trace",
        "-A INPUT -j LOG",
        "counter",
        ipt_extra="""*raw
            :PREROUTING ACCEPT [0:0]
            :OUTPUT ACCEPT [0:0]
            -A PREROUTING -j TRACE
            -A OUTPUT -j TRACE
            COMMIT""",
        nft_extra="chain pre { type filter hook prerouting priority -300; meta nftrace set 1; }",
        before=True,
    ),
    # rates and quotas: a first connection is under them
    Case(
        "limit",
        "-A INPUT -m limit --limit 100/sec --limit-burst 400 -j ACCEPT",
        "limit rate 100/second burst 400 packets accept",
        runtime=RATE,
    ),
    Case("limit-over-drop", "", "limit rate over 100/second burst 400 packets drop", before=True, runtime=RATE),
    Case(
        "hashlimit-above-drop",
        "-A INPUT -m hashlimit --hashlimit-above 100/sec --hashlimit-burst 400 --hashlimit-name h10 -j DROP",
        "",
        before=True,
        runtime=RATE,
    ),
    Case("quota", "-A INPUT -m quota --quota 10000000 -j ACCEPT", "quota 10 mbytes accept", runtime=QUOTA),
    Case("quota-over-drop", "", "quota over 10 mbytes drop", before=True, runtime=QUOTA),
    # recent lists: empty until a --set rule fills them
    Case("recent-rcheck-empty", "-A INPUT -m recent --name h10 --rcheck --seconds 60 -j DROP", "", before=True),
    Case(
        "recent-set-then-check",
        "-A INPUT -m recent --name h10 --set\n-A INPUT -m recent --name h10 --rcheck -j ACCEPT",
        "",
        runtime=RECENT,
    ),
    # NFQUEUE with no reader: dropped; with bypass: accepted. (nft's `queue` statement needs nft_queue,
    # which this kernel lacks: `nft -f` refuses it, so these are iptables only.)
    Case("nfqueue-no-reader", "-A INPUT -p udp --dport 53 -j NFQUEUE --queue-num 7", before=True, runtime=QUEUE),
    Case("nfqueue-bypass", "-A INPUT -p udp --dport 53 -j NFQUEUE --queue-num 7 --queue-bypass", runtime=QUEUE),
    # time and cpu: always a runtime condition
    Case("time", "-A INPUT -m time --timestart 00:00 --timestop 23:59:59 -j ACCEPT", "", runtime=TIME),
    Case("cpu", "-A INPUT -m cpu --cpu 0 -j ACCEPT", "meta cpu 0 accept", runtime=CPU),
]

VARIANTS = ("legacy", "legacy-est", "nft-backend", "nft", "nft-est")

# Cases lbfw does not decide yet, each with why: strict, so a line must go the moment the engine
# decides the match (the test then passes and XPASS fails).
PENDING: dict = {}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in textwrap.dedent(text).strip().splitlines() if line.strip()]


def iptables_text(case: Case, established: bool) -> str:
    """The case as iptables-save text: INPUT policy drop, the narrow accept and the case's rule."""
    base = ["-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"] if established else []
    base.append("-A INPUT -s 127.0.0.1/32 -j ACCEPT")
    rules = _lines(case.ipt)
    body = rules + base if case.before else base + rules
    extra = _lines(case.ipt_extra)
    return "\n".join(
        extra + ["*filter", ":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"] + body + ["COMMIT", ""]
    )


def nft_text(case: Case, established: bool) -> str:
    """The case as an nft file: one inet table, input policy drop, the narrow accept and the rule."""
    base = ["ct state established,related accept"] if established else []
    base.append("ip saddr 127.0.0.1 accept")
    rules = _lines(case.nft)
    body = rules + base if case.before else base + rules
    extra = "\n    ".join(_lines(case.nft_extra))
    return (
        "table inet h10 {\n    " + extra + "\n    chain input {\n        type filter hook input priority 0; "
        "policy drop;\n        " + "\n        ".join(body) + "\n    }\n}\n"
    )


def _variants(case: Case) -> list[str]:
    out = []
    if case.ipt:
        out += ["legacy", "legacy-est"] + (["nft-backend"] if case.nft_backend else [])
    if case.nft:
        out += ["nft", "nft-est"]
    return out


def source_of(case: Case, variant: str) -> tuple[Ruleset, RulesetText]:
    """What lbfw reads and what the kernel loads for one variant of a case."""
    established = variant.endswith("-est")
    name = f"{case.name}-{variant}"
    if variant.startswith("nft") and variant != "nft-backend":
        text = nft_text(case, established)
        return Ruleset(tables=nft_files.read(text, name + ".nft")), RulesetText(name + ".nft", text, "nft")
    text = iptables_text(case, established)
    backend = "nft" if variant == "nft-backend" else "legacy"
    return (
        Ruleset(tables=iptables.parse(text, name + ".rules", family="ip")),
        RulesetText(name + ".rules", text, "iptables-save", backend=backend),
    )


def _marks(case: Case, variant: str) -> list:
    reason = PENDING.get(case.name) or PENDING.get(f"{case.name}-{variant}")
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


PARAMS = [
    pytest.param(case, variant, id=f"{case.name}-{variant}", marks=_marks(case, variant))
    for case in CASES
    for variant in _variants(case)
]


def _observe(key: tuple) -> object:
    case, variant = key
    try:
        _, source = source_of(case, variant)
        return observe_files_detailed([source], FLOWS, timeout=TIMEOUT)
    except Exception as err:  # reported by the case's own test, with the kernel's words
        return err


@pytest.fixture(scope="module")
def kernel(request) -> dict:
    """Real traffic for every (case, variant) selected in this session, observed concurrently."""
    keys = []
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if spec is not None and item.module is request.module and "case" in spec.params:
            keys.append((spec.params["case"], spec.params["variant"]))
    keys = list(dict.fromkeys(keys))
    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip(keys, pool.map(_observe, keys)))


def differences(results, observed, runtime: tuple, rule_text: str = "") -> list:
    """The flows where lbfw and the kernel disagree (an allowed, well-named unknown is agreement:
    its reason names the runtime condition in words beyond the rule's own, which quoting the
    rule would otherwise satisfy)."""
    quoted = set(rule_text.lower().split())
    wrong = []
    for result, seen in zip(results, observed):
        kernel_says = seen["observed"]
        if kernel_says not in ("delivered", "blocked"):
            wrong.append((result.flow.label(), result.verdict, kernel_says, "kernel did not observe it"))
            continue
        if result.verdict == kernel_says:
            continue
        reason = " ".join(w for w in " ".join(result.unknown).lower().split() if w not in quoted)
        if result.verdict == UNKNOWN and runtime and any(word in reason for word in runtime):
            continue
        wrong.append((result.flow.label(), result.verdict, kernel_says, list(result.unknown)))
    return wrong


@pytest.mark.parametrize("case, variant", PARAMS)
def test_lbfw_decides_like_the_kernel(kernel, case: Case, variant: str):
    ruleset, source = source_of(case, variant)
    observed = kernel[(case, variant)]
    if isinstance(observed, Exception):
        raise observed
    engine = Engine(ruleset)
    results = [engine.evaluate(flow) for flow in FLOWS]
    wrong = differences(results, observed, case.runtime, case.ipt + " " + case.nft)
    assert not wrong, (source.text, wrong)


# --------------------------------------------------------------------------- the named rulesets

VPS_TEMPLATE = """table inet filter {
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        ip saddr 127.0.0.1 accept
        tcp dport 22 accept
        icmp type echo-request accept
    }
}
"""
FRAGMENT_HYGIENE = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -f -j DROP
-A INPUT -s 127.0.0.1/32 -j ACCEPT
COMMIT
"""


def _prove(ruleset: Ruleset, source: RulesetText, flows=FLOWS, runtime: tuple = ()) -> list:
    engine = Engine(ruleset)
    results = [engine.evaluate(flow) for flow in flows]
    wrong = differences(results, observe_files_detailed([source], flows, timeout=TIMEOUT), runtime)
    assert not wrong, (source.text, wrong)
    return results


def test_stock_vps_template_agrees_with_the_kernel_on_every_flow():
    flows = FLOWS + [Flow("tcp", "127.0.0.1", 22, "127.0.0.2"), Flow("udp", "127.0.0.1", 22, "127.0.0.2")]
    results = _prove(
        Ruleset(tables=nft_files.read(VPS_TEMPLATE, "vps.nft")), RulesetText("vps.nft", VPS_TEMPLATE, "nft"), flows
    )
    # the flows from 127.0.0.2 are dropped (the `icmp type` rule never matches tcp or udp) ...
    assert [r.verdict for r in results if r.flow.client == "127.0.0.2" and r.flow.port != 22] == ["blocked"] * 6
    # ... except where `tcp dport 22` lets them in
    assert [r.verdict for r in results[-2:]] == ["delivered", "blocked"]


def test_stock_vps_template_audits_lb001_error_and_lb002_warning_exit_1(tmp_path):
    import json
    import subprocess
    import sys

    path = tmp_path / "vps.nft"
    path.write_text(VPS_TEMPLATE)
    proc = subprocess.run(
        [sys.executable, "-m", "lbfw", "audit", str(path), "-f", "json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    severities = {(f["check"], f["severity"]) for f in findings}
    assert ("LB001", "error") in severities, findings
    assert ("LB002", "warning") in severities, findings


def test_fragment_hygiene_rule_decides_every_flow():
    results = _prove(
        Ruleset(tables=iptables.parse(FRAGMENT_HYGIENE, "frag.rules", family="ip")),
        RulesetText("frag.rules", FRAGMENT_HYGIENE, "iptables-save"),
    )
    assert results[0].flow == Flow("tcp", "127.0.0.1", 5001) and results[0].verdict == "delivered"
    assert UNKNOWN not in [r.verdict for r in results]


# --------------------------------------------------------------------------- owner: the client runs as a user

TOR_UID = 106
USERS = (TOR_UID, 0, 1000)  # the owner the rule names, root (the servers' owner), someone else
OWNER_CASES = {
    "owner-uid-accept": (
        "iptables-save",
        """*filter
        :INPUT ACCEPT [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT DROP [0:0]
        -A OUTPUT -d 127.0.0.1/32 -j ACCEPT
        -A OUTPUT -m owner --uid-owner 106 -j ACCEPT
        COMMIT""",
    ),
    "owner-gid-drop": (
        "iptables-save",
        """*filter
        :INPUT DROP [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -s 127.0.0.1/32 -j ACCEPT
        -A OUTPUT -m owner --gid-owner 106 -j DROP
        COMMIT""",
    ),
    "owner-not-uid-established": (
        "iptables-save",
        """*filter
        :INPUT ACCEPT [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT DROP [0:0]
        -A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A OUTPUT -d 127.0.0.1/32 -j ACCEPT
        -A OUTPUT -m owner ! --uid-owner 106 -j ACCEPT
        COMMIT""",
    ),
    "owner-socket-exists": (
        "iptables-save",
        """*filter
        :INPUT ACCEPT [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT DROP [0:0]
        -A OUTPUT -d 127.0.0.1/32 -j ACCEPT
        -A OUTPUT -m owner --socket-exists -j ACCEPT
        COMMIT""",
    ),
    "nft-skuid-accept": (
        "nft",
        """table inet h10 {
            chain output { type filter hook output priority 0; policy drop;
                ip daddr 127.0.0.1 accept
                meta skuid 106 accept
            }
        }""",
    ),
    "nft-skgid-drop": (
        "nft",
        """table inet h10 {
            chain output { type filter hook output priority 0; policy accept;
                ct state established,related accept
                meta skgid 106 drop
            }
        }""",
    ),
}


def _as_user(flow: Flow, uid: int) -> Flow:
    """``flow`` with a client running as ``uid`` and gid ``uid`` (what the sandbox probe runs a number as)."""
    return dataclasses.replace(flow, user=str(uid), uid=uid, gid=uid)


def _owner_source(name: str) -> tuple[Ruleset, RulesetText]:
    fmt, text = OWNER_CASES[name]
    text = textwrap.dedent(text).strip() + "\n"
    text = "\n".join(line.strip() if fmt == "iptables-save" else line for line in text.splitlines()) + "\n"
    if fmt == "nft":
        return Ruleset(tables=nft_files.read(text, name + ".nft")), RulesetText(name + ".nft", text, "nft")
    return (
        Ruleset(tables=iptables.parse(text, name + ".rules", family="ip")),
        RulesetText(name + ".rules", text, "iptables-save"),
    )


def _observe_as_users(source: RulesetText, flows) -> dict:
    """{uid: observed per flow}: one namespace, the same flows run as each user in turn."""
    from lbfw.sandbox.netns import Namespace
    from lbfw.sandbox.traffic import observe_detailed
    from lbfw.sandbox.verify import load_sources

    out = {}
    with Namespace() as ns:
        load_sources(ns, [source])
        for uid in USERS:
            users = [_as_user(f, uid) for f in flows]
            out[uid] = observe_detailed(ns, users, timeout=TIMEOUT)
    return out


OWNER_FLOWS = [f for f in FLOWS if ":" not in f.server]


@pytest.mark.parametrize("name", sorted(OWNER_CASES))
def test_owner_matches_decided_for_each_user_and_named_without_one(name):
    ruleset, source = _owner_source(name)
    seen = _observe_as_users(source, OWNER_FLOWS)
    engine = Engine(ruleset)
    wrong = []
    for i, flow in enumerate(OWNER_FLOWS):
        kernel_by_user = {uid: seen[uid][i]["observed"] for uid in USERS}
        assert set(kernel_by_user.values()) <= {"delivered", "blocked"}, (flow, seen[TOR_UID][i], seen[0][i])
        bare = engine.evaluate(flow)
        if len(set(kernel_by_user.values())) == 1:
            if bare.verdict != kernel_by_user[0]:
                wrong.append((flow.label(), "no user", bare.verdict, kernel_by_user[0], list(bare.unknown)))
        else:
            # the kernel's answer depends on the user: lbfw must say so, with each answer
            # ("blocked for uid 106; delivered for others"), not claim one answer
            said = bare.describe()
            answers = {uid: bare.verdict_for(uid, uid) for uid in USERS}
            if not bare.by_user or answers != kernel_by_user or not all(v in said for v in kernel_by_user.values()):
                wrong.append((flow.label(), "no user", said, kernel_by_user, list(bare.unknown)))
        for uid in USERS:
            result = engine.evaluate(_as_user(flow, uid))
            if result.verdict != kernel_by_user[uid]:
                wrong.append((flow.label(), f"uid {uid}", result.verdict, kernel_by_user[uid], list(result.unknown)))
    assert not wrong, (source.text, wrong)


def test_a_listeners_syn_ack_carries_the_listeners_owner_not_the_clients():
    # measured fact the engine follows: the server (root) answers a uid-106 client; only the
    # packets of the client's socket carry uid 106, so an OUTPUT rule accepting uid 106 alone
    # lets the client's SYN out and drops the SYN-ACK on its way back to 127.0.0.2
    _, source = _owner_source("owner-uid-accept")
    flows = [
        Flow("tcp", "127.0.0.53", 53),
        Flow("tcp", "127.0.0.1", 5001, "127.0.0.2"),
        Flow("udp", "127.0.0.1", 5001, "127.0.0.2"),
    ]
    seen = _observe_as_users(source, flows)
    assert [o["observed"] for o in seen[TOR_UID]] == ["delivered", "blocked", "blocked"], seen[TOR_UID]
    assert [o["observed"] for o in seen[1000]] == ["blocked", "blocked", "blocked"], seen[1000]


# --------------------------------------------------------------------------- NAT that sends a flow elsewhere

# Per flow: a server where the client aims and one where NAT may send it; which one hears the client?
_WHERE_PROBE = """
import json, socket, sys
flow, target = json.load(sys.stdin)
kind = socket.SOCK_STREAM if flow["proto"] == "tcp" else socket.SOCK_DGRAM
servers = {}
for name, addr in (("original", (flow["server"], flow["port"])), ("target", tuple(target))):
    s = socket.socket(socket.AF_INET, kind); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr); s.settimeout(0.3)
    if kind == socket.SOCK_STREAM:
        s.listen()
    servers[name] = s
c = socket.socket(socket.AF_INET, kind); c.settimeout(0.5)
if flow["client"]:
    c.bind((flow["client"], 0))
try:
    c.connect((flow["server"], flow["port"])); c.send(b"x")
except OSError:
    pass
heard = []
for name, s in servers.items():
    try:
        conn = s.accept()[0] if kind == socket.SOCK_STREAM else s
        conn.recv(8); heard.append(name)
    except OSError:
        pass
print(" ".join(heard) or "nobody")
"""

NAT_CASES = {
    # name: (format, ruleset, flow, (target addr, port), the kernel's answer)
    "dnat-dns-to-5354": (
        "iptables-save",
        """*nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -p udp --dport 53 -j DNAT --to-destination 127.0.0.1:5354
        COMMIT""",
        Flow("udp", "127.0.0.53", 53),
        ("127.0.0.1", 5354),
        "redirected",
    ),
    "dnat-dns-tcp-untouched": (
        "iptables-save",
        """*nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -p udp --dport 53 -j DNAT --to-destination 127.0.0.1:5354
        COMMIT""",
        Flow("tcp", "127.0.0.53", 53),
        ("127.0.0.1", 5354),
        "delivered",
    ),
    "redirect-to-port": (
        "iptables-save",
        """*nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -d 127.10.0.1/32 -p tcp -j REDIRECT --to-ports 5001
        COMMIT""",
        Flow("tcp", "127.10.0.1", 5002, "127.0.0.2"),
        ("127.0.0.1", 5001),
        "redirected",
    ),
    "nft-dnat-dns": (
        "nft",
        """table ip h10 {
            chain out { type nat hook output priority -100; policy accept;
                udp dport 53 dnat to 127.0.0.1:5354
            }
        }""",
        Flow("udp", "127.0.0.53", 53, "127.0.0.2"),
        ("127.0.0.1", 5354),
        "redirected",
    ),
    "nft-redirect": (
        "nft",
        """table inet h10 {
            chain out { type nat hook output priority -100; policy accept;
                tcp dport 5002 redirect to :5001
            }
        }""",
        Flow("tcp", "127.10.0.1", 5002),
        ("127.0.0.1", 5001),
        "redirected",
    ),
}


@pytest.mark.parametrize("name", sorted(NAT_CASES))
def test_nat_that_sends_a_flow_elsewhere_is_redirected(name):
    import json

    from lbfw.sandbox.netns import Namespace
    from lbfw.sandbox.verify import load_sources

    fmt, text, flow, target, expected = NAT_CASES[name]
    text = (
        "\n".join(
            line.strip() if fmt == "iptables-save" else line for line in textwrap.dedent(text).strip().splitlines()
        )
        + "\n"
    )
    if fmt == "nft":
        ruleset = Ruleset(tables=nft_files.read(text, name + ".nft"))
    else:
        ruleset = Ruleset(tables=iptables.parse(text, name + ".rules", family="ip"))
    with Namespace() as ns:
        load_sources(ns, [RulesetText(name, text, fmt)])
        request = json.dumps(
            [{"proto": flow.proto, "server": flow.server, "port": flow.port, "client": flow.client}, list(target)]
        )
        heard = ns.run(["python3", "-c", _WHERE_PROBE], input=request, timeout=20).stdout.split()
    kernel_says = {("original",): "delivered", ("target",): "redirected"}.get(tuple(heard), " ".join(heard))
    assert kernel_says == expected, heard
    result = Engine(ruleset).evaluate(flow)
    assert result.verdict == kernel_says, (result.verdict, list(result.unknown), [s.note for s in result.steps])
    if kernel_says == "redirected":
        # the JSON says where the flow goes
        assert f"{target[0]}" in json.dumps(result.to_json()) and str(target[1]) in json.dumps(result.to_json())

"""The kernel is the oracle: the engine's verdict for every flow equals what real sockets see.

For each ruleset (rules/examples, the loadable files of ../shared/corpus, and small targeted
rulesets for the tricky semantics) the ruleset is loaded with the real tools into one private
network namespace, `default_flows` are observed with real traffic there, and every flow the
engine does not call "unknown" must match. Unknown predictions are counted and bounded.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from lbfw.analyze.engine import Engine
from lbfw.analyze.flows import default_flows
from lbfw.model import Ruleset
from lbfw.read import iptables, read_sources
from lbfw.results import UNKNOWN, Flow
from lbfw.sandbox.traffic import observe
from lbfw.sandbox.verify import RulesetText, observe_files_detailed

pytestmark = pytest.mark.kernel

TIMEOUT = 0.4
DUMMY_MAC = "02:00:00:00:00:01"
CHAIR = "configs_chair_for_Network_Architectures_and_Services__iptables-save-2016-06-27_16-29-01"
NFT_CORPUS = "config_ongy_flat_share__2015_aug_nft-ruleset"
# Corpus files whose unknown share is allowed to be high, and why (matches on what a file does not
# say: the owner of the client socket).
MANY_UNKNOWN = {
    "configs_tails_os__2015-aug-tails-i386-1.5-iptables-save": "OUTPUT accepts by socket owner (Tor)",
}
# Files the real kernel refuses as they are (the proof covers files that load); the test checks
# that it still refuses them, so a change there is noticed.
NOT_LOADABLE = {
    "configs_ugent__iptables-save": "iptables 1.3.5 syntax (`-d ! X`)",
    "configs_serverfault__759927.txt": "names an ipset (whitelist) that does not exist",
}
# ... of which these load once rewritten in a temporary copy that means the same to the kernel
OLD_NEGATION = re.compile(r"(?<=\s)(-[sdiop]|--[a-z-]+) ! ")
REWRITE = {"configs_ugent__iptables-save": lambda text: OLD_NEGATION.sub(r"! \1 ", text)}
MANY_UNKNOWN_EXAMPLES = {"tor-owner-ports.rules": "OUTPUT accepts by socket owner"}


def _prove(sources, ruleset: Ruleset, flows=None, name="ruleset"):
    """Predict and observe; return (compared, unknown, mismatches)."""
    engine = Engine(ruleset)  # the probe exchanges two datagrams each way, as the engine predicts
    flows = list(flows if flows is not None else default_flows(ruleset))
    predicted = [engine.evaluate(f) for f in flows]
    observed = observe_files_detailed(sources, flows, timeout=TIMEOUT)
    compared = unknown = 0
    mismatches = []
    for result, seen in zip(predicted, observed):
        if seen["observed"] not in ("delivered", "blocked"):
            continue
        # the probe's clients run as root: a verdict that depends on the user is root's here
        predicted = result.probed()
        if predicted == UNKNOWN:
            unknown += 1
            continue
        if any(step.verdict in ("dnat", "redirect") for step in result.steps):
            # the probe's server listens on the flow's own address, not where nat sends it
            continue
        compared += 1
        if predicted != seen["observed"]:
            mismatches.append(
                (
                    result.flow.label(),
                    predicted,
                    seen["observed"],
                    seen.get("reason"),
                    [
                        f"{s.packet} {s.hook} {s.table}/{s.chain} {s.verdict} {s.rule.text if s.rule else ''}"
                        for s in result.steps
                    ],
                )
            )
    print(f"{name}: {len(flows)} flows, {compared} compared with the kernel, {unknown} unknown")
    return compared, unknown, mismatches


def _corpus_files(corpus: Path):
    return sorted(p for p in corpus.iterdir() if p.is_file() and p.name != "README.md")


def _corpus_ids():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
    if not root.is_dir():
        return []
    return [p.name for p in _corpus_files(root)]


def _example_ids():
    root = Path(__file__).resolve().parents[2] / "rules" / "examples"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.suffix in (".rules", ".v4", ".v6", ".nft"))


# --------------------------------------------------------------------------- corpus and examples


@pytest.mark.parametrize("name", _corpus_ids())
def test_engine_matches_kernel_on_corpus(corpus_dir, name):
    path = corpus_dir / name
    if name in NOT_LOADABLE:
        from lbfw.errors import InputError
        from lbfw.sandbox.netns import Namespace
        from lbfw.sandbox.verify import load_sources

        with Namespace() as ns, pytest.raises(InputError):
            load_sources(ns, [str(path)])
        if name not in REWRITE:
            return
    if name in REWRITE:
        # the engine reads the original; the kernel gets the same rules in today's syntax
        ruleset = read_sources([str(path)])
        sources = [RulesetText(name=name, text=REWRITE[name](path.read_text()), format="iptables-save")]
    elif name == CHAIR:
        # censored MACs (XX:XX:...) are rejected by iptables-restore: a dummy MAC in a copy
        text = path.read_text().replace("XX:XX:XX:XX:XX:XX", DUMMY_MAC)
        ruleset = Ruleset(tables=iptables.parse(text, name, family="ip"))
        sources = [RulesetText(name=name, text=text, format="iptables-save")]
    else:
        ruleset = read_sources([str(path)])
        sources = [str(path)]
        text = path.read_text()
        if re.search(r"[ \t]+\n", text) and "nft" not in name:
            # trailing spaces after COMMIT make iptables-restore fail; the reader takes them
            sources = [RulesetText(name=name, text=re.sub(r"[ \t]+\n", "\n", text), format="iptables-save")]
    compared, unknown, mismatches = _prove(sources, ruleset, name=name)
    assert not mismatches, mismatches[:5]
    assert compared > 0
    if name not in MANY_UNKNOWN:
        assert unknown <= (compared + unknown) // 4, f"{unknown} unknown flows"


@pytest.mark.parametrize("name", _example_ids())
def test_engine_matches_kernel_on_examples(examples_dir, name):
    path = examples_dir / name
    ruleset = read_sources([str(path)])
    compared, unknown, mismatches = _prove([str(path)], ruleset, name=name)
    assert not mismatches, mismatches[:5]
    assert compared > 0
    if name not in MANY_UNKNOWN_EXAMPLES:
        assert unknown == 0


# --------------------------------------------------------------------------- targeted semantics


def _ipt(text: str, flows, family="ip"):
    text = textwrap.dedent(text).lstrip()
    fmt = "ip6tables-save" if family == "ip6" else "iptables-save"
    ruleset = Ruleset(tables=iptables.parse(text, "targeted", family=family))
    engine = Engine(ruleset)  # the probe exchanges two datagrams each way, as the engine predicts
    predicted = [engine.evaluate(f).verdict for f in flows]
    observed = observe_files_detailed([RulesetText(name="targeted", text=text, format=fmt)], flows, timeout=TIMEOUT)
    return predicted, [o["observed"] for o in observed]


def _nft(text: str, flows):
    text = textwrap.dedent(text).lstrip()
    ruleset = read_sources_text(text)
    engine = Engine(ruleset)  # the probe exchanges two datagrams each way, as the engine predicts
    predicted = [engine.evaluate(f).verdict for f in flows]
    observed = observe_files_detailed(
        [RulesetText(name="targeted.nft", text=text, format="nft")], flows, timeout=TIMEOUT
    )
    return predicted, [o["observed"] for o in observed]


def read_sources_text(text: str) -> Ruleset:
    from lbfw.read.nft import files as nft_files

    return Ruleset(tables=nft_files.read(text, "targeted.nft"))


F_DEF_1 = Flow("tcp", "127.0.0.1", 5001)
F_DEF_53 = Flow("tcp", "127.0.0.53", 5001)
F_BOUND_2 = Flow("tcp", "127.0.0.1", 5001, "127.0.0.2")
U_DEF_53 = Flow("udp", "127.0.0.53", 5001)
U_BOUND_2 = Flow("udp", "127.0.0.1", 5001, "127.0.0.2")
FLOWS4 = [F_DEF_1, F_DEF_53, F_BOUND_2, U_DEF_53, U_BOUND_2, Flow("udp", "127.0.0.1", 5001)]


def test_goto_fall_through_returns_to_the_callers_caller():
    # INPUT -j A; A -g B; B falls through -> back to INPUT after the jump, where DROP waits;
    # the ACCEPT left in A after the goto is never reached.
    predicted, observed = _ipt(
        """
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :A - [0:0]
        :B - [0:0]
        -A INPUT -s 127.0.0.2/32 -j ACCEPT
        -A INPUT -j A
        -A INPUT -p udp -j DROP
        -A A -g B
        -A A -j ACCEPT
        -A B -d 127.0.0.53/32 -j ACCEPT
        COMMIT
        """,
        FLOWS4,
    )
    assert predicted == observed
    assert predicted == ["delivered", "delivered", "delivered", "blocked", "blocked", "blocked"]


def test_goto_from_base_chain_falls_to_policy_and_return_in_base_chain_is_policy():
    predicted, observed = _ipt(
        """
        *filter
        :INPUT DROP [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :B - [0:0]
        -A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
        -A INPUT -p udp -j RETURN
        -A INPUT -g B
        -A INPUT -j ACCEPT
        -A B -d 127.0.0.53/32 -j ACCEPT
        COMMIT
        """,
        FLOWS4,
    )
    assert predicted == observed
    assert predicted == ["blocked", "delivered", "blocked", "blocked", "blocked", "blocked"]


def test_second_table_with_drop_policy_on_the_same_hook_still_drops():
    predicted, observed = _nft(
        """
        table inet filter {
            chain input { type filter hook input priority 0; policy accept; iif "lo" accept; }
        }
        table ip other {
            chain input { type filter hook input priority 10; policy drop;
                ip saddr 127.0.0.1 ip daddr 127.0.0.1 accept; ct state established accept; }
        }
        """,
        FLOWS4,
    )
    assert predicted == observed
    assert predicted == ["delivered", "blocked", "blocked", "blocked", "blocked", "delivered"]


def test_narrow_accept_masked_by_established():
    predicted, observed = _ipt(
        """
        *filter
        :INPUT DROP [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A INPUT -s 127.0.0.1/32 -j ACCEPT
        COMMIT
        """,
        FLOWS4,
    )
    assert predicted == observed
    assert predicted == ["delivered", "delivered", "blocked", "delivered", "blocked", "delivered"]


def test_output_drop_policy_with_narrow_destination_accept():
    predicted, observed = _ipt(
        """
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT DROP [0:0]
        -A OUTPUT -d 127.0.0.1/32 -j ACCEPT
        COMMIT
        """,
        FLOWS4,
    )
    assert predicted == observed
    # 127.0.0.53's SYN is dropped on the way out (EPERM); so is the reply to a client bound to .2
    assert predicted == ["delivered", "blocked", "blocked", "blocked", "blocked", "delivered"]


def test_notrack_in_raw_output_makes_packets_untracked_but_not_in_raw_prerouting():
    flows = [
        Flow("tcp", "127.0.0.1", 5001),
        Flow("udp", "127.0.0.1", 5002),
        Flow("tcp", "127.0.0.1", 5003),
        Flow("udp", "127.0.0.1", 5003),
    ]
    # 5001/5002: notrack on OUTPUT: INPUT sees UNTRACKED (accepted), never NEW.
    # 5003: notrack on PREROUTING has no effect on lo: INPUT sees NEW and drops it.
    predicted, observed = _ipt(
        """
        *raw
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A PREROUTING -i lo -j CT --notrack
        -A OUTPUT -p tcp --dport 5001 -j CT --notrack
        -A OUTPUT -p tcp --sport 5001 -j CT --notrack
        -A OUTPUT -p udp --dport 5002 -j NOTRACK
        -A OUTPUT -p udp --sport 5002 -j NOTRACK
        COMMIT
        *filter
        :INPUT DROP [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT
        -A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
        COMMIT
        """,
        flows,
    )
    assert predicted == observed
    assert predicted == ["delivered", "delivered", "blocked", "blocked"]


def test_raw_output_sees_no_conntrack_entry_yet():
    # before conntrack (-200) every locally generated packet is INVALID in raw OUTPUT
    predicted, observed = _ipt(
        """
        *raw
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A OUTPUT -p tcp -m conntrack --ctstate INVALID -j DROP
        -A PREROUTING -p udp -m conntrack --ctstate NEW -j DROP
        COMMIT
        """,
        [Flow("tcp", "127.0.0.1", 5001), Flow("udp", "127.0.0.1", 5001)],
    )
    assert predicted == observed
    assert predicted == ["blocked", "blocked"]


def test_dnat_in_nat_output_changes_what_later_hooks_see():
    # 127.0.0.5:80 is DNATed to 127.0.0.6:5001 on OUTPUT: INPUT accepts the request by its new
    # address and the reply by its original one. nat PREROUTING would send everything to
    # 127.0.0.9:9, but the kernel does not traverse it for loopback traffic (127.0.0.5:81 works).
    flows = [Flow("tcp", "127.0.0.5", 80), Flow("tcp", "127.0.0.6", 5001), Flow("tcp", "127.0.0.5", 81)]
    text = """
        *nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        -A OUTPUT -d 127.0.0.5/32 -p tcp --dport 80 -j DNAT --to-destination 127.0.0.6:5001
        -A PREROUTING -p tcp -j DNAT --to-destination 127.0.0.9:9
        COMMIT
        *filter
        :INPUT DROP [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -d 127.0.0.6/32 -p tcp --dport 5001 -j ACCEPT
        -A INPUT -s 127.0.0.6/32 -p tcp --sport 5001 -j ACCEPT
        -A INPUT -s 127.0.0.5/32 -p tcp --sport 80 -j ACCEPT
        -A INPUT -d 127.0.0.5/32 -p tcp --dport 81 -j ACCEPT
        -A INPUT -s 127.0.0.5/32 -p tcp --sport 81 -j ACCEPT
        COMMIT
        """
    ruleset = Ruleset(tables=iptables.parse(textwrap.dedent(text).lstrip(), "nat", family="ip"))
    engine = Engine(ruleset)  # the probe exchanges two datagrams each way, as the engine predicts
    dnat = engine.evaluate(flows[0])
    # the server on 127.0.0.5:80 never sees it: redirected to where the kernel delivers it
    assert dnat.verdict == "redirected" and dnat.redirected_to == "127.0.0.6:5001"
    assert [s.note for s in dnat.steps if s.verdict == "dnat"] == ["dnat to 127.0.0.6"]
    # the reply reaches INPUT with the original source (de-NATed on POSTROUTING)
    reply_input = [s for s in dnat.steps if s.packet == "reply" and s.hook == "input" and s.verdict == "accept"]
    assert reply_input and "127.0.0.5" in reply_input[0].rule.text
    # the real kernel: a client connecting to 127.0.0.5:80 reaches a server on 127.0.0.6:5001
    from lbfw.sandbox.netns import Namespace
    from lbfw.sandbox.verify import load_sources

    with Namespace() as ns:
        load_sources(ns, [RulesetText(name="nat", text=textwrap.dedent(text).lstrip(), format="iptables-save")])
        proc = ns.run(["python3", "-c", _DNAT_PROBE], check=False, timeout=20)
    # port 80 reaches the server at the new address; nat PREROUTING (DNAT everything to
    # 127.0.0.9:9) is not traversed on lo, so port 81 reaches its own server
    assert proc.stdout.split() == ["127.0.0.6:5001", "127.0.0.5:81"], proc.stderr
    assert engine.evaluate(flows[2]).verdict == "delivered"
    assert engine.evaluate(Flow("tcp", "127.0.0.6", 5001)).verdict == "delivered"


# Where the kernel delivers a client's connection to 127.0.0.5:80 and :81: the address of the
# server that accepted it and read its byte, or "blocked". Servers listen at the address DNAT
# picks (127.0.0.6:5001), at 127.0.0.5:81, and at 127.0.0.5:80 itself.
_DNAT_PROBE = """
import select, socket
servers = []
for addr in (("127.0.0.6", 5001), ("127.0.0.5", 81), ("127.0.0.5", 80)):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr); s.listen(); servers.append(s)
for port in (80, 81):
    c = socket.socket(); c.settimeout(0.6)
    try:
        c.connect(("127.0.0.5", port)); c.send(b"x")
        ready, _, _ = select.select(servers, [], [], 1)
        conn = ready[0].accept()[0]; conn.settimeout(1); conn.recv(1)
        print("%s:%d" % ready[0].getsockname())
    except (OSError, IndexError):
        print("blocked")
    c.close()
"""


def test_ip6_loopback_flows():
    flows = [Flow("tcp", "::1", 5001), Flow("udp", "::1", 5001), Flow("tcp", "::1", 5002, "::1")]
    predicted, observed = _ipt(
        """
        *filter
        :INPUT DROP [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -s ::1/128 -p tcp -j ACCEPT
        -A INPUT -m conntrack --ctstate ESTABLISHED -p udp -j ACCEPT
        COMMIT
        """,
        flows,
        family="ip6",
    )
    assert predicted == observed
    assert predicted == ["delivered", "blocked", "delivered"]


def test_nft_vmap_iifname_and_goto():
    predicted, observed = _nft(
        """
        table inet f {
            chain input { type filter hook input priority 0; policy drop;
                ct state established accept
                ip saddr vmap { 127.0.0.1 : goto narrow, 127.0.0.2 : drop }
                meta nfproto ipv6 iifname "lo" accept
            }
            chain narrow { tcp dport 5001 accept; }
        }
        """,
        FLOWS4 + [Flow("tcp", "::1", 5001), Flow("udp", "127.0.0.1", 5001)],
    )
    assert predicted == observed


def test_nft_fib_reverse_path_filter_and_tcp_flags():
    flows = [
        Flow("tcp", "127.0.0.1", 5001),
        Flow("tcp", "127.0.0.53", 5001, "127.0.0.2"),
        Flow("tcp", "127.0.0.1", 5002),
        Flow("udp", "127.0.0.1", 5001),
        Flow("tcp", "::1", 5001),
    ]
    predicted, observed = _nft(
        """
        table inet fw {
            chain pre { type filter hook prerouting priority -290; policy accept;
                fib saddr . iif oif missing drop
            }
            chain input { type filter hook input priority 0; policy drop;
                tcp flags & (fin|syn|rst|ack) == syn tcp dport 5001 accept
                tcp flags & (syn|ack) == ack accept
                tcp flags & (syn|ack) == syn|ack accept
                udp dport 5001 accept
            }
        }
        """,
        flows,
    )
    assert predicted == observed
    assert predicted == ["delivered", "delivered", "blocked", "blocked", "delivered"]


def test_legacy_and_nft_tables_on_the_same_hook_both_decide():
    legacy = textwrap.dedent("""
        *filter
        :INPUT DROP [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -s 127.0.0.1/32 -j ACCEPT
        -A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
        COMMIT
        """).lstrip()
    nft = textwrap.dedent("""
        table inet filter {
            chain input { type filter hook input priority 0; policy drop; iif "lo" accept; }
            chain output { type filter hook output priority 0; policy accept; udp dport 5002 drop; }
        }
        """).lstrip()
    from lbfw.read.nft import files as nft_files

    ruleset = Ruleset(tables=iptables.parse(legacy, "rules.v4", family="ip") + nft_files.read(nft, "fw.nft"))
    flows = FLOWS4 + [Flow("udp", "127.0.0.1", 5002), Flow("tcp", "::1", 5001)]
    engine = Engine(ruleset)  # the probe exchanges two datagrams each way, as the engine predicts
    predicted = [engine.evaluate(f).verdict for f in flows]
    observed = [
        o["observed"]
        for o in observe_files_detailed(
            [
                RulesetText(name="rules.v4", text=legacy, format="iptables-save", backend="legacy"),
                RulesetText(name="fw.nft", text=nft, format="nft"),
            ],
            flows,
            timeout=TIMEOUT,
        )
    ]
    assert predicted == observed
    assert predicted == [
        "delivered",
        "delivered",
        "blocked",
        "delivered",
        "blocked",
        "delivered",
        "blocked",
        "delivered",
    ]


_UDP_TWICE = """
import socket
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(("127.0.0.53", 5001)); srv.settimeout(0.5)
cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); cli.settimeout(0.5)
cli.sendto(b"1", ("127.0.0.53", 5001)); data, peer = srv.recvfrom(8); srv.sendto(b"r", peer)
print("reply" if cli.recv(8) == b"r" else "no-reply")
cli.sendto(b"2", ("127.0.0.53", 5001))
try:
    srv.recvfrom(8); print("second-delivered")
except OSError:
    print("second-dropped")
"""


def test_udp_followup_datagram_is_established_in_the_original_direction():
    text = textwrap.dedent("""
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -p udp -m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL -j DROP
        COMMIT
        """).lstrip()
    ruleset = Ruleset(tables=iptables.parse(text, "udp", family="ip"))
    flow = Flow("udp", "127.0.0.53", 5001)
    assert Engine(ruleset).evaluate(flow).verdict == "blocked"
    assert Engine(ruleset).evaluate(flow).deciding.packet == "ack"
    assert Engine(ruleset, udp_followup=False).evaluate(flow).verdict == "delivered"
    from lbfw.sandbox.netns import Namespace
    from lbfw.sandbox.verify import load_sources

    with Namespace() as ns:
        load_sources(ns, [RulesetText(name="udp", text=text, format="iptables-save")])
        proc = ns.run(["python3", "-c", _UDP_TWICE], check=False, timeout=20)
        observed = observe(ns, [flow], timeout=1.0)
    assert proc.stdout.split() == ["reply", "second-dropped"], proc.stderr
    # the sandbox's probe sends the second datagram too, so `lbfw verify` agrees with the engine
    assert observed == ["blocked"]


def test_server_answer_after_an_untracked_handshake_is_picked_up_as_new():
    # measured: with the SYN notracked, the SYN-ACK is INVALID but the server's later packets are NEW
    predicted, observed = _ipt(
        """
        *raw
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A OUTPUT -p tcp --dport 5001 -j CT --notrack
        COMMIT
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A OUTPUT -p tcp --sport 5001 -m conntrack --ctstate NEW -j DROP
        -A OUTPUT -p tcp --sport 5002 -m conntrack --ctstate INVALID -j DROP
        COMMIT
        """,
        [Flow("tcp", "127.0.0.1", 5001), Flow("tcp", "127.0.0.1", 5002)],
    )
    assert predicted == observed
    assert predicted == ["blocked", "delivered"]


def test_ack_before_conntrack_saw_the_syn_ack_is_invalid():
    # the SYN-ACK is notracked: conntrack stays in SYN_SENT and calls the client's ACK INVALID
    predicted, observed = _ipt(
        """
        *raw
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A OUTPUT -p tcp --sport 5001 -j CT --notrack
        -A OUTPUT -p tcp --sport 5002 -j CT --notrack
        COMMIT
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -p tcp --dport 5001 -m conntrack --ctstate INVALID -j DROP
        -A INPUT -p tcp --dport 5002 -m conntrack --ctstate NEW -j ACCEPT
        -A INPUT -p tcp --dport 5002 -j DROP
        COMMIT
        """,
        [Flow("tcp", "127.0.0.1", 5001), Flow("tcp", "127.0.0.1", 5002)],
    )
    assert predicted == observed
    assert predicted == ["blocked", "blocked"]


def test_nft_named_concat_set_interval_set_and_ct_state_vmap():
    predicted, observed = _nft(
        """
        table inet f {
            set allowed { type ipv4_addr . inet_service; elements = { 127.0.0.1 . 5001, 127.0.0.53 . 5002 } }
            set loopish { type ipv4_addr; flags interval; elements = { 127.0.0.2-127.0.0.9 } }
            chain input { type filter hook input priority 0; policy drop;
                ct state vmap { established : accept, related : accept, invalid : drop }
                ip daddr . tcp dport @allowed accept
                ip saddr @loopish udp dport 5001 accept
                ip6 saddr ::1 tcp dport 5001 accept
            }
        }
        """,
        FLOWS4
        + [
            Flow("tcp", "127.0.0.53", 5002),
            Flow("tcp", "127.0.0.53", 5001),
            Flow("tcp", "::1", 5001),
            Flow("udp", "::1", 5001),
        ],
    )
    assert predicted == observed
    assert predicted == [
        "delivered",
        "blocked",
        "delivered",
        "blocked",
        "delivered",
        "blocked",
        "delivered",
        "blocked",
        "delivered",
        "blocked",
    ]


def test_multiport_either_port_wildcard_interface_and_ctstatus():
    predicted, observed = _ipt(
        """
        *filter
        :INPUT DROP [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -i l+ -p tcp -m multiport --ports 5001,6000 -j ACCEPT
        -A INPUT -i eth+ -j ACCEPT
        -A INPUT -p udp -m multiport ! --ports 5001 -j ACCEPT
        -A INPUT -p tcp --dport 5002 -m conntrack --ctstate NEW -j ACCEPT
        -A INPUT -p tcp -m conntrack --ctstatus SEEN_REPLY -j ACCEPT
        COMMIT
        """,
        [
            Flow("tcp", "127.0.0.1", 5001),
            Flow("tcp", "127.0.0.1", 6000),
            Flow("tcp", "127.0.0.1", 7000),
            Flow("udp", "127.0.0.53", 5001),
            Flow("udp", "127.0.0.1", 5353),
            Flow("tcp", "127.0.0.53", 5002),
        ],
    )
    assert predicted == observed
    assert predicted == ["delivered", "delivered", "blocked", "blocked", "delivered", "delivered"]


def test_nft_dnat_in_a_nat_output_chain():
    text = textwrap.dedent("""
        table ip nat {
            chain out { type nat hook output priority -100; policy accept;
                ip daddr 127.0.0.5 tcp dport 80 dnat to 127.0.0.6:5001
            }
            chain pre { type nat hook prerouting priority -100; policy accept;
                tcp dport 81 dnat to 127.0.0.9:9
            }
        }
        table ip filter {
            chain input { type filter hook input priority 0; policy drop;
                ip daddr 127.0.0.6 tcp dport 5001 accept
                ip saddr 127.0.0.5 tcp sport 80 accept
                ip daddr 127.0.0.5 tcp dport 81 accept
                ip saddr 127.0.0.5 tcp sport 81 accept
            }
        }
        """).lstrip()
    ruleset = read_sources_text(text)
    engine = Engine(ruleset)
    dnat = engine.evaluate(Flow("tcp", "127.0.0.5", 80))
    assert dnat.verdict == "redirected" and dnat.redirected_to == "127.0.0.6:5001"
    assert dnat.to_json()["redirected_to"] == "127.0.0.6:5001"
    assert [s.note for s in dnat.steps if s.verdict == "dnat"] == ["dnat to 127.0.0.6"]
    # nat prerouting is not traversed on lo: 127.0.0.5:81 is not sent to 127.0.0.9:9
    assert engine.evaluate(Flow("tcp", "127.0.0.5", 81)).verdict == "delivered"
    from lbfw.sandbox.netns import Namespace
    from lbfw.sandbox.verify import load_sources

    with Namespace() as ns:
        load_sources(ns, [RulesetText(name="nat.nft", text=text, format="nft")])
        proc = ns.run(["python3", "-c", _DNAT_PROBE], check=False, timeout=20)
    assert proc.stdout.split() == ["127.0.0.6:5001", "127.0.0.5:81"], proc.stderr

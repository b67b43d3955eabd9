"""LB003 narrow-loopback-antispoofing: a drop of 127.0.0.1 from other interfaces that spares the rest of
127.0.0.0/8.

Bad examples must fire, good ones must stay quiet: rules/examples by name, then small rulesets
read by the real parser and judged by the real engine. The kernel's side (frames with loopback
sources arriving on a veth with route_localnet on) is tests/kernel/test_checks_kernel_antispoof.py."""

from __future__ import annotations

import pytest

from lbfw.fix.plan import plan_fixes
from lbfw.model import HostFacts
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources

from .support import EXAMPLES_DIR, audit, audit_example, examples_declaring, filt, ids

CHECK = "LB003"
# rules/examples that prove it (their `# must-fire:` / `# must-stay-quiet:` headers say so too).
MUST_FIRE = [
    "antispoof-narrow.rules",
    "nft-antispoof-narrow.nft",
]
MUST_STAY_QUIET = [
    "cis.rules",
    "docker-embedded-dns.rules",
    "docker-published-localhost.rules",
    "input-narrow-accept-established.rules",
    "input-narrow-accept-lo.rules",
    "input-narrow-accept.rules",
    "ip6-loopback.v6",
    "ip6-no-loopback.v6",
    "kube-proxy-firewall.rules",
    "lo-accept.rules",
    "nft-cis.nft",
    "nft-define.nft",
    "nft-firewalld-owned.nft",
    "nft-iif-lo.nft",
    "nft-named-set.nft",
    "nft-named-vmap.nft",
    "nft-saddr-narrow.nft",
    "nft-suppressed.nft",
    "nft-two-tables.nft",
    "nft-vmap.nft",
    "output-narrow-accept.rules",
    "suppressed.rules",
    "tor-owner-ports.rules",
    "user-chain-narrow-accept.rules",
]


def test_the_examples_named_here_are_those_whose_headers_name_it():
    assert examples_declaring(CHECK) == (set(MUST_FIRE), set(MUST_STAY_QUIET))


@pytest.mark.parametrize("name", MUST_FIRE)
def test_fires_on_example(name):
    assert CHECK in ids(audit_example(name))


@pytest.mark.parametrize("name", MUST_STAY_QUIET)
def test_stays_quiet_on_example(name):
    assert CHECK not in ids(audit_example(name))


@pytest.mark.parametrize(
    "bad",
    [
        filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -s 127.0.0.1/32 -j DROP"),
        filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -d 127.0.0.1/32 -j DROP"),
        filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -s 127.0.0.1/32 -j REJECT"),
    ],
)
def test_fires_on_a_narrow_antispoofing_drop(bad):
    found = audit(bad)
    assert ids(found) == ["LB003"] and found[0].severity == "warning" and found[0].line == 6


def test_route_localnet_makes_it_an_error():
    text = filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -s 127.0.0.1/32 -j DROP")
    hot = audit(text, host=HostFacts(route_localnet={"all": 1, "eth0": 1}, local_127_route=True))
    lb003 = [f for f in hot if f.check == "LB003"]
    assert lb003[0].severity == "error" and "route_localnet" in lb003[0].message
    assert "LB005" not in ids(hot)  # policy DROP: the network cannot reach 127.0.0.1 services anyway


def test_through_a_log_and_drop_chain():
    text = filt(
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT ! -i lo -s 127.0.0.1/32 -j LOG_DROP",
        '-A LOG_DROP -j LOG --log-prefix "spoof "',
        "-A LOG_DROP -j DROP",
        chains=("LOG_DROP",),
    )
    assert [(f.check, f.line) for f in audit(text)] == [("LB003", 7)]


@pytest.mark.parametrize(
    "good",
    [
        filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP"),
        # Docker's "DROP REMOTE LOOPBACK" for one published port is not anti-spoofing
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8080 -j DROP\nCOMMIT\n",
    ],
)
def test_quiet_for_whole_block_and_port_specific_drops(good):
    assert ids(audit(good)) == []


def test_its_fix_widens_to_the_range_even_in_interface_style():
    ruleset = read_sources([str(EXAMPLES_DIR / "antispoof-narrow.rules")])
    findings, _ = audit_ruleset(ruleset)
    plan = plan_fixes(ruleset, findings, style="interface")
    assert [(e.checks, e.new) for e in plan.edits] == [(("LB003",), "-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP")]

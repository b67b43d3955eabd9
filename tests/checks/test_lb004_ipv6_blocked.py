"""LB004 ipv6-loopback-blocked: the rule or policy that drops ::1 traffic.

Bad examples must fire, good ones must stay quiet: rules/examples by name, then small rulesets
read by the real parser and judged by the real engine."""

from __future__ import annotations

import pytest

from .support import audit, audit_example, examples_declaring, filt, ids

CHECK = "LB004"
# rules/examples that prove it (their `# must-fire:` / `# must-stay-quiet:` headers say so too).
MUST_FIRE = [
    "ip6-no-loopback.v6",
]
MUST_STAY_QUIET = [
    "antispoof-narrow.rules",
    "cis.rules",
    "docker-embedded-dns.rules",
    "docker-published-localhost.rules",
    "input-narrow-accept-established.rules",
    "input-narrow-accept-lo.rules",
    "input-narrow-accept.rules",
    "ip6-loopback.v6",
    "kube-proxy-firewall.rules",
    "lo-accept.rules",
    "nft-antispoof-narrow.nft",
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


def test_fires_when_only_conntrack_is_accepted():
    found = audit(filt("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"), family="ip6")
    assert ids(found) == ["LB004"] and found[0].severity == "error"
    assert {fl.server for fl in found[0].flows} == {"::1"}


@pytest.mark.parametrize("good", [filt("-A INPUT -i lo -j ACCEPT"), filt("-A INPUT -s ::1/128 -j ACCEPT")])
def test_quiet_with_lo_or_the_whole_ipv6_loopback(good):
    # ::1/128 is all of IPv6 loopback: not the narrow-address mistake
    assert ids(audit(good, family="ip6")) == []

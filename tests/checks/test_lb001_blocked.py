"""LB001 loopback-blocked: the rule or policy that drops IPv4 loopback flows, with the flows.

Bad examples must fire, good ones must stay quiet: rules/examples by name, then small rulesets
read by the real parser and judged by the real engine."""

from __future__ import annotations

import pytest

from .support import audit, audit_example, examples_declaring, filt, ids

CHECK = "LB001"
# rules/examples that prove it (their `# must-fire:` / `# must-stay-quiet:` headers say so too).
MUST_FIRE = [
    "input-narrow-accept-established.rules",
    "input-narrow-accept-lo.rules",
    "input-narrow-accept.rules",
    "nft-define.nft",
    "nft-firewalld-owned.nft",
    "nft-named-set.nft",
    "nft-named-vmap.nft",
    "nft-saddr-narrow.nft",
    "nft-two-tables.nft",
    "nft-vmap.nft",
    "output-narrow-accept.rules",
    "tor-owner-ports.rules",
    "user-chain-narrow-accept.rules",
]
MUST_STAY_QUIET = [
    "antispoof-narrow.rules",
    "cis.rules",
    "docker-embedded-dns.rules",
    "docker-published-localhost.rules",
    "ip6-loopback.v6",
    "ip6-no-loopback.v6",
    "kube-proxy-firewall.rules",
    "lo-accept.rules",
    "nft-antispoof-narrow.nft",
    "nft-cis.nft",
    "nft-iif-lo.nft",
    "nft-suppressed.nft",  # its drop policy is suppressed at the policy line
    "suppressed.rules",  # its DROP policies are suppressed by a comment line above them
]


def test_the_examples_named_here_are_those_whose_headers_name_it():
    assert examples_declaring(CHECK) == (set(MUST_FIRE), set(MUST_STAY_QUIET))


@pytest.mark.parametrize("name", MUST_FIRE)
def test_fires_on_example(name):
    assert CHECK in ids(audit_example(name))


@pytest.mark.parametrize("name", MUST_STAY_QUIET)
def test_stays_quiet_on_example(name):
    assert CHECK not in ids(audit_example(name))


def test_names_policy_and_rule():
    found = audit(filt("-A INPUT -s 127.0.0.2 -j DROP", "-A INPUT -s 127.0.0.1 -j ACCEPT", policy="ACCEPT"))
    lb001 = [f for f in found if f.check == "LB001"]
    assert [f.line for f in lb001] == [5]
    assert {fl.client for fl in lb001[0].flows} == {"127.0.0.2"}
    assert lb001[0].rule is not None and lb001[0].severity == "error"


def test_a_drop_policy_without_any_loopback_accept_is_named():
    found = [f for f in audit(filt("-A INPUT -p tcp --dport 22 -j ACCEPT")) if f.check == "LB001"]
    assert len(found) == 1 and found[0].rule is None and found[0].chain == "INPUT"
    assert "The policy DROP of filter INPUT" in found[0].message


@pytest.mark.parametrize(
    "good",
    [
        filt("-A INPUT -i lo -j ACCEPT"),
        filt("-A INPUT -s 127.0.0.0/8 -j ACCEPT"),
        filt(policy="ACCEPT"),
    ],
)
def test_quiet_when_loopback_is_accepted(good):
    assert "LB001" not in ids(audit(good))


def test_second_table_on_the_same_hook_still_drops():
    text = (
        filt("-A INPUT -i lo -j ACCEPT") + "*security\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n"
        ":OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    )
    found = audit(text)
    assert ids(found) == ["LB001"] and found[0].table == "security"


def test_explains_an_accept_in_another_table_does_not_end_the_packet():
    findings = audit_example("nft-two-tables.nft")
    assert [(f.check, f.table, f.chain) for f in findings] == [("LB001", "extra", "input")]
    assert "accepted first by inet filter input" in findings[0].message
    assert "accept ends only its own base chain" in findings[0].message


def test_an_owner_restricted_lockdown_is_a_deliberate_note():
    lb001 = [f for f in audit_example("tor-owner-ports.rules") if f.check == "LB001"]
    assert lb001 and {f.severity for f in lb001} == {"note"}
    deliberate = [f for f in lb001 if f.deliberate]
    assert [f.line for f in deliberate] == [17] and "--uid-owner 0" in deliberate[0].deliberate
    # the undecidable owner matches are notes of another kind: not judged deliberate
    assert all("cannot tell" in f.message for f in lb001 if not f.deliberate)

"""LB002 narrow-loopback-accept: 127.0.0.1 accepted where the interface or 127.0.0.0/8 was meant.

Bad examples must fire, good ones must stay quiet: rules/examples by name, then small rulesets
read by the real parser and judged by the real engine."""

from __future__ import annotations

import pytest

from lbfw.fix.plan import plan_fixes
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources

from .support import EXAMPLES_DIR, audit, audit_example, examples_declaring, filt, ids

CHECK = "LB002"
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
    "nft-suppressed.nft",
    "nft-two-tables.nft",
    "suppressed.rules",
]


def test_the_examples_named_here_are_those_whose_headers_name_it():
    assert examples_declaring(CHECK) == (set(MUST_FIRE), set(MUST_STAY_QUIET))


@pytest.mark.parametrize("name", MUST_FIRE)
def test_fires_on_example(name):
    assert CHECK in ids(audit_example(name))


@pytest.mark.parametrize("name", MUST_STAY_QUIET)
def test_stays_quiet_on_example(name):
    assert CHECK not in ids(audit_example(name))


def lb002(findings) -> list:
    return [f for f in findings if f.check == "LB002"]


@pytest.mark.parametrize("spelling", ["127.0.0.1", "127.0.0.1/32", "127.0.0.1/255.255.255.255"])
def test_fires_on_every_spelling_of_127_0_0_1(spelling):
    found = lb002(audit(filt(f"-A INPUT -s {spelling} -j ACCEPT")))
    assert len(found) == 1 and found[0].line == 5 and found[0].severity == "warning"
    assert "127.0.0.2" in {fl.client for fl in found[0].flows}


@pytest.mark.parametrize(
    "good",
    [
        filt("-A INPUT -i lo -j ACCEPT"),
        filt("-A INPUT -s 127.0.0.0/8 -j ACCEPT"),
        # a narrow address on another interface accepts no loopback traffic
        filt("-A INPUT -i eth0 -s 127.0.0.1 -j ACCEPT", "-A INPUT -i lo -j ACCEPT"),
        # sparing the whole block, or a negated interface, is correct
        filt("-A INPUT -p tcp --dport 80 ! -s 127.0.0.0/8 -j DROP", policy="ACCEPT"),
        filt("-A INPUT -p tcp --dport 80 ! -i lo -j DROP", policy="ACCEPT"),
    ],
)
def test_quiet_for_interface_and_whole_block(good):
    assert "LB002" not in ids(audit(good))


def test_reported_when_conntrack_masks_it_and_names_bound_clients():
    found = audit(
        filt("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-A INPUT -s 127.0.0.1/32 -j ACCEPT")
    )
    assert lb002(found), found
    clients = {fl.client for fl in lb002(found)[0].flows}
    servers = {fl.server for fl in lb002(found)[0].flows if fl.client is None}
    assert clients == {"127.0.0.2"}  # replies from .53 now pass as ESTABLISHED
    assert servers == set()
    assert "LB001" in ids(found)


def test_through_a_user_chain_both_ways():
    into = audit(filt("-A INPUT -s 127.0.0.1 -j LOOP", "-A LOOP -j ACCEPT", chains=("LOOP",)))
    assert [f.line for f in lb002(into)] == [6]
    inside = audit(filt("-A INPUT -j LOOP", "-A LOOP -s 127.0.0.1 -j ACCEPT", chains=("LOOP",)))
    assert [f.line for f in lb002(inside)] == [7]


def test_a_jump_counts_as_an_accept_only_when_the_chains_it_leads_to_accept():
    deep = audit(filt("-A INPUT -s 127.0.0.1 -j ONE", "-A ONE -j TWO", "-A TWO -j ACCEPT", chains=("ONE", "TWO")))
    assert [f.line for f in lb002(deep)] == [7] and "jump to ONE, which accepts" in lb002(deep)[0].message
    logging = audit(filt("-A INPUT -s 127.0.0.1 -j LOGONLY", "-A LOGONLY -j LOG", chains=("LOGONLY",)))
    assert lb002(logging) == []


def test_on_output_destination():
    found = audit(filt("-A OUTPUT -d 127.0.0.1/32 -j ACCEPT", policy="ACCEPT", output="DROP"))
    assert ids(found) == ["LB001", "LB002"]
    assert "destination" in lb002(found)[0].message and "-o lo" in lb002(found)[0].message


def test_owner_match_is_a_deliberate_note():
    found = audit(
        filt(
            "-A OUTPUT -d 127.0.0.1/32 -o lo -p tcp --dport 9050 -m owner --uid-owner 0 -j ACCEPT",
            "-A OUTPUT -j REJECT",
            policy="ACCEPT",
            output="DROP",
        )
    )
    assert {f.severity for f in found} == {"note"}
    assert "LB002" in ids(found) and "LB001" in ids(found)
    assert lb002(found)[0].deliberate == "-m owner --uid-owner 0"
    assert lb002(audit(filt("-A INPUT -s 127.0.0.1 -j ACCEPT")))[0].deliberate is None


def test_the_fixer_leaves_what_the_check_judged_deliberate():
    ruleset = read_sources([str(EXAMPLES_DIR / "tor-owner-ports.rules")])
    findings = [f for f in audit_ruleset(ruleset)[0] if f.check == "LB002"]
    plan = plan_fixes(ruleset, findings)
    assert findings and not plan.edits
    assert len(plan.refusals) == len(findings) and all("owner match" in r.why for r in plan.refusals)


def test_masked_by_an_earlier_output_drop_is_still_a_warning():
    found = audit(
        filt(
            "-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -i lo -j ACCEPT",
            "-A OUTPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -o lo -j ACCEPT",
            output="DROP",
        )
    )
    by_chain = {f.chain: f for f in lb002(found)}
    assert set(by_chain) == {"INPUT", "OUTPUT"}
    assert by_chain["INPUT"].severity == "warning" and "INPUT still drops" in by_chain["INPUT"].message
    assert by_chain["OUTPUT"].severity == "warning" and by_chain["OUTPUT"].flows


def test_redundant_narrow_accept_is_a_note():
    found = audit(filt("-A INPUT -s 127.0.0.1/32 -j ACCEPT", "-A INPUT -i lo -j ACCEPT"))
    assert [(f.check, f.severity) for f in found] == [("LB002", "note")]


def test_in_raw_is_not_blamed_for_a_filter_drop():
    text = (
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -s 127.0.0.1/32 -j ACCEPT\nCOMMIT\n"
        + filt("-A INPUT -i lo -j ACCEPT")
    )
    assert [(f.check, f.severity, f.table) for f in audit(text)] == [("LB002", "note", "raw")]


def test_partial_block_is_named_as_such():
    found = lb002(audit(filt("-A INPUT -s 127.0.0.0/24 -j ACCEPT")))
    assert found and "addresses 127.0.0.0-127.0.0.255 only, not all of 127.0.0.0/8" in found[0].message


def test_negated_drop_that_spares_127_0_0_1_alone():
    found = lb002(audit(filt("-A INPUT -p tcp --dport 80 ! -s 127.0.0.1/32 -j DROP", policy="ACCEPT")))
    assert len(found) == 1 and "only 127.0.0.1 is let through" in found[0].message
    assert {fl.client for fl in found[0].flows} == {"127.0.0.2"}

"""LB005 route-localnet-unprotected: route_localnet on and nothing drops 127.0.0.0/8 from the network.

It needs live host facts (the sysctl), which no file in rules/examples carries: so no example must
fire it; the bad and good cases are small rulesets with HostFacts given. The kernel's side is
tests/kernel/test_checks_kernel_antispoof.py."""

from __future__ import annotations

import pytest

from lbfw.model import HostFacts

from .support import audit, audit_example, examples_declaring, filt, ids

CHECK = "LB005"
# rules/examples that prove it (their `# must-fire:` / `# must-stay-quiet:` headers say so too).
MUST_FIRE: list[str] = []
MUST_STAY_QUIET = [
    "kube-proxy-firewall.rules",
]

ON = HostFacts(route_localnet={"all": 0, "eth0": 1}, local_127_route=True)


def test_the_examples_named_here_are_those_whose_headers_name_it():
    assert examples_declaring(CHECK) == (set(MUST_FIRE), set(MUST_STAY_QUIET))


@pytest.mark.parametrize("name", MUST_STAY_QUIET)
def test_stays_quiet_on_example(name):
    assert CHECK not in ids(audit_example(name))


@pytest.mark.parametrize(
    "bad",
    [
        filt("-A INPUT -i lo -j ACCEPT", policy="ACCEPT"),
        # a narrow destination drop leaves other loopback services (127.0.0.53) open
        filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -d 127.0.0.1/32 -j DROP", policy="ACCEPT"),
    ],
)
def test_fires_when_route_localnet_is_on_and_nothing_drops_127_8(bad):
    found = [f for f in audit(bad, host=ON) if f.check == CHECK]
    assert len(found) == 1 and found[0].severity == "error" and found[0].source == "live:host"
    assert "CVE-2020-8558" in found[0].message


def test_narrow_destination_drop_is_also_lb003():
    text = filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -d 127.0.0.1/32 -j DROP", policy="ACCEPT")
    assert ids(audit(text, host=HostFacts(route_localnet={"eth0": 1}, local_127_route=True))) == ["LB003", "LB005"]


@pytest.mark.parametrize(
    "good, host",
    [
        (filt("-A INPUT -i lo -j ACCEPT", "-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP", policy="ACCEPT"), ON),
        (
            filt("-A INPUT -i lo -j ACCEPT", policy="ACCEPT"),
            HostFacts(route_localnet={"all": 0, "default": 0}, local_127_route=True),
        ),
        # policy DROP: the network cannot reach 127.0.0.1 services anyway
        (filt("-A INPUT -i lo -j ACCEPT"), ON),
        (filt("-A INPUT -i lo -j ACCEPT", policy="ACCEPT"), None),
    ],
)
def test_quiet_when_127_8_is_dropped_or_route_localnet_off(good, host):
    assert CHECK not in ids(audit(good, host=host))


def test_kube_firewall_protects_against_route_localnet():
    from lbfw.analyze.engine import Engine
    from lbfw.checks import run_checks
    from lbfw.read import read_sources

    from .support import EXAMPLES_DIR, FLOWS

    rs = read_sources([str(EXAMPLES_DIR / "kube-proxy-firewall.rules")])
    rs.host = HostFacts(route_localnet={"all": 1, "eth0": 1}, local_127_route=True)
    engine = Engine(rs)
    assert run_checks(rs, engine, [engine.evaluate(f) for f in FLOWS]) == []

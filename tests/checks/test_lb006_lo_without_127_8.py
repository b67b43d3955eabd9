"""LB006 lo-without-127-8: lo carries 127.0.0.1/32 only, so the local 127.0.0.0/8 route is missing.

A fact of the live host (addresses and routes), which no ruleset file carries: no example in
rules/examples names it, so the bad and good cases are HostFacts given to a correct ruleset."""

from __future__ import annotations

import pytest

from lbfw.model import HostFacts

from .support import audit, examples_declaring, filt, ids

CHECK = "LB006"
LO_ACCEPTED = filt("-A INPUT -i lo -j ACCEPT")


def test_no_example_claims_it():
    assert examples_declaring(CHECK) == (set(), set())


def test_fires_when_lo_lacks_127_8():
    host = HostFacts(lo_addrs=("127.0.0.1/32", "::1/128"), local_127_route=False)
    found = audit(LO_ACCEPTED, host=host)
    assert ids(found) == [CHECK] and "127.0.0.1/32" in found[0].message and found[0].source == "live:host"
    assert found[0].severity == "warning"


@pytest.mark.parametrize(
    "host",
    [
        HostFacts(lo_addrs=("127.0.0.1/8", "::1/128"), local_127_route=True),
        HostFacts(),  # a file: nothing known about lo
        None,
    ],
)
def test_quiet_when_the_route_is_there_or_unknown(host):
    assert CHECK not in ids(audit(LO_ACCEPTED, host=host))

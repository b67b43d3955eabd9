"""LB007 loopback-diverted: destination NAT sends loopback traffic for other 127/8 addresses elsewhere."""

from __future__ import annotations

from .support import audit, examples_declaring, ids

CHECK = "LB007"

DNS_DNAT = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p udp --dport 80 -j DNAT --to-destination 127.0.0.1:5354
COMMIT
"""


def test_examples_do_not_claim_it():
    assert examples_declaring(CHECK) == (set(), set())


def test_fires_on_a_dnat_of_all_port_traffic_to_127_0_0_1():
    found = [f for f in audit(DNS_DNAT) if f.check == CHECK]
    assert len(found) == 1 and found[0].severity == "warning"
    assert "127.0.0.1:5354" in found[0].message and "127.0.0.53" in found[0].message
    assert found[0].rule.text.endswith("--to-destination 127.0.0.1:5354")
    assert all(fl.server != "127.0.0.1" for fl in found[0].flows)


def test_quiet_when_loopback_is_excluded():
    text = DNS_DNAT.replace("-A OUTPUT -p udp", "-A OUTPUT ! -d 127.0.0.0/8 -p udp")
    assert CHECK not in ids(audit(text))

"""A chain policy's findings are suppressed by `# lbfw: ignore ID` on the line above the policy line
(iptables-save `:CHAIN POLICY`) or at / above nft's `policy` statement; nothing else is."""

from __future__ import annotations

import textwrap

import pytest

from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources

NARROW = """\
*filter
{above}:INPUT DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 127.0.0.1/32 -j ACCEPT
COMMIT
"""


def _checks(tmp_path, name: str, text: str) -> list:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    findings, _ = audit_ruleset(read_sources([str(path)]))
    return [(f.check, f.rule is None) for f in findings]


def test_iptables_policy_finding_is_reported_without_a_comment(tmp_path):
    assert ("LB001", True) in _checks(tmp_path, "r.rules", NARROW.format(above=""))


@pytest.mark.parametrize("comment", ["# lbfw: ignore LB001\n", "# on purpose. lbfw: ignore\n", "# lbfw: ignore all\n"])
def test_iptables_comment_above_the_policy_line_suppresses_its_findings(tmp_path, comment):
    got = _checks(tmp_path, "r.rules", NARROW.format(above=comment))
    assert ("LB001", True) not in got
    assert ("LB002", False) in got  # the narrow accept's own finding is not covered by the policy's comment


def test_iptables_comment_naming_another_check_or_not_directly_above_does_not_suppress(tmp_path):
    assert ("LB001", True) in _checks(tmp_path, "a.rules", NARROW.format(above="# lbfw: ignore LB002\n"))
    assert ("LB001", True) in _checks(tmp_path, "b.rules", NARROW.format(above="# lbfw: ignore LB001\n\n"))


NFT = """\
table inet filter {{
    chain input {{
{above}        type filter hook input priority 0; policy drop;{at}
        ip saddr 127.0.0.1 accept
    }}
}}
"""


@pytest.mark.kernel
@pytest.mark.parametrize(
    "above,at,suppressed",
    [
        ("", "", False),
        ("        # lbfw: ignore LB001\n", "", True),
        ("", " # lbfw: ignore LB001", True),
        ("", " # lbfw: ignore LB003", False),
    ],
)
def test_nft_policy_comment_at_or_above_suppresses(tmp_path, above, at, suppressed):
    got = _checks(tmp_path, "r.nft", NFT.format(above=above, at=at))
    assert (("LB001", True) not in got) is suppressed

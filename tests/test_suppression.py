"""One suppression grammar for every syntax: `lbfw: ignore [IDS]` in a rule's comment or in a
`#` line directly above the rule. A bare `lbfw: ignore` suppresses every check, in nft files
as in iptables-save files (it used to be ignored above nft rules)."""

from __future__ import annotations

import pytest

from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources
from lbfw.suppression import ignored_ids, suppresses

NFT = """table inet filter {{
	chain input {{
		type filter hook input priority 0; policy drop;
		{above}
		ip saddr 127.0.0.1 accept
		ip6 saddr ::1 accept
	}}
}}
"""

IPT = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
{above}
-A INPUT -s 127.0.0.1/32 -j ACCEPT
COMMIT
"""


@pytest.mark.parametrize(
    "text, ids",
    [
        ("keep it. lbfw: ignore LB002, lb003", {"LB002", "LB003"}),
        ("lbfw: ignore", {"ALL"}),
        ("# lbfw: ignore all", {"ALL"}),
        ("LBFW:IGNORE LB002", {"LB002"}),
        ("nothing here", set()),
        ("", set()),
    ],
)
def test_one_grammar(text, ids):
    assert ignored_ids(text) == ids
    assert suppresses(ignored_ids("lbfw: ignore"), "LB002")
    assert not suppresses(ignored_ids("lbfw: ignore LB003"), "LB002")


def _narrow_findings(tmp_path, name, text) -> list:
    path = tmp_path / name
    path.write_text(text)
    findings, _ = audit_ruleset(read_sources([str(path)]))
    return [f.check for f in findings if f.rule is not None and "127.0.0.1" in f.rule.text]


@pytest.mark.kernel
@pytest.mark.parametrize(
    "above, suppressed",
    [
        ("# lbfw: ignore", True),
        ("# lbfw: ignore LB002", True),
        ("# lbfw: ignore LB003", False),
        ("", False),
    ],
)
def test_comment_line_above_an_nft_rule(tmp_path, above, suppressed):
    found = _narrow_findings(tmp_path, "host.nft", NFT.format(above=above))
    assert ("LB002" not in found) == suppressed, found


@pytest.mark.parametrize(
    "above, suppressed",
    [
        ("# lbfw: ignore", True),
        ("# lbfw: ignore LB002", True),
        ("# lbfw: ignore LB003", False),
        ("", False),
    ],
)
def test_comment_line_above_an_iptables_rule(tmp_path, above, suppressed):
    found = _narrow_findings(tmp_path, "host.rules", IPT.format(above=above).replace("\n\n", "\n"))
    assert ("LB002" not in found) == suppressed, found

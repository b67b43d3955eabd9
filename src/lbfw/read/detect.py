"""Tell a ruleset's format from its content.

What is looked at, in order:

1. The first non-blank character. ``{`` is JSON: "nft-json" (``nft -j list ruleset`` output
   has a top-level "nftables" key; other JSON is still called nft-json and rejected by that
   reader with a precise message).
2. The lines, skipping blank ones, until one decides:
   - a comment naming ``ip6tables-save`` / ``ip6tables-restore`` (the header iptables writes;
     also ``ip6tables-nft-save`` and ``-legacy-``) -> "ip6tables-save"; ``iptables-save`` and
     its variants -> iptables (family still to be decided);
   - a ``#!`` line naming nft -> "nft";
   - ``*table``, ``:CHAIN POLICY``, ``-A``/``-I``/``-N``/``-P`` commands, ``[n:n]`` counters, or
     ``COMMIT`` -> iptables (family still to be decided);
   - an nft keyword opening a line (table, chain, define, include, flush, add, insert, create,
     delete, list, set, map, rule) or a line with ``{`` -> "nft".
3. For iptables text without an ip6tables header: IPv6 addresses after ``-s``/``-d`` (and
   their long forms, ``--src-range``/``--dst-range``, ``--to-destination [``), an IPv6 ICMP
   protocol (``-p ipv6-icmp``/``icmpv6``/``icmp6``/``58``), ``-m icmp6``, ``--icmpv6-type`` or
   ``--reject-with icmp6-*`` make it "ip6tables-save" (chain names such as "icmpv6-input"
   do not count); otherwise "iptables-save". An ip6tables dump with none of
   those and no header is indistinguishable from an IPv4 one: use ``--input-format``.

Text that none of this recognises raises InputError (without a path: the caller adds it).
"""

from __future__ import annotations

import re

from ..errors import InputError

FORMATS = ("iptables-save", "ip6tables-save", "nft", "nft-json")

_NFT_WORDS = frozenset(("table", "chain", "define", "include", "flush", "add", "insert", "create",
                        "delete", "list", "set", "map", "rule", "destroy", "reset", "replace", "redefine",
                        "undefine"))
_IPT_COMMANDS = frozenset(("-A", "-I", "-N", "-P", "-F", "-X", "-Z", "--append", "--insert",
                           "--new-chain", "--policy"))
# The tool named in a header or warning: ip6tables-save, iptables-nft-save, ip6tables-legacy ...
_TOOL = re.compile(r"\bip(6?)tables(?:(?:-legacy|-nft)?-(?:save|restore)|-legacy tables)\b", re.IGNORECASE)
# An IPv6 address after an address option: hex digits, dots and at least one colon.
# (No `^|\s` anchor: that alternation at every position costs 20x on large dumps.)
_V6_ADDR = re.compile(
    r"(?:-[sd]|--source|--destination|--src|--dst|--src-range|--dst-range)[ \t]+(?:![ \t]+)?[0-9A-Fa-f.]*:"
    r"|--to-destination[ \t]+\["
    r"|(?:-p|--protocol)[ \t]+(?:![ \t]+)?(?:ipv6-icmp|icmpv6|icmp6|58)\b"
    r"|-m[ \t]+icmp6\b|--icmpv6-type|--reject-with[ \t]+icmp6-"
)


def detect_format(text: str) -> str:
    """Return "iptables-save", "ip6tables-save", "nft" or "nft-json" for ``text``."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise InputError("empty: no ruleset to read")
    if stripped[0] == "{" or (stripped[0] == "[" and not stripped[1:2].isdigit()):
        return "nft-json"                   # ("[12:345] -A ..." is an iptables counter)
    iptables = False
    for raw in stripped.split("\n", 2000):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            if line.startswith("#!") and "nft" in line:
                return "nft"
            tool = _TOOL.search(line)
            if tool is not None:
                if tool.group(1):
                    return "ip6tables-save"
                iptables = True
            continue
        first = line[0]
        word = line.split(None, 1)[0]
        if first == "*" or first == ":" or first == "[" or word in _IPT_COMMANDS or line == "COMMIT":
            iptables = True
            break
        if word in _NFT_WORDS or "{" in line:
            return "nft"
        break
    if not iptables:
        raise InputError("cannot tell the format (not iptables-save, nft or nft JSON); "
                         "name it with --input-format")
    return "ip6tables-save" if _V6_ADDR.search(stripped) else "iptables-save"

"""Pure text rewriting of one rule line: the narrow 127.0.0.1 match becomes the loopback
interface or 127.0.0.0/8, and nothing else on the line changes (other matches, comments,
spacing, quoting).

Two syntaxes: an iptables-save line (`-A INPUT -s 127.0.0.1/32 -j ACCEPT`) and an nft rule
line (`ip saddr 127.0.0.1 accept`, `ip saddr { 127.0.0.1, 10.0.0.1 } accept`,
`ip saddr vmap { 127.0.0.1 : accept }`). Only lines a check named go through here, so the
work per line may be a few regex searches; the 140,000-rule dumps never pass through it whole.

Every function returns the new line or raises `Refuse(why)`; nothing is half-rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

WIDE = "127.0.0.0/8"
WIDE_DOTTED = "127.0.0.0/255.0.0.0"

# The spellings of "127.0.0.1 alone". `127.0.0.1/8` is not one: the kernel masks the host bits.
NARROW_SPELLINGS = frozenset({"127.0.0.1", "127.0.0.1/32", "127.0.0.1/255.255.255.255"})

_IPT_ADDR_OPTS = frozenset({"-s", "--source", "--src", "-d", "--destination", "--dst"})
_IPT_IN_OPTS = frozenset({"-i", "--in-interface"})
_IPT_OUT_OPTS = frozenset({"-o", "--out-interface"})

# An nft literal 127.0.0.1 (optionally /32) that is a whole token: not 127.0.0.10, not
# 127.0.0.1/8 (already the whole range), not the address of `dnat to 127.0.0.1:8080`.
_NFT_NARROW = re.compile(r"(?<![\w.:/$@-])127\.0\.0\.1(?:/32)?(?![\w.]|/\d|:\d|-)")
_NFT_DIRECT_BEFORE = re.compile(r"(?:^|(?<=\s))ip\s+([sd]addr)\s*(==|!=)?\s*$")
_NFT_IFACE = re.compile(r"(?<![\w-])(?:meta\s+)?(iif|iifname|oif|oifname)\s+(!=\s*)?(\"[^\"]*\"|[\w.+*-]+)")
_NFT_COMMENT_STR = re.compile(r"\bcomment\s+\"(?:[^\"\\]|\\.)*\"")


class Refuse(Exception):
    """The line cannot be fixed safely; ``str(err)`` says why."""


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


def splice(line: str, spans: list) -> str:
    """Replace each Span of ``line`` (non-overlapping) with its text."""
    out = line
    for span in sorted(spans, key=lambda s: s.start, reverse=True):
        out = out[: span.start] + span.text + out[span.end :]
    return out


def _removal(line: str, start: int, end: int) -> Span:
    """A span removing line[start:end] together with the blank space before it (or, at the
    start of the line's text, the blank space after it, so indentation is kept)."""
    if line[:start].strip() == "":
        while end < len(line) and line[end] in " \t":
            end += 1
        return Span(start, end, "")
    while start > 0 and line[start - 1] in " \t":
        start -= 1
    return Span(start, end, "")


# --------------------------------------------------------------------------- iptables


def ipt_tokens(line: str) -> list:
    """(start, end, text) of each whitespace-separated token; double quotes keep spaces."""
    tokens = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        start = i
        quoted = False
        while i < n and (quoted or line[i] not in " \t\r\n"):
            if line[i] == "\\" and quoted and i + 1 < n:
                i += 2
                continue
            if line[i] == '"':
                quoted = not quoted
            i += 1
        tokens.append((start, i, line[start:i]))
    return tokens


@dataclass(frozen=True)
class _IptAddr:
    opt: int  # token index of -s/-d
    value: int  # token index of the value
    negated: bool
    neg_token: Optional[int]  # index of the "!" token, if any
    narrow: tuple  # the narrow elements of a comma list


def _ipt_addrs(tokens: list) -> list:
    found = []
    for k, (_, _, tok) in enumerate(tokens):
        if tok not in _IPT_ADDR_OPTS or k + 1 >= len(tokens):
            continue
        value, neg_token = k + 1, None
        if tokens[value][2] == "!":  # iptables 1.3: -s ! 127.0.0.1
            neg_token, value = value, value + 1
            if value >= len(tokens):
                continue
        elif k > 0 and tokens[k - 1][2] == "!":  # ! -s 127.0.0.1
            neg_token = k - 1
        elements = tokens[value][2].split(",")
        narrow = tuple(e for e in elements if e in NARROW_SPELLINGS)
        if narrow:
            found.append(_IptAddr(k, value, neg_token is not None, neg_token, narrow))
    return found


def _ipt_iface(tokens: list, opts: frozenset):
    """(first token index, end token index, name, negated) of an interface option, or None."""
    for k, (_, _, tok) in enumerate(tokens):
        if tok in opts and k + 1 < len(tokens):
            negated = k > 0 and tokens[k - 1][2] == "!"
            value = tokens[k + 1][2]
            if value == "!" and k + 2 < len(tokens):
                return (k, k + 2, tokens[k + 2][2], True)
            return (k - 1 if negated else k, k + 1, value, negated)
    return None


def _ipt_widen_value(value: str) -> str:
    out = []
    for element in value.split(","):
        if element in NARROW_SPELLINGS:
            element = WIDE_DOTTED if element.endswith("/255.255.255.255") else WIDE
        out.append(element)
    # 127.0.0.0/8 twice in one comma list would be two identical rules: keep one.
    seen, unique = set(), []
    for element in out:
        if element not in seen:
            seen.add(element)
            unique.append(element)
    return ",".join(unique)


def rewrite_iptables(line: str, mode: str, direction: Optional[str] = None) -> tuple:
    """Rewrite one iptables-save line. ``mode`` "interface" or "range"; ``direction`` "in"
    (INPUT, PREROUTING) or "out" (OUTPUT, POSTROUTING), needed for "interface".

    Returns (new_line, how) where ``how`` says what was done in words."""
    tokens = ipt_tokens(line)
    addrs = _ipt_addrs(tokens)
    if not addrs:
        if any(t[2] in ("--match-set", "--src-range", "--dst-range") for t in tokens):
            raise Refuse(
                "the loopback address comes from an ipset or an address range, not from the rule "
                "text: change the set or range itself"
            )
        raise Refuse("no 127.0.0.1 address match in the rule text")
    if mode == "range":
        spans = [Span(tokens[a.value][0], tokens[a.value][1], _ipt_widen_value(tokens[a.value][2])) for a in addrs]
        return splice(line, spans), "127.0.0.1 widened to 127.0.0.0/8"
    if mode != "interface":
        raise ValueError(mode)
    if any(a.negated for a in addrs):
        raise Refuse(
            "the rule negates the address (! 127.0.0.1): an interface cannot replace a negation; "
            "widen it by hand if 127.0.0.0/8 is meant (--style range)"
        )
    if any(len(tokens[a.value][2].split(",")) > 1 for a in addrs):
        # An address list names other hosts too: the interface cannot stand for them.
        return rewrite_iptables(line, "range")
    if direction not in ("in", "out"):
        raise Refuse("the chain is not reached from one direction only (input or output)")
    opts, flag = (_IPT_IN_OPTS, "-i") if direction == "in" else (_IPT_OUT_OPTS, "-o")
    iface = _ipt_iface(tokens, opts)
    spans = []
    if iface is not None:
        _, _, name, negated = iface
        if name != "lo" or negated:
            raise Refuse(
                f"the rule already names the interface {'! ' if negated else ''}{name}: "
                f"{flag} lo cannot be added; use --style range"
            )
        for a in addrs:
            spans.append(_removal(line, tokens[a.opt][0], tokens[a.value][1]))
        how = f"the 127.0.0.1 match dropped: the rule's {flag} lo already names loopback"
    else:
        first, rest = addrs[0], addrs[1:]
        spans.append(Span(tokens[first.opt][0], tokens[first.value][1], f"{flag} lo"))
        for a in rest:
            spans.append(_removal(line, tokens[a.opt][0], tokens[a.value][1]))
        how = f"the 127.0.0.1 match replaced by {flag} lo"
    return splice(line, spans), how


# --------------------------------------------------------------------------- nft


def nft_mask(line: str) -> str:
    """The line with comment strings and `#` comments blanked (same length), so that an
    address inside `comment "..."` is never rewritten."""
    masked = _NFT_COMMENT_STR.sub(lambda m: " " * len(m.group(0)), line)
    # A '#' outside quotes starts a comment.
    quoted = False
    for i, ch in enumerate(masked):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return masked[:i] + " " * (len(masked) - i)
    return masked


def _brace_open(masked: str, pos: int) -> Optional[int]:
    """Index of the unclosed `{` enclosing ``pos`` on this line, or None."""
    opened: list[int] = []
    for i in range(pos):
        if masked[i] == "{":
            opened.append(i)
        elif masked[i] == "}" and opened:
            opened.pop()
    return opened[-1] if opened else None


def nft_narrow(masked: str) -> list:
    """Every narrow 127.0.0.1 occurrence: list of (start, end)."""
    return [(m.start(), m.end()) for m in _NFT_NARROW.finditer(masked)]


def _elements_in(masked: str, open_pos: int) -> tuple:
    """(close index or None, element texts) of the brace group opened at open_pos."""
    depth = 0
    for i in range(open_pos, len(masked)):
        if masked[i] == "{":
            depth += 1
        elif masked[i] == "}":
            depth -= 1
            if depth == 0:
                body = masked[open_pos + 1 : i]
                return i, [e.strip() for e in body.split(",")]
    return None, [e.strip() for e in masked[open_pos + 1 :].split(",")]


def widen_elements(line: str, masked: Optional[str] = None) -> tuple:
    """Every narrow element inside braces on ``line`` becomes 127.0.0.0/8.

    Refuses when the same group lists another 127/8 element: with the /8 they would
    overlap, which nft rejects in interval sets."""
    masked = nft_mask(line) if masked is None else masked
    spans = []
    for start, end in nft_narrow(masked):
        opened = _brace_open(masked, start)
        if opened is None:
            continue
        _, elements = _elements_in(masked, opened)
        others = [e for e in elements if e.startswith("127.") and _NFT_NARROW.match(e.split(":")[0].strip()) is None]
        if others:
            raise Refuse(
                f"the set also lists {', '.join(others)}: 127.0.0.0/8 would overlap it; merge the elements by hand"
            )
        spans.append(Span(start, end, WIDE))
    return splice(line, spans), len(spans)


def rewrite_nft(line: str, mode: str, direction: Optional[str] = None) -> tuple:
    """Rewrite one nft rule line whose narrow address is written in the line itself.

    Direct matches (`ip saddr 127.0.0.1`) become `iif "lo"` / `oif "lo"` (mode interface)
    or `ip saddr 127.0.0.0/8` (mode range); elements of anonymous sets and verdict maps
    always become 127.0.0.0/8 (an interface cannot stand for one element of a set).
    Raises Refuse when the line holds no narrow literal (see plan.py for defines and sets)."""
    masked = nft_mask(line)
    hits = nft_narrow(masked)
    if not hits:
        raise Refuse("no 127.0.0.1 literal in the rule text")
    direct, in_set = [], []
    for start, end in hits:
        if _brace_open(masked, start) is not None:
            in_set.append((start, end))
            continue
        before = _NFT_DIRECT_BEFORE.search(masked[:start])
        if before is None:
            raise Refuse(f"127.0.0.1 appears in a position lbfw does not rewrite: {line.strip()!r}")
        direct.append((before.start(), end, before.group(2), start))
    spans: list[Span] = []
    hows = []
    if in_set:
        widen_elements(line, masked)  # raises Refuse when the /8 would overlap another element
        spans.extend(Span(s, e, WIDE) for s, e in in_set)
        hows.append("the 127.0.0.1 set element widened to 127.0.0.0/8")
    if direct:
        if mode == "range":
            spans.extend(Span(addr, end, WIDE) for _, end, _, addr in direct)
            hows.append("127.0.0.1 widened to 127.0.0.0/8")
        else:
            if any(op == "!=" for _, _, op, _ in direct):
                raise Refuse(
                    "the rule negates the address (!= 127.0.0.1): an interface cannot replace a "
                    "negation; use --style range if 127.0.0.0/8 is meant"
                )
            if direction not in ("in", "out"):
                raise Refuse("the chain is not reached from one direction only (input or output)")
            key = "iif" if direction == "in" else "oif"
            existing = [m for m in _NFT_IFACE.finditer(masked) if m.group(1).startswith(key)]
            if existing:
                m = existing[0]
                name = m.group(3).strip('"')
                if name != "lo" or m.group(2):
                    raise Refuse(
                        f"the rule already names the interface {m.group(0).strip()}: "
                        f'{key} "lo" cannot be added; use --style range'
                    )
                for start, end, _, _ in direct:
                    spans.append(_removal(line, start, end))
                hows.append(f"the 127.0.0.1 match dropped: the rule's {m.group(0).strip()} already names loopback")
            else:
                first, rest = direct[0], direct[1:]
                spans.append(Span(first[0], first[1], f'{key} "lo"'))
                for start, end, _, _ in rest:
                    spans.append(_removal(line, start, end))
                hows.append(f'the 127.0.0.1 match replaced by {key} "lo"')
    return splice(line, spans), "; ".join(hows)


def nft_define_use(line: str, name: str) -> Optional[tuple]:
    """(start, end, op) of `ip saddr|daddr [op] $NAME` on ``line`` or None."""
    masked = nft_mask(line)
    for m in re.finditer(r"\$" + re.escape(name) + r"(?![\w])", masked):
        before = _NFT_DIRECT_BEFORE.search(masked[: m.start()])
        if before is not None:
            return (before.start(), m.end(), before.group(2), m.start())
    return None

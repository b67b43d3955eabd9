"""Small helpers the renderers share: where a finding is, counts by severity."""

from __future__ import annotations

from collections import Counter

from ..results import SEVERITIES


def where(f) -> str:
    """`PATH:LINE` for files; `SOURCE FAMILY TABLE CHAIN handle N` / `#N` / `(policy)` for the kernel."""
    if f.line is not None and f.source:
        return f"{f.source}:{f.line}"
    parts = [f.source or "?"]
    if f.family:
        parts.append(f.family)
    if f.table:
        parts.append(f.table)
    if f.chain:
        parts.append(f.chain)
    if f.handle is not None:
        parts.append(f"handle {f.handle}")
    elif f.index is not None:
        parts.append(f"#{f.index}")
    elif f.chain and f.rule is None:
        parts.append("policy")
    return " ".join(parts)


def counts(findings) -> dict:
    c = Counter(f.severity for f in findings)
    return {s: c.get(s, 0) for s in SEVERITIES}


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"

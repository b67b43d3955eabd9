"""`--format github`: GitHub Actions workflow commands, one annotation a finding
(`::error file=PATH,line=N,col=1,title=LB001 loopback-blocked::message`), shown on the pull
request's diff. Severities map to error / warning / notice."""

from __future__ import annotations

from .common import brief_message, printable

LEVEL = {"error": "error", "warning": "warning", "note": "notice"}


def _data(text: str) -> str:
    """The escaping workflow commands need in a message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """The escaping workflow commands need in a property value."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(f, results=(), any_port=None) -> str:
    """One workflow command for finding ``f``."""
    from ..checks import get

    check = get(f.check)
    title = f"{f.check} {check.NAME}" if check is not None else f.check
    props = []
    message = printable(brief_message(f, results, any_port))
    if f.source and f.line is not None and f.source != "-" and not f.source.startswith("live:"):
        props += [f"file={_property(printable(f.source))}", f"line={f.line}", "col=1"]
    else:
        from .common import where

        message = f"{printable(where(f))}: {message}"
    props.append(f"title={_property(title)}")
    return f"::{LEVEL.get(f.severity, 'warning')} {','.join(props)}::{_data(message)}\n"


def render(findings, results=(), any_port=None) -> str:
    return "".join(annotation(f, results, any_port) for f in findings)

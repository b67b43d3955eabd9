"""What the renderers share: where a finding is, counts by severity, the one sanitiser of ruleset
text, and the terminal decisions (colour, width) taken once by rich for the stream written to."""

from __future__ import annotations

import io
import re
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

from ..results import SEVERITIES

# A report that is not on a terminal (a pipe, a file, -o) is wrapped at this width.
PIPE_WIDTH = 100

# C0 and C1 control characters and DEL, except the tab: a ruleset comment can hold terminal escape
# sequences (`-m comment --comment $'\e]0;owned\a'`), and nothing from a ruleset may reach a terminal raw.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: Any) -> str:
    """``text`` as a string with every control character shown as a visible escape (``\\x1b``):
    the one place ruleset text is made safe for a terminal (text, concise and github formats)."""
    s = "" if text is None else str(text)
    if not _CONTROL.search(s):
        return s
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


@dataclass(frozen=True)
class Terminal:
    """How to render text for one output stream: colour or not (and which colours), the width
    to wrap at. ``plain()`` is a pipe or a file."""

    color_system: Optional[str] = None
    width: int = PIPE_WIDTH
    is_terminal: bool = False

    @property
    def color(self) -> bool:
        return self.color_system is not None

    @classmethod
    def plain(cls, width: int = PIPE_WIDTH) -> Terminal:
        return cls(None, width, False)

    def console(self):
        """A rich Console that renders into a string (read it back with `captured`)."""
        from rich.console import Console

        return Console(
            file=io.StringIO(),
            force_terminal=self.color,
            no_color=not self.color,
            color_system=self.color_system,  # type: ignore[arg-type]
            width=self.width,
            highlight=False,
            emoji=False,
            markup=False,
            legacy_windows=False,
        )


def terminal_for(stream: Any = None) -> Terminal:
    """rich's own decision for ``stream`` (stdout by default): colour only on a terminal, never
    with NO_COLOR or TERM=dumb, always with FORCE_COLOR; the terminal's width (COLUMNS
    overrides), PIPE_WIDTH when it is not a terminal."""
    from rich.console import Console

    stream = stream if stream is not None else sys.stdout
    probe = Console(file=stream, highlight=False, markup=False, emoji=False)
    color_system = None if probe.no_color else probe.color_system
    if probe.is_dumb_terminal:
        color_system = None
    if not probe.is_terminal:
        import os

        width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH
        return Terminal(color_system, width, False)
    return Terminal(color_system, probe.width, True)


def use_color(stream: Any = None) -> bool:
    """True when rich would colour ``stream`` (see `terminal_for`)."""
    return terminal_for(stream).color


def captured(console) -> str:
    """What a console made by `Terminal.console` has printed."""
    buffer = console.file
    assert isinstance(buffer, io.StringIO)
    # rich pads table cells and wrapped lines to the width: no line ends in blanks
    return "".join(line.rstrip(" ") + "\n" for line in buffer.getvalue().splitlines())


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


def position(f) -> str:
    """`PATH:LINE:COL` (column 1: the rule's line) for files, `where(f)` for the live kernel."""
    if f.line is not None and f.source:
        return f"{f.source}:{f.line}:1"
    return where(f)


def counts(findings) -> dict:
    c = Counter(f.severity for f in findings)
    return {s: c.get(s, 0) for s in SEVERITIES}


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fixable(f) -> bool:
    """Would `lbfw fix` rewrite this finding's rule? Its check has a fix, and the rule is neither a
    firewall manager's nor a deliberate policy (the planner refuses those)."""
    from ..checks import get

    check = get(f.check)
    return check is not None and check.FIX.fixable and f.rule is not None and f.owner is None and f.deliberate is None


def client_of(flow) -> str:
    """A flow's client as reports show it: the default source is 127.0.0.1 (::1)."""
    return flow.client or ("::1" if ":" in flow.server else "127.0.0.1")


def port_label(port: int, any_port: Optional[int]) -> str:
    """``any port`` for the port no rule names (it stands for all of them), else the number."""
    return "any port" if port == any_port else str(port)


def _joined(items: list) -> str:
    return ", ".join(items)


def flows_in_brief(flows, any_port: Optional[int] = None, limit: int = 3) -> str:
    """Flows summarised by who talks to whom: `127.0.0.1, 127.0.0.2 -> 127.0.0.53, 127.66.66.66
    (tcp and udp, any port)`; servers reached by the same clients on the same ports share a group."""
    by_server: dict = {}
    for flow in flows:
        clients, ports = by_server.setdefault(flow.server, ([], {}))
        client = client_of(flow)
        if client not in clients:
            clients.append(client)
        ports.setdefault(flow.proto, [])
        if flow.port not in ports[flow.proto]:
            ports[flow.proto].append(flow.port)
    groups: dict = {}
    for server, (clients, ports) in by_server.items():
        key = (
            tuple(clients),
            tuple((p, tuple(sorted(v, key=lambda x: (x != any_port, x)))) for p, v in sorted(ports.items())),
        )
        groups.setdefault(key, []).append(f"[{server}]" if ":" in server else server)
    texts = []
    for (clients, ports), servers in groups.items():
        labels = {proto: _joined([port_label(p, any_port) for p in numbers]) for proto, numbers in ports}
        if len(labels) == 1:
            how = " ".join(next(iter(labels.items())))
        elif len(set(labels.values())) == 1:
            how = f"{' and '.join(labels)}, {next(iter(labels.values()))}"
        else:
            how = "; ".join(f"{proto} {label}" for proto, label in labels.items())
        texts.append(f"{_joined(list(clients))} -> {_joined(servers)} ({how})")
    text = "; ".join(texts[:limit])
    if len(texts) > limit:
        text += f"; and {len(texts) - limit} more"
    return text


def brief_message(f, results=(), any_port: Optional[int] = None) -> str:
    """The finding's message with the checks' list of flows (`127.0.0.1 -> 127.0.0.53 (tcp/47231,
    udp/47231), ...`, from checks.context.flows_summary over the same flows) replaced by
    `flows_in_brief`: who talks to whom, "any port" for the port no rule names."""
    message = f.message
    if not f.flows or not results:
        return message
    from ..checks.context import flows_summary

    by_flow = {r.flow: r for r in results}
    mine = [by_flow[fl] for fl in f.flows if fl in by_flow]
    if len(mine) != len(f.flows):
        return message
    listed = flows_summary(mine)
    if listed and listed in message:
        return message.replace(listed, flows_in_brief(f.flows, any_port))
    return message

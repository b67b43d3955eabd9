"""Observed verdicts: rulesets loaded into a sandbox namespace, or the live host probed harmlessly.

The functions the commands call:

- ``observe_files(sources, flows)`` (alias ``verify_sources``): load every source into one
  fresh `Namespace` with the real tools and observe each flow with real traffic.
  A source is a path (str or Path) or a `RulesetText` (text in memory: standard input,
  a fixed ruleset before it is written, a live dump). iptables-save text goes to
  iptables-legacy-restore (iptables-nft-restore when the kernel has no legacy xtables),
  ip6tables-save text to ip6tables-*, nft text to `nft -f`, nft JSON to `nft -j -f`.
  Interfaces the files name in `iif`/`oif` are created first so the files load. A source
  the kernel rejects raises InputError naming it and quoting the kernel.
- ``verify_live(flows)``: the same traffic on the live host, touching nothing: servers only
  on loopback addresses and only on free ports ("not observed: port in use" otherwise),
  never a flow NAT rewrites (it would reach a real service), short timeouts, every socket
  closed, no rule changed.

Each returns one observed verdict per flow, in order: "delivered", "blocked" or
"not observed: <why>". The ``*_detailed`` variants add the reason per flow.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..errors import InputError, LbfwError, NeedRootError
from ..results import UNKNOWN, Flow
from . import traffic
from .netns import Namespace, missing_interfaces, valid_ifname

__all__ = [
    "RulesetText",
    "observe_files",
    "observe_files_detailed",
    "verify_sources",
    "verify_live",
    "verify_live_detailed",
    "load_sources",
    "tool_versions",
    "interfaces_named",
    "NOT_LOOPBACK",
    "NAT_ELSEWHERE",
]

NOT_LOOPBACK = "not observed: not a loopback address (the live probe binds loopback addresses only)"
NAT_ELSEWHERE = "not observed: NAT sends it to another address or port, where a real service may answer"
MAX_INTERFACES = 512  # a ruleset naming more is not a host; bound the set-up work


@dataclass(frozen=True)
class RulesetText:
    """A ruleset held in memory. ``name`` is what errors call it ("-", "rules.v4 (fixed)").

    ``format``: "iptables-save" | "ip6tables-save" | "nft" | "nft-json", or None to detect.
    ``backend`` (iptables text only): "legacy" | "nft", or None for legacy when the kernel
    has it (separate from nf_tables, so an nft file's `table ip filter` cannot collide).
    ``path``: where an nft text came from, so that `nft -f` loads the file itself and its
    relative `include`s resolve beside it.
    """

    name: str
    text: str
    format: Optional[str] = None
    backend: Optional[str] = None
    path: Optional[Path] = None


Source = Union[str, Path, RulesetText]


# --------------------------------------------------------------------------- loading


def _detect(text: str, name: str) -> str:
    from ..read.detect import detect_format

    try:
        return detect_format(text)
    except InputError as err:
        raise InputError(err.message, path=name, line=err.line) from None


def _read(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", path=name) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read: {err}", path=name) from None


# `iif eth0`, `oif "wan"`, `meta iif eth0`, and the names in `iif { "a", "b" }` / vmaps.
# iifname/oifname need no interface to exist; iif/oif are resolved to an index at load time.
_NFT_IF_WORD = re.compile(r'(?<![\w-])(?:meta\s+)?[io]if\s+(?:!=\s*|==\s*)?(?:"([^"\n]+)"|([A-Za-z_][\w.-]*))')
_NFT_IF_SET = re.compile(r"(?<![\w-])(?:meta\s+)?[io]if\s+(?:vmap\s+)?\{([^}]*)\}")
_QUOTED = re.compile(r'"([^"\n]+)"|(?<![\w.$-])([A-Za-z_][\w.-]*)(?=\s*[,:}\n]|\s*$)')
_NFT_IF_VAR = re.compile(r"(?<![\w-])(?:meta\s+)?[io]if\s+(?:vmap\s+)?\$([\w.-]+)")
_DEFINE = re.compile(r"^\s*define\s+([\w.-]+)\s*=\s*(.+?)\s*$", re.M)
_NFT_KEYWORDS = frozenset(
    (
        "accept",
        "drop",
        "reject",
        "continue",
        "return",
        "jump",
        "goto",
        "vmap",
        "counter",
        "type",
        "ifname",
        "iface_index",
        "lo",
    )
)


def interfaces_named(text: str, fmt: str) -> list[str]:
    """Interface names a ruleset refers to with nft `iif`/`oif` (which must exist to load).

    iptables `-i`/`-o` and nft `iifname`/`oifname` load without the interface, so they are
    not needed; they are not returned. Defines used as `iif $WAN` are followed one level.
    """
    names: list[str] = []
    if fmt == "nft":
        defines = {m.group(1): m.group(2) for m in _DEFINE.finditer(text)}
        for m in _NFT_IF_WORD.finditer(text):
            names.append(m.group(1) or m.group(2))
        for m in _NFT_IF_SET.finditer(text):
            names += [q.group(1) or q.group(2) for q in _QUOTED.finditer(m.group(1))]
        for used in dict.fromkeys(_NFT_IF_VAR.findall(text)):
            value = defines.get(used)
            if value is not None:
                names += [q.group(1) or q.group(2) for q in _QUOTED.finditer(value.strip("{} ") + "\n")]
    elif fmt == "nft-json":
        try:
            doc = json.loads(text)
        except ValueError:
            return []
        _json_interfaces(doc, names)
    return [name for name in dict.fromkeys(names) if name and name not in _NFT_KEYWORDS and not name.startswith("$")]


def _json_interfaces(node, names: list) -> None:
    """Walk nft JSON for `{"match": {"left": {"meta": {"key": "iif"|"oif"}}, "right": ...}}`."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            match = item.get("match")
            if isinstance(match, dict):
                left = match.get("left")
                if (
                    isinstance(left, dict)
                    and isinstance(left.get("meta"), dict)
                    and left["meta"].get("key") in ("iif", "oif")
                ):
                    right = match.get("right")
                    values = right.get("set", []) if isinstance(right, dict) else [right]
                    names += [v for v in values if isinstance(v, str)]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _prepare(sources: Sequence[Source], input_format: str = "auto") -> list:
    """(name, text, fmt, path_or_None, backend) per source, read and detected (no kernel yet)."""
    prepared = []
    for source in sources:
        if isinstance(source, RulesetText):
            name, text, path, backend = source.name, source.text, source.path, source.backend
            fmt = source.format
        else:
            name = str(source)
            path = Path(source)
            text = _read(path, name)
            backend = None
            fmt = None
        if fmt is None:
            fmt = _detect(text, name) if input_format == "auto" else input_format
        prepared.append((name, text, fmt, path, backend))
    return prepared


def load_sources(ns: Namespace, sources: Sequence[Source], input_format: str = "auto") -> list[str]:
    """Load ``sources`` into ``ns`` as one host's ruleset; returns what each went through
    (e.g. "rules.v4: iptables-legacy-restore"). InputError when the kernel rejects one."""
    return _load_prepared(ns, _prepare(sources, input_format))


def _load_prepared(ns: Namespace, prepared: list) -> list[str]:
    wanted = []
    for _name, text, fmt, _, _ in prepared:
        wanted += interfaces_named(text, fmt)
    if wanted:
        ns.add_interfaces(wanted[:MAX_INTERFACES])
    legacy = None
    done = []
    # nft sources first: a `flush ruleset` in them must not wipe iptables-nft tables loaded before.
    order = sorted(prepared, key=lambda item: 0 if item[2] in ("nft", "nft-json") else 1)
    for name, text, fmt, path, backend in order:
        if fmt in ("iptables-save", "ip6tables-save"):
            family = "ip6" if fmt == "ip6tables-save" else "ip"
            if backend is None:
                if legacy is None:
                    legacy = ns.legacy_available()
                backend = "legacy" if legacy else "nft"
            ns.load_iptables(text, family=family, backend=backend, source=name)
            tool = ("ip6tables" if family == "ip6" else "iptables") + f"-{backend}-restore"
            done.append(f"{name}: {tool}")
        elif fmt == "nft":
            _load_nft_making_interfaces(ns, path if path is not None else text, name)
            done.append(f"{name}: nft -f")
        elif fmt == "nft-json":
            ns.load_nft(text, source=name, json=True)
            done.append(f"{name}: nft -j -f")
        else:
            raise InputError(f"unknown input format {fmt!r}", path=name)
    return done


def _load_nft_making_interfaces(ns: Namespace, text_or_path, name: str, rounds: int = 8) -> None:
    """`nft -f`; when nft names interfaces that do not exist (ones `interfaces_named` could not
    see: concatenations, nested defines), make them and try again, a bounded number of times."""
    for attempt in range(rounds):
        try:
            ns.load_nft(text_or_path, source=name)
            return
        except InputError as err:
            names = [
                n for n in missing_interfaces(getattr(err, "stderr", "")) if valid_ifname(n) and n not in ns.interfaces
            ]
            if not names or attempt == rounds - 1 or len(ns.interfaces) > 2 * MAX_INTERFACES:
                raise
            ns.add_interfaces(names)


# --------------------------------------------------------------------------- observing in a sandbox


def observe_files_detailed(
    sources: Sequence[Source], flows: Sequence[Flow], timeout: float = 1.0, input_format: str = "auto"
) -> list[dict]:
    """Like `observe_files`, each result a dict {"observed", "reason"}."""
    flows = list(flows)
    # Check the flows, read and detect before making a namespace: bad input fails fast, with
    # nothing made.
    traffic._as_dicts(flows)
    prepared = _prepare(sources, input_format)
    with Namespace() as ns:
        _load_prepared(ns, prepared)
        return traffic.observe_detailed(ns, flows, timeout=timeout)


def observe_files(
    sources: Sequence[Source], flows: Sequence[Flow], timeout: float = 1.0, input_format: str = "auto"
) -> list[str]:
    """Load ``sources`` (paths or RulesetText) into a fresh private namespace and observe each
    flow with real traffic: "delivered" / "blocked" per flow, in order. The namespace is gone
    when this returns (or raises)."""
    return [r["observed"] for r in observe_files_detailed(sources, flows, timeout, input_format)]


verify_sources = observe_files


# --------------------------------------------------------------------------- the live host


def _is_loopback(addr: Optional[str]) -> bool:
    try:
        return ipaddress.ip_address((addr or "").strip("[]")).is_loopback
    except ValueError:
        return False


def nat_rewritten(ruleset, results) -> list[int]:
    """Indexes of the flows a live probe must not send: the engine saw NAT rewrite them (the
    probe would reach whatever really listens at the new destination), or could not decide
    them while the host has NAT rules at all."""
    tables = getattr(ruleset, "tables", None) or []
    has_nat = any(any(c.rules for c in t.chains.values() if c.type == "nat" or t.name == "nat") for t in tables)
    out = []
    for i, result in enumerate(results):
        if any(step.verdict in ("dnat", "redirect") for step in result.steps) or result.verdict == UNKNOWN and has_nat:
            out.append(i)
    return out


def _nat_skips(flows: list, results=None, ruleset=None) -> dict:
    """{index: NAT_ELSEWHERE} for the flows NAT rewrites on this host. Without the engine's
    results, the live rules are read and the flows predicted here (root needed)."""
    if results is None:
        from ..analyze.engine import Engine
        from ..read.live import read_live

        try:
            ruleset = read_live()
        except LbfwError as err:
            raise NeedRootError(
                f"a live probe must first read the rules, so that it never reaches a "
                f"service NAT rewrites its traffic to: {err.message}"
            ) from None
        engine = Engine(ruleset)
        results = [engine.evaluate(flow) for flow in flows]
    return {i: NAT_ELSEWHERE for i in nat_rewritten(ruleset, results)}


def verify_live_detailed(
    flows: Sequence[Flow],
    timeout: float = 1.0,
    settle: float = 3.0,
    skip: Optional[dict] = None,
    results=None,
    ruleset=None,
) -> list[dict]:
    """Like `verify_live`, each result a dict {"observed", "reason"}.

    Flows that NAT rewrites are not probed ("not observed: NAT sends it ..."): the probe
    would reach a real service. Which ones: ``skip`` ({index: text}) when given; else from
    the engine's ``results`` for these flows (and the ``ruleset`` they came from); else the
    live rules are read and predicted here."""
    flows = list(flows)
    if skip is None:
        skip = _nat_skips(flows, results, ruleset)
    observed: list = [None] * len(flows)
    todo = []
    for i, flow in enumerate(flows):
        if i in skip:
            observed[i] = {"observed": skip[i], "reason": skip[i].split(": ", 1)[-1]}
        elif not _is_loopback(flow.server):
            observed[i] = {"observed": NOT_LOOPBACK, "reason": "server is not a loopback address"}
        else:
            todo.append(i)
    if todo:
        got = traffic.observe_here_detailed([flows[i] for i in todo], timeout=timeout)
        for i, result in zip(todo, got):
            observed[i] = result
        _wait_half_open_gone(
            {(flows[i].server.strip("[]"), int(flows[i].port)) for i in todo if flows[i].proto == "tcp"}, settle
        )
    return observed


def verify_live(flows: Sequence[Flow], timeout: float = 1.0, results=None, ruleset=None) -> list[str]:
    """Observe ``flows`` on the live host, harmlessly (see the module docstring). Pass the
    engine's ``results`` for these flows (and the ``ruleset``) when you have them: the flows
    NAT rewrites are then found without reading the live rules again."""
    return [r["observed"] for r in verify_live_detailed(flows, timeout, results=results, ruleset=ruleset)]


def _hex_to_addr(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    # /proc/net/tcp* prints each 32-bit word in host byte order.
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def half_open(keys: Iterable[tuple]) -> set:
    """Which (addr, port) of ``keys`` still have SYN-RECV request sockets in this namespace."""
    keys = set(keys)
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    parts = line.split()
                    if len(parts) < 4 or parts[3] != "03":  # 03 = TCP_SYN_RECV
                        continue
                    hexaddr, hexport = parts[1].split(":")
                    key = (_hex_to_addr(hexaddr), int(hexport, 16))
                    if key in keys:
                        found.add(key)
        except OSError:
            continue
    return found


def _wait_half_open_gone(keys: set, settle: float) -> None:
    """A SYN-ACK the firewall dropped leaves a request socket until the kernel's first
    retransmission timer (1 s) finds its listener closed: wait for those to go, bounded."""
    if not keys:
        return
    deadline = time.monotonic() + settle
    while half_open(keys) and time.monotonic() < deadline:
        time.sleep(0.05)


def tool_versions() -> dict:
    """iptables and nft versions, asked inside a throwaway namespace (the host's tables are
    never queried)."""
    versions = {}
    try:
        with Namespace() as ns:
            for argv in (["iptables-legacy", "-V"], ["iptables-nft", "-V"], ["nft", "-v"]):
                try:
                    proc = ns.run(argv, check=False, timeout=10)
                    versions[argv[0]] = (proc.stdout or proc.stderr).strip() or f"exit {proc.returncode}"
                except Exception as err:  # a missing tool is itself worth reporting
                    versions[argv[0]] = f"unavailable: {err}"
    except Exception as err:
        versions["sandbox"] = f"unavailable: {err}"
    return versions

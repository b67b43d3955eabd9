"""The configuration file: TOML, `--config PATH`, else `$LBFW_CONFIG`, else /etc/lbfw/lbfw.toml
when it exists (`LBFW_CONFIG=` empty: no file at all).

    select = ["LB001", "LB002"]          # only these checks (default: all)
    ignore = ["LB006"]                   # never these
    fail-on = "error"                    # error | warning | note | never
    flows = ["127.0.0.1:8125/udp"]       # audited besides the default flows (ADDR:PORT[/proto])

    [per-path-ignores]                   # shell patterns on the source's path -> check ids
    "/etc/iptables/rules.v6" = ["LB004"]

Command-line options win over the file: --select replaces `select`, --ignore adds to `ignore`.
Mistakes are InputError(path, line).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Optional

from .errors import InputError, UsageError

if TYPE_CHECKING:
    from .results import Finding, Flow

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

DEFAULT_PATH = "/etc/lbfw/lbfw.toml"
ENV = "LBFW_CONFIG"
FAIL_ON = ("error", "warning", "note", "never")
_KEYS = ("select", "ignore", "fail-on", "flows", "per-path-ignores")


@dataclass(frozen=True)
class Config:
    """What the file (and the options over it) say. ``select`` None means every check."""

    path: Optional[str] = None
    select: Optional[frozenset[str]] = None
    ignore: frozenset[str] = frozenset()
    fail_on: Optional[str] = None
    flows: tuple[Flow, ...] = ()
    per_path_ignores: tuple[tuple[str, frozenset[str]], ...] = ()  # (pattern, ids)
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    def ignored_at(self, source: Optional[str]) -> frozenset[str]:
        """The check ids ignored for findings in ``source``."""
        out: set[str] = set()
        for pattern, ids in self.per_path_ignores:
            if source and (fnmatchcase(source, pattern) or fnmatchcase(os.path.basename(source), pattern)):
                out |= ids
        return frozenset(out)

    def keeps(self, finding: Finding) -> bool:
        """False for a finding the selection or an ignore leaves out."""
        if self.select is not None and finding.check not in self.select:
            return False
        return finding.check not in self.ignore and finding.check not in self.ignored_at(finding.source)


def check_ids(
    values: Iterable[object], what: str, path: Optional[str] = None, line: Optional[int] = None
) -> frozenset[str]:
    """Upper-cased check ids, each one a known check (else an error naming the known ones)."""
    from .checks import BY_ID

    out: set[str] = set()
    for value in values:
        for item in str(value).split(","):
            item = item.strip().upper()
            if not item:
                continue
            if item not in BY_ID:
                message = f"{what}: no check named {item!r} (known: {', '.join(BY_ID)})"
                if path is None:
                    raise UsageError(message)
                raise InputError(message, path=path, line=line)
            out.add(item)
    return frozenset(out)


def config_path(option: Optional[str]) -> Optional[str]:
    """The file to read: the option, else $LBFW_CONFIG (empty: none), else the default if present."""
    if option is not None:
        return option
    if ENV in os.environ:
        return os.environ[ENV] or None
    return DEFAULT_PATH if os.path.isfile(DEFAULT_PATH) else None


def _key_lines(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        m = re.match(r"^\s*\[?\s*\"?([A-Za-z0-9_\-./*]+)\"?\s*[=\]]", line)
        if m:
            lines.setdefault(m.group(1), number)
    return lines


def load(option: Optional[str] = None) -> Config:
    """Read the configuration (see the module docstring); an empty Config when there is none."""
    path = config_path(option)
    if path is None:
        return Config()
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except OSError as err:
        raise InputError(f"cannot read the configuration: {err.strerror or err}", path=path) from None
    except UnicodeDecodeError:
        raise InputError("the configuration is not UTF-8 text", path=path) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column \d+\)", str(err))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err))
        raise InputError(f"not valid TOML: {message}", path=path, line=int(m.group(1)) if m else None) from None
    lines = _key_lines(text)

    def bad(key: str, message: str) -> InputError:
        return InputError(f"{key}: {message}", path=path, line=lines.get(key))

    for key in doc:
        if key not in _KEYS:
            raise bad(key, f"unknown key (expected one of: {', '.join(_KEYS)})")

    def id_list(key: str) -> Optional[frozenset[str]]:
        if key not in doc:
            return None
        value = doc[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(key, 'expected a list of check ids, e.g. ["LB001", "LB002"]')
        return check_ids(value, key, path, lines.get(key))

    fail_on = doc.get("fail-on")
    if fail_on is not None and fail_on not in FAIL_ON:
        raise bad("fail-on", f"{fail_on!r} is not one of: {', '.join(FAIL_ON)}")
    flows = doc.get("flows", [])
    if not isinstance(flows, list) or not all(isinstance(v, str) for v in flows):
        raise bad("flows", 'expected a list of ADDR:PORT[/tcp|/udp], e.g. ["127.0.0.53:53/udp"]')
    from .analyze.flows import parse_to

    parsed = []
    for spec in flows:
        try:
            parsed.append(parse_to(spec))
        except InputError as err:
            raise bad("flows", err.message) from None
    per_path = doc.get("per-path-ignores", {})
    if not isinstance(per_path, dict):
        raise bad("per-path-ignores", 'expected a table: "PATTERN" = ["LB004"]')
    ignores = []
    for pattern, ids in per_path.items():
        if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
            raise bad(pattern, "expected a list of check ids")
        ignores.append((pattern, check_ids(ids, f"per-path-ignores {pattern!r}", path, lines.get(pattern))))
    return Config(
        path=path,
        select=id_list("select"),
        ignore=id_list("ignore") or frozenset(),
        fail_on=fail_on,
        flows=tuple(parsed),
        per_path_ignores=tuple(ignores),
        lines=lines,
    )


def with_options(config: Config, select: Optional[str], ignore: Optional[str], fail_on: Optional[str]) -> Config:
    """The configuration with the command line's --select (replaces), --ignore (adds), --fail-on."""
    from dataclasses import replace

    return replace(
        config,
        select=check_ids([select], "--select") if select else config.select,
        ignore=config.ignore | (check_ids([ignore], "--ignore") if ignore else frozenset()),
        fail_on=fail_on or config.fail_on,
    )

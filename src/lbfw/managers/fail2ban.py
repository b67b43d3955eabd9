"""fail2ban's ignore list: which loopback clients it may ban, where that is set, and the jail.local fix.

fail2ban reads jail.conf, jail.d/*.conf, jail.local, jail.d/*.local in that order, later files
winning. `ignoreself` (on by default) spares 127.0.0.1 and ::1 only, and jail.conf ships
`ignoreip = 127.0.0.1/8 ::1` commented out: load-test clients on 127.0.0.2 and up that fail to log
in are banned, and the ban (`-s 127.0.0.2 -j REJECT` in f2b-*) lands ahead of the lo accept.
Shared by `lbfw doctor` (DR040) and the LB008 check; the reading of /etc is ``read_jail_files``.
"""

from __future__ import annotations

import configparser
import glob
import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

JAIL_CONF = "/etc/fail2ban/jail.conf"
JAIL_LOCAL = "/etc/fail2ban/jail.local"
JAIL_D = "/etc/fail2ban/jail.d/"
SOCKET = "/run/fail2ban/fail2ban.sock"
RELOAD = ("fail2ban-client", "reload")
FIXED = ("127.0.0.1/8", "::1")

_LOOP = ipaddress.IPv4Network("127.0.0.0/8")
_KEY = re.compile(r"^(?P<key>ignoreip)\s*[=:]\s*(?P<value>.*)$")
_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")


def read_jail_files() -> dict:
    """{path: text} of the jail files on this host ({} when fail2ban is not installed)."""
    paths = [JAIL_CONF, *sorted(glob.glob(JAIL_D + "*.conf")), JAIL_LOCAL, *sorted(glob.glob(JAIL_D + "*.local"))]
    files = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                files[path] = handle.read()
        except OSError:
            continue
    return files


def _rank(path: str) -> tuple:
    """fail2ban's reading order: jail.conf, jail.d/*.conf, jail.local, jail.d/*.local (each sorted)."""
    in_d = path.startswith(JAIL_D)
    if path == JAIL_CONF:
        return (0, path)
    if in_d and path.endswith(".conf"):
        return (1, path)
    if path == JAIL_LOCAL:
        return (2, path)
    return (3, path)


def _jail_paths(files: dict) -> list:
    jails = (
        p
        for p in files
        if files[p] and (p in (JAIL_CONF, JAIL_LOCAL) or (p.startswith(JAIL_D) and p.endswith((".conf", ".local"))))
    )
    return sorted(jails, key=_rank)


def covers_loopback(ignoreip: Optional[str]) -> bool:
    """Whether an `ignoreip` value covers all of 127.0.0.0/8."""
    for word in (ignoreip or "").replace(",", " ").split():
        try:
            net = ipaddress.ip_network(word, strict=False)
            if isinstance(net, ipaddress.IPv4Network) and _LOOP.subnet_of(net):
                return True
        except (ValueError, TypeError):
            continue
    return False


def effective_ignoreip(files: dict) -> dict:
    """{section: ignoreip} after reading the jail files in fail2ban's order ("DEFAULT" included)."""
    parser = configparser.RawConfigParser(strict=False, default_section="__none__")
    for path in _jail_paths(files):
        try:
            parser.read_string(files[path], source=path)
        except configparser.Error:
            continue
    out = {}
    default = parser.get("DEFAULT", "ignoreip", fallback=None) if parser.has_section("DEFAULT") else None
    out["DEFAULT"] = default
    for section in parser.sections():
        if section in ("DEFAULT", "INCLUDES"):
            continue
        if parser.has_option(section, "ignoreip"):
            out[section] = parser.get(section, "ignoreip")
    return out


@dataclass(frozen=True)
class Setting:
    """Where a section's ignoreip is set last (``path`` None: nowhere, ignoreself alone)."""

    section: str
    value: Optional[str]
    path: Optional[str] = None
    line: Optional[int] = None


def settings(files: dict) -> dict:
    """{section: Setting}: the ignoreip assignment that wins for every section that has one, and
    for DEFAULT always (its Setting has no path when no file sets it)."""
    found = {"DEFAULT": Setting("DEFAULT", None)}
    for path in _jail_paths(files):
        section = None
        last = None  # the Setting whose value continues on indented lines
        for number, raw in enumerate(files[path].split("\n"), 1):
            match = _SECTION.match(raw.strip())
            if match:
                section, last = match.group("name").strip(), None
                continue
            if raw[:1] in (" ", "\t") and raw.strip():
                if last is not None:
                    last = found[last.section] = Setting(
                        last.section, f"{last.value} {raw.strip()}".strip(), path, last.line
                    )
                continue
            last = None
            if section is None or section == "INCLUDES":
                continue
            key = _KEY.match(raw.strip())
            if key:
                last = found[section] = Setting(section, key.group("value").strip(), path, number)
    return found


def judged(value: Optional[str]) -> str:
    """The part of a value that is written out (an interpolated `%(...)s` default is not)."""
    return (value or "").split("%(", 1)[0]


def narrow(files: dict) -> list:
    """The Settings that leave 127.0.0.2-127.255.255.255 bannable (DEFAULT first)."""
    out = []
    for _, setting in sorted(settings(files).items(), key=lambda kv: (kv[0] != "DEFAULT", kv[0])):
        if not covers_loopback(judged(setting.value)):
            out.append(setting)
    return out


def fixed_value(value: Optional[str]) -> str:
    """``127.0.0.1/8 ::1`` followed by the value's other entries (127.0.0.1 and what 127/8 covers dropped)."""
    kept = []
    for word in (value or "").replace(",", " ").split():
        try:
            net = ipaddress.ip_network(word, strict=False)
        except ValueError:
            net = None
        if net is not None and (
            isinstance(net, ipaddress.IPv4Network) and net.subnet_of(_LOOP) or str(net) == "::1/128"
        ):
            continue
        if word not in kept:
            kept.append(word)
    return " ".join([*FIXED, *kept])


def jail_local_text(old: str, fixes: dict) -> str:
    """jail.local's text with ``{section: value}`` set: an existing `ignoreip` line of the section is
    replaced in place (its continuation lines dropped), else the line goes right under the section
    header, else the section is appended. Everything else stays as it was."""
    lines = old.split("\n") if old else []
    todo = dict(fixes)
    out: list = []
    section = None
    skipping = False
    for raw in lines:
        if skipping and raw[:1] in (" ", "\t") and raw.strip():
            continue  # continuation of the ignoreip line replaced
        skipping = False
        match = _SECTION.match(raw.strip())
        if match:
            section = match.group("name").strip()
            out.append(raw)
            if section in todo and not _has_key(lines, section):
                out.append(f"ignoreip = {todo.pop(section)}")
            continue
        if section in todo and raw[:1] not in (" ", "\t") and _KEY.match(raw.strip()):
            out.append(f"ignoreip = {todo.pop(section)}")
            skipping = True
            continue
        out.append(raw)
    if todo:
        while out and out[-1] == "":
            out.pop()
        for name, value in todo.items():
            out += (["", f"[{name}]"] if out else [f"[{name}]"]) + [f"ignoreip = {value}"]
        out.append("")
    return "\n".join(out)


def _has_key(lines: list, wanted: str) -> bool:
    section = None
    for raw in lines:
        match = _SECTION.match(raw.strip())
        if match:
            section = match.group("name").strip()
        elif section == wanted and raw[:1] not in (" ", "\t") and _KEY.match(raw.strip()):
            return True
    return False


def fixes(files: dict) -> list:
    """[(path, old text, new text)]: jail.local for every narrow setting, except one made in a
    jail.d/*.local (read after jail.local), which is fixed in its own file."""
    per_file: dict = {}
    for setting in narrow(files):
        path = setting.path if setting.path and _rank(setting.path)[0] == 3 else JAIL_LOCAL
        per_file.setdefault(path, {})[setting.section] = fixed_value(setting.value)
    out = []
    for path, values in per_file.items():
        old = files.get(path, "")
        out.append((path, old, jail_local_text(old, values)))
    return out

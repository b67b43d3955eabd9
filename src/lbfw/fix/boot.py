"""Where the live rules come back from at boot, found from what really loads them.

Loaders: netfilter-persistent (/etc/iptables/rules.v4, rules.v6), RHEL's iptables-services
(/etc/sysconfig/iptables, ip6tables; IPTABLES_SAVE_ON_STOP in iptables-config), Arch's
iptables.service (/etc/iptables/iptables.rules), nftables.service (the file its ExecStart names:
/etc/nftables.conf on Debian, /etc/sysconfig/nftables.conf on Fedora and RHEL), with nft's
includes and globs followed. For each table a live fix touched: the file and line that defines
it, or "not in any boot file: lost at reboot" with how to save it; a `flush ruleset` in the
boot files that would delete other managers' live tables is warned about. ``persist`` fixes
exactly the files that hold the rules, checks the result with the real loader (`nft -c -f`,
`iptables-restore --test`) in private mount and network namespaces first, and keeps a 0600
backup (fix/files.py).

Every path here is the host's own /etc: tests give lbfw a private /etc with a mount namespace.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Optional

from ..backends import NFTABLES, TableRef
from ..checks.owners import owner_of
from ..errors import LbfwError

NETFILTER_PERSISTENT = "netfilter-persistent"
IPTABLES_SERVICES = "iptables-services"
IPTABLES_SERVICE = "iptables.service"
NFTABLES_SERVICE = "nftables.service"

# (path, family, loader, the loader's config file)
_IPTABLES_FILES = (
    ("/etc/iptables/rules.v4", "ip", NETFILTER_PERSISTENT, None),
    ("/etc/iptables/rules.v6", "ip6", NETFILTER_PERSISTENT, None),
    ("/etc/sysconfig/iptables", "ip", IPTABLES_SERVICES, "/etc/sysconfig/iptables-config"),
    ("/etc/sysconfig/ip6tables", "ip6", IPTABLES_SERVICES, "/etc/sysconfig/ip6tables-config"),
    ("/etc/iptables/iptables.rules", "ip", IPTABLES_SERVICE, None),
    ("/etc/iptables/ip6tables.rules", "ip6", IPTABLES_SERVICE, None),
)
# nftables.service's units, the local override first; and the distributions' default files.
_NFT_UNITS = (
    "/etc/systemd/system/nftables.service",
    "/usr/lib/systemd/system/nftables.service",
    "/lib/systemd/system/nftables.service",
)
_NFT_DROPINS = "/etc/systemd/system/nftables.service.d/*.conf"
_NFT_DEFAULTS = ("/etc/nftables.conf", "/etc/sysconfig/nftables.conf", "/etc/nftables.nft")
_NFT_INCLUDE_PATH = "/etc"  # nft's built-in include path
_NFT_FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")

_EXEC_F = re.compile(r"(?:^|\s)-f\s+(\S+)")
_INCLUDE = re.compile(r'^\s*include\s+"([^"]+)"')
_TABLE = re.compile(r"^\s*(?:add\s+|create\s+)?table\s+(?:(" + "|".join(_NFT_FAMILIES) + r")\s+)?([^\s{;]+)")
_FLUSH_RULESET = re.compile(r"^\s*flush\s+ruleset\b")
_IPT_TABLE = re.compile(r"^\*(\S+)\s*$")


@dataclass(frozen=True)
class BootFile:
    """A file a boot-time loader reads: ``kind`` "ip" | "ip6" (iptables-restore) or "nft"."""

    path: str
    kind: str
    loader: str
    note: str = ""


@dataclass
class Contents:
    """What a boot file and the files it includes define: {(family, table): (path, line)}, the
    `flush ruleset` lines, and every file read (the top one first)."""

    tables: dict = field(default_factory=dict)
    flushes: list = field(default_factory=list)
    files: list = field(default_factory=list)


@dataclass(frozen=True)
class Place:
    """Where a live table is defined at boot."""

    boot: BootFile
    path: str
    line: int


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError:
        return None


def _shell_vars(text: str) -> dict:
    """KEY="value" lines of a sysconfig file."""
    out = {}
    for raw in text.splitlines():
        key, eq, value = raw.strip().partition("=")
        if eq and key and not key.startswith("#"):
            out[key.strip()] = value.strip().strip("\"'")
    return out


def nft_unit_files() -> list:
    """The files nftables.service loads (`nft -f PATH` in its ExecStart), the local override first."""
    units = [*_NFT_UNITS, *sorted(glob.glob(_NFT_DROPINS))]
    found = []
    for unit in units:
        text = _read(unit)
        for raw in (text or "").splitlines():
            if raw.strip().startswith("ExecStart=") or raw.strip().startswith("ExecReload="):
                for path in _EXEC_F.findall(raw):
                    if path not in found:
                        found.append(path)
    return found


def boot_files() -> list:
    """Every boot-time rules file on this host, with the loader that reads it."""
    found = []
    for path, family, loader, config in _IPTABLES_FILES:
        if not os.path.isfile(path):
            continue
        note = ""
        if config is not None and _shell_vars(_read(config) or "").get("IPTABLES_SAVE_ON_STOP", "no") == "yes":
            note = (
                f"IPTABLES_SAVE_ON_STOP=yes in {config}: iptables-services saves the live rules over "
                f"{path} when it stops"
            )
        found.append(BootFile(path, family, loader, note))
    for path in [*nft_unit_files(), *_NFT_DEFAULTS]:
        if os.path.isfile(path) and all(b.path != path for b in found):
            found.append(BootFile(path, "nft", NFTABLES_SERVICE))
    return found


def _strip_comment(line: str) -> str:
    out, quoted = [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            break
        out.append(ch)
    return "".join(out)


def _included(pattern: str, here: str) -> list:
    """The files an `include` names, as nft finds them: absolute, else in the including file's
    directory or nft's include path; a glob expands sorted."""
    bases = [""] if os.path.isabs(pattern) else [os.path.dirname(here), _NFT_INCLUDE_PATH]
    for base in bases:
        full = os.path.join(base, pattern) if base else pattern
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else ([full] if os.path.isfile(full) else [])
        if matches:
            return [m for m in matches if os.path.isfile(m)]
    return []


def contents(boot: BootFile) -> Contents:
    """The tables a boot file (and, for nft, every file it includes) defines."""
    found = Contents()
    if boot.kind != "nft":
        found.files.append(boot.path)
        for number, raw in enumerate((_read(boot.path) or "").split("\n"), 1):
            match = _IPT_TABLE.match(raw)
            if match:
                found.tables.setdefault((boot.kind, match.group(1)), (boot.path, number))
        return found
    _scan_nft(boot.path, found)
    return found


def _scan_nft(path: str, found: Contents) -> None:
    if path in found.files:
        return
    found.files.append(path)
    for number, raw in enumerate((_read(path) or "").split("\n"), 1):
        line = _strip_comment(raw)
        include = _INCLUDE.match(line)
        if include:
            for sub in _included(include.group(1), path):
                _scan_nft(sub, found)
            continue
        if _FLUSH_RULESET.match(line):
            found.flushes.append((path, number))
            continue
        table = _TABLE.match(line)
        if table:
            found.tables.setdefault((table.group(1) or "ip", table.group(2)), (path, number))


def boot_kind(ref: TableRef) -> str:
    return "nft" if ref.backend == NFTABLES else ref.family


def locate(ref: TableRef, boots: Iterable[BootFile], read: Callable = contents) -> Optional[Place]:
    """The boot file and line that define the live table ``ref``, or None."""
    for boot in boots:
        if boot.kind != boot_kind(ref):
            continue
        where = read(boot).tables.get((ref.family, ref.table))
        if where is not None:
            return Place(boot, *where)
    return None


def how_to_save(ref: TableRef, boots: Iterable[BootFile]) -> str:
    """The command that saves live table ``ref`` where the host's loader reads it."""
    same = [b for b in boots if b.kind == boot_kind(ref)]
    if ref.backend == NFTABLES:
        target = same[0].path if same else "/etc/nftables.conf"
        return (
            f"`nft list table {ref.family} {ref.table}` into {target} or a file it includes "
            "(and enable nftables.service)"
        )
    save = f"{'ip6tables' if ref.family == 'ip6' else 'iptables'}-{'legacy' if ref.backend == 'legacy' else 'nft'}-save"
    if same:
        return f"`{save} -t {ref.table}` into {same[0].path} ({same[0].loader} loads it)"
    rules = "/etc/iptables/rules.v6" if ref.family == "ip6" else "/etc/iptables/rules.v4"
    return f"`netfilter-persistent save` (or `{save} > {rules}` with iptables-persistent installed)"


def not_saved(ref: TableRef, boots: list) -> str:
    """The warning for a fixed table no boot file defines."""
    return (
        f"warning: {ref.backend} {ref.family} {ref.table} is not in any boot file: the fix is lost at reboot. "
        f"Save it: {how_to_save(ref, boots)}\n"
    )


def managed_tables(ruleset) -> list:
    """'owner (family name)' for every live table in the nftables kernel a manager owns (iptables-nft
    tables count: `flush ruleset` deletes them as well)."""
    out = []
    for table in ruleset.tables:
        if table.backend == "legacy":
            continue
        owner = owner_of(table, None)
        if owner is None:
            owner = next((o for o in (owner_of(table, c) for c in table.chains.values()) if o), None)
        if owner is not None:
            out.append(f"{owner} ({table.family} {table.name})")
    return out


def flush_warning(boot: BootFile, found: Contents, ruleset) -> Optional[str]:
    """A warning when ``boot`` flushes the whole ruleset while managers' tables are live."""
    if not found.flushes:
        return None
    managed = managed_tables(ruleset)
    if not managed:
        return None
    path, line = found.flushes[0]
    return (
        f"warning: {path}:{line}: `flush ruleset`: reloading {boot.path} ({boot.loader}) deletes the live "
        f"tables of {', '.join(managed)}, which their managers do not put back until they restart. "
        "Flush only your own tables instead (`table inet filter {}` then `flush table inet filter`).\n"
    )


# --------------------------------------------------------------------------- the real loader

# In private mount and network namespaces: bind each fixed copy over its file, then run the loader.
_BIND_AND_RUN = (
    "import json, os, subprocess, sys\n"
    "for tmp, real in json.loads(sys.argv[1]):\n"
    "    subprocess.run(['mount', '--bind', tmp, real], check=True)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def loader_argv(boot: BootFile, backend: str) -> list:
    """The command that checks ``boot`` the way its loader reads it, without loading it."""
    if boot.kind == "nft":
        return ["nft", "-c", "-f", boot.path]
    tool = "ip6tables" if boot.kind == "ip6" else "iptables"
    return [f"{tool}-{'legacy' if backend == 'legacy' else 'nft'}-restore", "--test", boot.path]


def check_loads(boot: BootFile, backend: str, fixed: dict) -> None:
    """Raise LbfwError unless ``boot`` loads with its loader when ``fixed`` ({path: new text}) is
    what the files say: checked in private mount and network namespaces, nothing written."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise LbfwError("unshare (util-linux) is needed to check the fixed boot file before writing it")
    with tempfile.TemporaryDirectory(prefix="lbfw-boot-") as tmp:
        pairs = []
        for n, (path, text) in enumerate(fixed.items()):
            copy = os.path.join(tmp, f"{n}-{os.path.basename(path)}")
            with open(copy, "w", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(text)
            pairs.append((copy, os.path.realpath(path)))
        argv = [
            unshare,
            "-m",
            "-n",
            "--",
            sys.executable,
            "-c",
            _BIND_AND_RUN,
            json.dumps(pairs),
            *loader_argv(boot, backend),
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise LbfwError(f"could not run {loader_argv(boot, backend)[0]}: {error}") from None
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().replace(tmp, "")
        raise LbfwError(f"{' '.join(loader_argv(boot, backend))} rejects the fixed file: {said}")


# --------------------------------------------------------------------------- after a live fix


def persistence(touched: list, live_ruleset, style: str, persist: bool, err, boots: Optional[list] = None) -> None:
    """Say, for every table a live fix touched (or would touch), where it is loaded from at boot;
    with ``persist``, fix those files (checked with their loader first, a 0600 backup kept)."""
    from ..pipeline import audit_ruleset, read_ruleset
    from .files import file_fixes, write_fixed
    from .plan import plan_fixes

    boots = boot_files() if boots is None else boots
    read = _cached(contents)
    per_boot: dict = {}
    for ref in touched:
        place = locate(ref, boots, read)
        if place is None:
            err.write(not_saved(ref, boots))
            continue
        err.write(
            f"{ref.backend} {ref.family} {ref.table}: loaded at boot from {place.path}:{place.line} "
            f"({place.boot.loader})\n"
        )
        per_boot.setdefault(place.boot, []).append(ref)
    for boot, refs in per_boot.items():
        if boot.note:
            err.write(f"note: {boot.note}\n")
        warning = flush_warning(boot, read(boot), live_ruleset)
        if warning:
            err.write(warning)
        wanted = {(ref.family, ref.table) for ref in refs}
        try:
            ruleset = read_ruleset([boot.path], "auto", "auto")
            findings = [f for f in audit_ruleset(ruleset)[0] if (f.family, f.table) in wanted]
            plan = plan_fixes(ruleset, findings, style)
            fixes = file_fixes(plan)
        except LbfwError as error:
            err.write(f"{boot.path}: the rules are loaded from here at boot, but lbfw cannot read it: {error}\n")
            continue
        for refusal in plan.refusals:
            err.write(f"{refusal.where}: {refusal.check}: not fixed at boot: {refusal.why}\n")
        names = ", ".join(f"{r.family} {r.table}" for r in refs)
        if not fixes:
            err.write(f"{boot.path}: loaded at boot; it has no narrow loopback rule lbfw can fix in {names}\n")
            continue
        if not persist:
            for fix in fixes:
                err.write(
                    f"{fix.path}: loaded at boot and has the same mistake: the live fix is lost at reboot. "
                    f"Run `lbfw fix {boot.path} --write` (or add --persist).\n"
                )
            continue
        try:
            check_loads(boot, refs[0].backend, {f.path: f.new for f in fixes})
            written = write_fixed(fixes)
        except LbfwError as error:
            err.write(f"{boot.path}: not persisted: {error}\n")
            continue
        for path, backup in written:
            err.write(f"persisted: wrote {path} (the original is in {backup})\n")


def _cached(read: Callable) -> Callable:
    memo: dict = {}

    def cached(boot: BootFile) -> Contents:
        if boot not in memo:
            memo[boot] = read(boot)
        return memo[boot]

    return cached

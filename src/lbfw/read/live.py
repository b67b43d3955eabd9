"""The live host (root): every backend at once, nothing counted twice.

- legacy ip_tables / ip6_tables: ``iptables-legacy-save`` / ``ip6tables-legacy-save``
  (only when /proc/net/ip(6)_tables_names lists tables), or python-iptables with
  ``reader="iptc"``; parsed by ``iptables.parse`` with backend "legacy".
- iptables-nft: ``iptables-nft-save`` / ``ip6tables-nft-save`` (their nft JSON hides
  matches as ``xt`` expressions), backend "iptables-nft". The family+name of each table
  they print is "owned" by iptables-nft.
- native nftables: libnftables JSON, table by table, skipping the owned tables: the
  tables are found through `list chains` first (cheap; nftables 1.0.6's `list tables`
  fetches every rule) and only the others are listed in full, so a host with 140k
  iptables-nft rules never pulls them through nft JSON (13 s measured).
- host facts (``hostfacts``).

Two things iptables-nft-save 1.8.9 gets wrong, measured in a namespace, and what is
done about them:
- it prints the built-in chains of a table even when they do not exist in the kernel
  (iptables-nft creates base chains on demand): such chains, empty and absent from
  `nft list chains`, are dropped, so the model holds what the kernel holds;
- a native nft table that reuses an iptables table name is printed as if it were
  iptables-nft's, and a rule it cannot express (a verdict map) comes out as a bare
  `-A INPUT`; a table whose base chains are not iptables' ("contains incompatible
  base-chains") is printed with invented built-in chains and none of its rules. A table
  with a bare rule, or with chains in the kernel that the dump does not show, or that
  the tool calls incompatible, is read through nft JSON instead, which is right for
  both kinds of table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Optional

from ..errors import InputError, MissingDependencyError, NeedRootError
from ..model import (
    BACKEND_IPTABLES_NFT,
    BACKEND_LEGACY,
    BACKEND_NFTABLES,
    LazyRules,
    Origin,
    Ruleset,
    SourceInfo,
)

__all__ = ["read_live", "handle_texts", "READERS"]

READERS = ("auto", "text", "iptc")
_TIMEOUT = 300
# iptables-nft-save 1.8.9 says either "# Table `filter' is incompatible, use 'nft' tool." or
# "# Table `filter' contains incompatible base-chains, use 'nft' tool to list them." (and then
# still prints the table, with invented built-in chains and none of its rules: measured).
_INCOMPATIBLE = re.compile(r"^# Table `([^']+)' [^\n]*incompatible", re.MULTILINE)
_HANDLE_RE = re.compile(r"^(.*?)\s+# handle (\d+)\s*$")


# --------------------------------------------------------------------------- running tools


def _exe(name: str) -> Optional[str]:
    exe = shutil.which(name)
    if exe is None:
        for d in ("/usr/sbin", "/sbin"):
            if os.path.exists(os.path.join(d, name)):
                return os.path.join(d, name)
    return exe


class _Started:
    """A tool started now and waited for later: the iptables-nft dumps run in their own
    processes while lbfw lists the kernel's chains and reads the legacy tables (a 140,000-rule
    kube-proxy node: iptables-nft-save takes 1.8 s, `list chains` 0.4 s of it overlaps)."""

    def __init__(self, argv: list) -> None:
        self.name = argv[0]
        self.proc: Optional[subprocess.Popen] = None
        self.error = ""
        exe = _exe(argv[0])
        if exe is None:
            self.error = f"{argv[0]} is not installed"
            return
        try:
            self.proc = subprocess.Popen(
                [exe, *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
            )
        except OSError as err:
            self.error = f"{argv[0]}: {err}"

    def result(self) -> tuple:
        """(returncode, stdout, stderr); returncode None when the tool could not be started."""
        if self.proc is None:
            return None, "", self.error
        try:
            out, err = self.proc.communicate(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return 1, "", f"{self.name} took more than {_TIMEOUT} s"
        return self.proc.returncode, out, err

    def stop(self) -> None:
        """Kill it if it still runs (lbfw leaves early: an error, Ctrl-C)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def _run(argv: list) -> tuple:
    """(returncode, stdout, stderr); returncode None when the tool is not installed."""
    return _Started(argv).result()


class _Nft:
    """libnftables through the binding (one process), or the nft command."""

    def __init__(self):
        self.lib = None
        try:
            import nftables

            self.lib = nftables.Nftables()
        except (ImportError, OSError):
            self.lib = None
        if self.lib is None and shutil.which("nft") is None and not os.path.exists("/usr/sbin/nft"):
            raise MissingDependencyError(
                "neither libnftables (the `nftables` Python module) nor the nft command is available",
                hint="install the Debian packages nftables and libnftables1 (pip: pip-nftables)",
            )

    def json(self, cmd: str) -> dict:
        if self.lib is not None:
            # A context of its own, freed before the JSON is parsed: libnftables keeps the rule
            # cache of its last listing in the context (kube-proxy's nftables mode, 92,000 rules:
            # hundreds of MB that would otherwise sit beside the parsed document and the model).
            lib = type(self.lib)()
            lib.set_json_output(True)
            rc, out, err = lib.cmd(cmd)
            del lib
        else:
            rc, out, err = _run(["nft", "-j", *cmd.split()])
        if rc != 0:
            raise InputError(f"nft {cmd} failed: {(err or '').strip()}", path="live:nftables")
        return json.loads(out) if out and out.strip() else {"nftables": []}

    def text(self, cmd: str, in_process: bool = False) -> str:
        """The table as nft prints it, with handles (`-a`), set and map elements included: what
        lbfw's own reader parses for a big table, and the rule texts for any table.

        The nft command lists it when installed (``in_process`` False): libnftables' cache of
        the listing then dies with that process instead of staying in lbfw's heap beside the
        model (the model's objects never reuse what C code freed). Measured at 5,000 services:
        peak 297 MB in-process against 175 MB with the command (its own 169 MB included)."""
        have_cli = shutil.which("nft") is not None or os.path.exists("/usr/sbin/nft")
        if have_cli and not in_process:
            rc, out, err = _run(["nft", "-a", *cmd.split()])
        elif self.lib is not None:
            # a context of its own, freed before the text is parsed (as for the JSON)
            lib = type(self.lib)()
            lib.set_json_output(False)
            lib.set_handle_output(True)
            rc, out, err = lib.cmd(cmd)
            del lib
        else:
            rc, out, err = _run(["nft", "-a", *cmd.split()])
        if rc != 0:
            raise InputError(f"nft {cmd} failed: {(err or '').strip()}", path="live:nftables")
        return out or ""


def handle_texts(text: str, family: str, table: str) -> dict:
    """``{(family, table, handle): rule text}`` from `nft -a list table` output.

    A rule nft wraps over several lines (long anonymous sets) is joined back into one."""
    out = {}
    pending: list = []
    in_chain = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("chain ") and "{" in line:
            in_chain = True
            pending = []
            continue
        if line == "}":
            in_chain = False
            pending = []
            continue
        if not in_chain:
            continue  # sets, maps, flowtables: not rules
        if not pending and line.startswith(("type ", "policy ", "comment ", "devices ", "device ")):
            continue  # chain properties
        m = _HANDLE_RE.match(line)
        if m is None:
            pending.append(line)
            continue
        pending.append(m.group(1))
        out[(family, table, int(m.group(2)))] = " ".join(pending)
        pending = []
    return out


# --------------------------------------------------------------------------- backends


def _proc_tables(path: str) -> list:
    try:
        with open(path, encoding="ascii") as f:
            return [n.strip() for n in f if n.strip()]
    except OSError:
        return []


def _info(source: str, tables: list, warnings: list) -> SourceInfo:
    return SourceInfo(
        source=source,
        format="live",
        tables=len(tables),
        chains=sum(len(t.chains) for t in tables),
        rules=sum(c.rule_count for t in tables for c in t.chains.values()),
        warnings=tuple(warnings),
    )


def _read_legacy(reader: str, parse: Callable) -> tuple:
    tables, warnings = [], []
    for family, names_file, tool in (
        ("ip", "/proc/net/ip_tables_names", "iptables-legacy-save"),
        ("ip6", "/proc/net/ip6_tables_names", "ip6tables-legacy-save"),
    ):
        names = _proc_tables(names_file)
        if not names:
            continue  # no legacy tables: do not run the tool (it could load modules)
        if reader == "iptc":
            from . import iptc_reader

            text = iptc_reader.save_text(family, names)
        else:
            rc, text, err = _run([tool])
            if rc != 0:
                warnings.append(
                    f"{tool} failed ({(err or '').strip() or rc}); legacy {family} tables {', '.join(names)} not read"
                )
                continue
        tables.extend(parse(text, "live:legacy", family=family, backend=BACKEND_LEGACY))
    return tables, warnings


_IPTABLES_NFT_SAVE = (("ip", "iptables-nft-save"), ("ip6", "ip6tables-nft-save"))


def _read_iptables_nft(parse: Callable, kernel_chains: Optional[set], dumps: dict) -> tuple:
    """Tables iptables-nft owns, read with *-nft-save (``dumps``: {tool: _Started}); also the
    set of (family, name) owned."""
    tables, warnings, owned, suspect = [], [], set(), set()
    for family, tool in _IPTABLES_NFT_SAVE:
        rc, text, err = dumps[tool].result()
        if rc is None:
            warnings.append(f"{tool} is not installed: iptables-nft tables are read as native nft tables")
            continue
        if rc != 0:
            warnings.append(
                f"{tool} failed ({(err or '').strip() or rc}): iptables-nft {family} tables are "
                "read as native nft tables"
            )
            continue
        if not text.strip():
            continue
        incompatible = set(_INCOMPATIBLE.findall(text))
        if incompatible:
            warnings.append(
                f"{tool}: table(s) {', '.join(sorted(incompatible))} are not iptables-nft's: read as native nft tables"
            )
        for table in parse(text, "live:iptables-nft", family=family, backend=BACKEND_IPTABLES_NFT):
            if table.name in incompatible:
                continue
            if _has_bare_rule(table) or _hides_chains(table, kernel_chains):
                suspect.add((table.family, table.name))
                continue
            if kernel_chains is not None:
                for name in [
                    n
                    for n, c in table.chains.items()
                    if c.is_base and not c.rule_count and (table.family, table.name, n) not in kernel_chains
                ]:
                    del table.chains[name]  # invented by iptables-nft-save: not in the kernel
            owned.add((table.family, table.name))
            tables.append(table)
    if suspect:
        warnings.append(
            "iptables-nft-save cannot show all of "
            + ", ".join(f"{f} {n}" for f, n in sorted(suspect))
            + " (a rule with neither match nor target, or chains it does not list): read through "
            "nft JSON instead (a native table with an iptables name?)"
        )
    return tables, warnings, owned


def _hides_chains(table, kernel_chains: Optional[set]) -> bool:
    """The kernel holds chains of this table that the *-save output does not show: it is not
    (only) iptables-nft's, and reading it through *-save would lose them."""
    if kernel_chains is None:
        return False
    return any(f == table.family and t == table.name and c not in table.chains for f, t, c in kernel_chains)


def _has_bare_rule(table) -> bool:
    """A rule with neither match nor target (`-A CHAIN`): what *-nft-save prints for a native
    rule it cannot show. Lines the reader deferred all have a target, so they are not looked at
    (building them would cost seconds on a kube-proxy node)."""
    for chain in table.chains.values():
        rules = chain.rules
        for rule in rules.built_rules() if isinstance(rules, LazyRules) else rules:
            if (
                not rule.matches
                and rule.action.kind == "continue"
                and not rule.action.target
                and len(rule.text.split()) == 2
            ):
                return True
    return False


# From this size of a table's `nft -a list table` text on, lbfw parses the text itself
# (read/nft/text.py) instead of listing the table again as JSON: nftables 1.0.6 dumps every rule
# and element of the table for any listing, and the JSON one of kube-proxy's nftables mode at
# 10,000 services (92,000 rules) took 754 MB and 8.5 s in libnftables, the text one 334 MB and
# 7.1 s. Smaller tables are read from the JSON, the texts taken from the listing.
TEXT_PARSE_MIN_BYTES = 1_000_000
NATIVE_READERS = ("auto", "json", "text")


def _read_native(nft: _Nft, table_keys: list, owned: set, native: str = "auto") -> tuple:
    """The native tables (not iptables-nft's): ``native`` "json" reads each from libnftables
    JSON (texts from the listing), "text" parses the listing with lbfw's own reader, "auto"
    parses listings of at least TEXT_PARSE_MIN_BYTES and falls back to JSON where the reader
    does not implement the grammar."""
    from .nft import tables as nft_tables
    from .nft.text import Unsupported, parse_text

    warnings: list[str]
    tables, warnings = [], []
    for family, name in table_keys:
        if (family, name) in owned:
            continue  # read from iptables-nft-save: never twice
        text = nft.text(f"list table {family} {name}")
        if native == "text" or (native == "auto" and len(text) >= TEXT_PARSE_MIN_BYTES):
            try:
                parsed = parse_text(text, "live:nftables", "/", BACKEND_NFTABLES, listing=True)
            except Unsupported as why:
                if native == "text":
                    raise
                warnings.append(
                    f"nft table {family} {name} ({len(text) // 1000:,} kB listed) holds what lbfw's own nft "
                    f"reader does not implement ({why}): read from libnftables JSON"
                )
            else:
                tables.extend(parsed.tables)
                if native == "auto":
                    warnings.append(
                        f"nft table {family} {name} ({len(text) // 1000:,} kB listed): read from nft's own "
                        "text listing by lbfw's reader, not from libnftables JSON (which would take twice the memory)"
                    )
                continue
        texts = handle_texts(text, family, name)
        del text
        doc = nft.json(f"list table {family} {name}")
        tables.extend(nft_tables.parse(doc, "live:nftables", BACKEND_NFTABLES, text_of=texts))
    return tables, warnings


def _kernel_chains(nft: Optional[_Nft]) -> tuple:
    """(set of (family, table, chain), [(family, table)] in kernel order) from `list chains`.

    `list chains` is cheap (0.1 s with 3,000 iptables-nft chains and 33,000 rules, measured)
    where nftables 1.0.6's `list tables` fetches every rule (3.5-7 s there). A table with no
    chain at all sees no packet, so listing tables through their chains misses nothing that
    matters; ``([], None)`` when it cannot be listed."""
    if nft is None:
        return None, []
    try:
        doc = nft.json("list chains")
    except (InputError, ValueError):
        return None, []
    chains = set()
    tables: dict = {}
    for obj in doc.get("nftables", []):
        c = obj.get("chain") if isinstance(obj, dict) else None
        if not c:
            continue
        chains.add((c.get("family"), c.get("table"), c.get("name")))
        tables.setdefault((c.get("family"), c.get("table")), None)
    return chains, list(tables)


# --------------------------------------------------------------------------- entry point


def read_live(reader: str = "auto", is_root: Optional[bool] = None, native: str = "auto") -> Ruleset:
    """Read the live host's whole firewall (root) into one Ruleset.

    ``reader``: "auto"/"text" (legacy tables via iptables-legacy-save) or "iptc"
    (python-iptables). ``is_root`` overrides the euid check (tests). ``native``: how native
    nft tables are read ("auto", "json", "text": see ``_read_native``)."""
    if reader not in READERS:
        raise InputError(f"unknown reader {reader!r} (one of: {', '.join(READERS)})")
    if native not in NATIVE_READERS:
        raise ValueError(f"native must be one of {NATIVE_READERS}")
    root = (os.geteuid() == 0) if is_root is None else is_root
    if not root:
        raise NeedRootError(
            "reading the live firewall needs root (iptables-save and nft need CAP_NET_ADMIN)",
            hint="run as root: sudo lbfw audit   (or audit saved rulesets without root: "
            "lbfw audit /etc/iptables/rules.v4 /etc/nftables.conf)",
        )
    from .hostfacts import read_host_facts
    from .iptables import parse

    dumps = {tool: _Started([tool]) for _family, tool in _IPTABLES_NFT_SAVE}
    try:
        legacy, legacy_warn = _read_legacy(reader, parse)
        try:
            nft: Optional[_Nft] = _Nft()
            nft_warn: list = []
        except MissingDependencyError as err:
            nft, nft_warn = None, [str(err)]
        kernel_chains, table_keys = _kernel_chains(nft)
        ipt_nft, ipt_nft_warn, owned = _read_iptables_nft(parse, kernel_chains, dumps)
    finally:
        for started in dumps.values():
            started.stop()
    native_tables: list = []
    if nft is not None:
        native_tables, more = _read_native(nft, table_keys, owned, native)
        nft_warn.extend(more)
    ruleset = Ruleset(tables=legacy + ipt_nft + native_tables, host=read_host_facts())
    ruleset.sources = [
        _info("live:legacy", legacy, legacy_warn),
        _info("live:iptables-nft", ipt_nft, ipt_nft_warn),
        _info("live:nftables", native_tables, nft_warn),
    ]
    for table in ruleset.tables:
        if table.origin is None:
            table.origin = Origin(table.source)
    return ruleset

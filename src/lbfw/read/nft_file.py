"""nftables ruleset files, parsed by libnftables itself.

The file is loaded with the real libnftables inside a throwaway network
namespace (``unshare -n`` as root, ``unshare -rn`` otherwise) by
``nft_loader.py``, and read back as JSON: defines, includes, sets and maps are
resolved exactly as ``nft -f`` resolves them. Each rule is then mapped back to
its line in the source (following includes) by ``map_rule_lines``, a light
walk over the text that tracks table and chain blocks and ``add rule`` commands.

Includes: nft 1.0.6 looks relative ``include`` paths up in its include path
only; lbfw adds the file's own directory to it (as if ``nft -I DIR``), so
``include "sub/part.nft"`` works beside the file, as ``nft -f`` users expect.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..errors import InputError, MissingDependencyError
from ..model import BACKEND_FILE, Origin
from ..suppression import ignored_ids
from . import nft_json

__all__ = ["read", "load_json", "map_rule_lines", "RuleLine"]

_LOADER = str(Path(__file__).with_name("nft_loader.py"))
_DEFAULT_INCLUDE = "/etc"
_FAMILIES = frozenset(("ip", "ip6", "inet", "arp", "bridge", "netdev"))
_CHAIN_PROPS = frozenset(("type", "policy", "comment", "devices", "device", "priority", "flags"))
_TABLE_OBJECTS = frozenset(("set", "map", "flowtable", "counter", "quota", "ct", "limit", "secmark",
                            "synproxy", "tunnel"))
_ERR_RE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<c1>\d+)(?:-(?P<c2>\d+))?: Error: (?P<msg>.*)$",
                     re.MULTILINE)
_TOKEN = re.compile(r'"[^"\n]*"?|#[^\n]*|\\\n|\n|[{};]|[^\s{};"#]+')
_TIMEOUT = 120


@dataclass(frozen=True, slots=True)
class RuleLine:
    """Where one rule is written: the file (path as given or as the include resolved it),
    its 1-based line, and the statement's text."""

    path: str
    line: int
    text: str


# --------------------------------------------------------------------------- public

def read(path_or_text: Union[str, Path], source: str) -> list:
    """Load an nft ruleset file (or its text) with libnftables in a throwaway namespace
    and return its tables, every rule carrying ``Origin(path, line)`` and its source text.

    ``path_or_text``: a Path, a path string, or the ruleset text itself (e.g. stdin);
    ``source``: the name used in origins and messages (the path as given, or "-")."""
    text, path = _text_and_path(path_or_text, source)
    with tempfile.TemporaryDirectory(prefix="lbfw-nft-") as tmp:
        if path is None:
            load_path = os.path.join(tmp, "ruleset.nft")
            with open(load_path, "w", encoding="utf-8") as f:
                f.write(text)
            base_dir = os.getcwd()
        else:
            load_path = path
            base_dir = os.path.dirname(os.path.abspath(path))
        doc = load_json(load_path, source, include_dirs=[base_dir],
                        shown_as={load_path: source} if path is None else None)
    walker = _walk(text, source, base_dir)
    placed = _place(doc, walker.rules)
    blocks = walker.blocks
    text_of = {(fam, tab, handle): loc.text for (fam, tab, _chain, handle), loc in placed.items()}
    tables = nft_json.parse(doc, source, BACKEND_FILE, text_of=text_of)
    def where(key):
        found = blocks.get(key)
        return Origin(found[0], line=found[1]) if found is not None else Origin(source)

    lines = text.splitlines()  # lbfw-checks: `# lbfw: ignore LB002` on the line above a rule suppresses it
    for table in tables:
        fam, tname = table.family, table.name
        table.origin = where(("table", fam, tname))
        for named in table.sets.values():
            named.origin = where(("set", fam, tname, named.name))
        for chain in table.chains.values():
            chain.origin = where(("chain", fam, tname, chain.name))
            for rule in chain.rules:
                loc = placed.get((table.family, table.name, chain.name, rule.origin.handle))
                if loc is not None:
                    rule.origin = Origin(loc.path, line=loc.line)
                    above = lines[loc.line - 2].strip() if loc.path == source and 2 <= loc.line <= len(lines) + 1 else ""
                    if above.startswith("#") and "lbfw" in above:
                        rule.ignore = frozenset(rule.ignore) | ignored_ids(above)
                else:
                    rule.origin = Origin(source)
    return tables


def load_json(path: str, source: str, include_dirs: Optional[list] = None,
              shown_as: Optional[dict] = None) -> dict:
    """Load ``path`` into a throwaway network namespace and return `nft -j list ruleset`.

    Errors from nft become ``InputError(msg, path, line)``; ``shown_as`` renames
    paths in those messages (a temporary file -> "-")."""
    argv = _unshare_argv(source) + [sys.executable, "-I", _LOADER, "--not-netns", str(os.stat("/proc/self/ns/net").st_ino)]
    for d in include_dirs or []:
        argv += ["-I", d]
    argv.append(path)
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise InputError(f"libnftables took more than {_TIMEOUT} s to load the file", path=source) from None
    except OSError as err:
        raise MissingDependencyError(f"cannot run {argv[0]}: {err}", hint="install util-linux") from None
    if proc.returncode == 0:
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise InputError("libnftables printed no JSON for the loaded ruleset", path=source) from None
    err = proc.stderr or ""
    if proc.returncode == 4:
        raise MissingDependencyError(
            "reading nft files needs libnftables: neither the nftables Python module nor the nft command "
            "is installed", hint="install the Debian packages nftables and libnftables1 "
                                 "(and python3-nftables, or pip install pip-nftables)")
    if proc.returncode == 3 or "unshare:" in err and "Error:" not in err:
        raise InputError(
            "cannot load the nft file: creating a private network namespace failed "
            f"({err.strip() or 'unshare failed'}); run as root, or allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1)", path=source)
    m = _ERR_RE.search(err)
    if m is not None:
        epath = m.group("path")
        if shown_as and epath in shown_as:
            epath = shown_as[epath]
        msg = m.group("msg").strip()
        if msg.startswith("Could not process rule"):
            msg += " (the kernel here refused it: a missing module or feature)"
        raise InputError(msg, path=epath, line=int(m.group("line")))
    if "libnftables" in err and ("No such file" in err or "cannot open" in err.lower()):
        raise MissingDependencyError("libnftables.so.1 is missing", hint="install the Debian package libnftables1")
    raise InputError(err.strip().splitlines()[-1] if err.strip() else "nft could not load the file", path=source)


def _unshare_argv(source: str) -> list:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise MissingDependencyError("unshare is not installed", hint="install the Debian package util-linux")
    if os.geteuid() == 0:
        return [unshare, "-n"]
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise InputError(
            "reading an nft file needs a private network namespace, and this user cannot create one "
            f"({probe.stderr.strip() or 'unshare -rn failed'}): run as root, or allow unprivileged user "
            "namespaces (sysctl kernel.unprivileged_userns_clone=1)", path=source)
    return [unshare, "-rn"]


def _text_and_path(path_or_text, source: str) -> tuple:
    """(text, path or None). A str is a path when it names a file, or when it cannot be
    ruleset text (no newline, brace, semicolon or space): then a missing file is an error."""
    if isinstance(path_or_text, str) and not os.path.isfile(path_or_text) and (
            any(c in path_or_text for c in "\n{; \t") or not path_or_text):
        return path_or_text, None
    p = str(path_or_text)
    try:
        with open(p, encoding="utf-8", errors="surrogateescape") as f:
            return f.read(), p
    except FileNotFoundError:
        raise InputError("no such file", path=source) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a ruleset file", path=source) from None
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", path=source) from None


# --------------------------------------------------------------------------- rules -> lines

def _place(doc, lines: dict) -> dict:
    """Assign the mapped source lines to the JSON rules, in order per chain.

    A chain whose rule count differs from what the walk found (a `delete rule` in the
    file, an include resolved differently) gets no lines at all: no line is better than
    a line off by one, which would send findings and the fixer to the wrong rule."""
    items = doc.get("nftables", []) if isinstance(doc, dict) else doc
    per_chain: dict = {}
    for obj in items:
        rule = obj.get("rule") if isinstance(obj, dict) else None
        if rule is not None:
            per_chain.setdefault((rule.get("family"), rule.get("table"), rule.get("chain")), []).append(
                rule.get("handle"))
    placed = {}
    for key, handles in per_chain.items():
        locs = lines.get(key)
        if locs is None or len(locs) != len(handles):
            continue
        for handle, loc in zip(handles, locs):
            placed[key + (handle,)] = loc
    return placed


class _Walker:
    """Walk nft source text (following includes) and record where each rule is written."""

    def __init__(self, base_dir: str, absolute: bool):
        self.base_dir = base_dir
        self.absolute = absolute  # show included paths absolute (else relative to the cwd)
        self.rules: dict = {}     # (family, table, chain) -> list[RuleLine]
        self.blocks: dict = {}    # ("table"|"chain"|"set", family, table[, name]) -> (path, line)
        self.stack: list = [("top", None)]
        self.depth = 0

    # -- statements

    def _flush(self, words: list, path: str, line: int, text: str) -> None:
        if not words:
            return
        kind, info = self.stack[-1]
        w0 = words[0]
        if w0 == "include" and len(words) >= 2:
            self._include(words[1].strip('"'), path)
            return
        if kind == "chain":
            if w0 in _CHAIN_PROPS:
                return
            self.rules.setdefault(info, []).append(RuleLine(path, line, text))
        elif kind == "top":
            self._command(words, path, line, text)

    def _command(self, words: list, path: str, line: int, text: str) -> None:
        w0 = words[0]
        if w0 in ("add", "insert", "create") and len(words) > 2 and words[1] == "rule":
            fam, rest = _family(words[2:])
            if len(rest) < 3:
                return
            key = (fam, rest[0], rest[1])
            # the statement text without the command prefix, as nft lists the rule
            loc = RuleLine(path, line, _strip_words(text, 2 + (len(words) - 2 - len(rest)) + 2))
            if w0 == "insert":
                self.rules.setdefault(key, []).insert(0, loc)
            else:
                self.rules.setdefault(key, []).append(loc)
        elif w0 == "flush" and len(words) >= 2 and words[1] == "ruleset":
            self.rules.clear()
        elif w0 in ("flush", "delete", "destroy") and len(words) >= 3 and words[1] in ("table", "chain"):
            fam, rest = _family(words[2:])
            if words[1] == "table" and rest:
                for key in [k for k in self.rules if k[0] == fam and k[1] == rest[0]]:
                    del self.rules[key]
            elif words[1] == "chain" and len(rest) >= 2:
                self.rules.pop((fam, rest[0], rest[1]), None)

    def _open_block(self, words: list, where: tuple) -> bool:
        """`{` after ``words``: push a table/chain/skip block, or return False (an expression brace).

        ``where`` (path, line) of the header is kept for the table, chain or set it opens."""
        kind, info = self.stack[-1]
        w = words
        if kind == "top":
            if w and w[0] in ("add", "create") and len(w) > 1:
                w = w[1:]
            if w and w[0] == "table":
                fam, rest = _family(w[1:])
                if rest:
                    self.stack.append(("table", (fam, rest[0])))
                    self.blocks.setdefault(("table", fam, rest[0]), where)
                    return True
            if w and w[0] == "chain":
                fam, rest = _family(w[1:])
                if len(rest) >= 2:
                    self.stack.append(("chain", (fam, rest[0], rest[1])))
                    self.blocks.setdefault(("chain", fam, rest[0], rest[1]), where)
                    return True
            if w and w[0] in _TABLE_OBJECTS and words[0] in ("add", "create"):
                if w[0] in ("set", "map"):
                    fam, rest = _family(w[1:])
                    if len(rest) >= 2:
                        self.blocks.setdefault(("set", fam, rest[0], rest[1]), where)
                self.stack.append(("skip", None))
                return True
            return False
        if kind == "table":
            if w and w[0] == "chain" and len(w) >= 2:
                self.stack.append(("chain", (info[0], info[1], w[1].strip('"'))))
                self.blocks.setdefault(("chain", info[0], info[1], w[1].strip('"')), where)
                return True
            if w and w[0] in _TABLE_OBJECTS:
                if w[0] in ("set", "map") and len(w) >= 2:
                    self.blocks.setdefault(("set", info[0], info[1], w[1].strip('"')), where)
                self.stack.append(("skip", None))
                return True
            return False
        if kind == "skip":
            self.stack.append(("skip", None))
            return True
        return False

    # -- the token loop

    def walk(self, text: str, path: str) -> None:
        words: list = []
        start = end = 0
        start_line = 0
        expr = 0          # depth of expression braces inside the current statement
        line = 1
        pos = 0
        search = _TOKEN.search
        while True:
            m = search(text, pos)
            if m is None:
                break
            pos = m.end()
            tok = m.group()
            c = tok[0]
            if c == "\n" or c == ";":
                if expr == 0:
                    if words:
                        self._flush(words, path, start_line, text[start:end])
                    words = []
                if c == "\n":
                    line += 1
                continue
            if c == "\\" and tok == "\\\n":
                line += 1
                continue
            if c == "#":
                continue
            if c == "{":
                if expr == 0 and self._open_block(words, (path, start_line if words else line)):
                    words = []
                    if self.stack[-1][0] == "skip":
                        # a set/map/object body (maybe 100,000 elements): jump to its end
                        pos, line = _skip_block(text, pos, line)
                        self.stack.pop()
                    continue
                expr += 1
            elif c == "}":
                if expr > 0:
                    expr -= 1
                else:
                    if words:
                        self._flush(words, path, start_line, text[start:end])
                    words = []
                    if len(self.stack) > 1:
                        self.stack.pop()
                    continue
            if not words:
                start, start_line = m.start(), line
            end = pos
            words.append(tok)
        if words:
            self._flush(words, path, start_line, text[start:end])

    def _include(self, name: str, from_path: str) -> None:
        if self.depth >= 16:
            return
        if os.path.isabs(name):
            found = sorted(glob.glob(name))
        else:
            found = []
            for d in (_DEFAULT_INCLUDE, self.base_dir):
                found = sorted(glob.glob(os.path.join(d, name)))
                if found:
                    break
        for inc in found:
            try:
                with open(inc, encoding="utf-8", errors="surrogateescape") as f:
                    inc_text = f.read()
            except OSError:
                continue
            shown = inc if self.absolute else os.path.relpath(inc)
            self.depth += 1
            self.walk(inc_text, shown)
            self.depth -= 1


_SKIP_TOKEN = re.compile(r'"[^"\n]*"?|#[^\n]*|[{}]')


def _skip_block(text: str, pos: int, line: int) -> tuple:
    """From just after a block's "{", the position after its matching "}" and the line there."""
    depth = 1
    for m in _SKIP_TOKEN.finditer(text, pos):
        c = m.group()[0]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return m.end(), line + text.count("\n", pos, m.end())
    return len(text), line + text.count("\n", pos)


def _family(words: list) -> tuple:
    if words and words[0] in _FAMILIES:
        return words[0], [w.strip('"') for w in words[1:]]
    return "ip", [w.strip('"') for w in words]


def _strip_words(text: str, n: int) -> str:
    """``text`` without its first ``n`` whitespace-separated words."""
    parts = text.split(None, n)
    return parts[n] if len(parts) > n else ""


def map_rule_lines(text: str, path: str, base_dir: Optional[str] = None) -> dict:
    """Where each rule of an nft file is written: ``{(family, table, chain): [RuleLine, ...]}``
    in chain order (``insert rule`` prepends), following includes relative to
    ``base_dir`` (default: the file's directory)."""
    return _walk(text, path, base_dir).rules


def _walk(text: str, path: str, base_dir: Optional[str] = None) -> "_Walker":
    walker = _Walker(base_dir or os.path.dirname(os.path.abspath(path)), os.path.isabs(path))
    walker.walk(text, path)
    return walker

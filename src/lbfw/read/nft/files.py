"""nftables ruleset files, parsed by libnftables itself.

The file is loaded with the real libnftables inside a throwaway network
namespace (``unshare -n`` as root, ``unshare -rn`` otherwise) by
``loader.py``, and read back as JSON: defines, includes, sets and maps are
resolved exactly as ``nft -f`` resolves them. Each rule is then mapped back to
its line in the source (following includes) by ``lines.py``, a light
walk over the text that tracks table and chain blocks and ``add rule`` commands.

Includes: nft 1.0.6 looks relative ``include`` paths up in its include path
only; lbfw adds the file's own directory to it (as if ``nft -I DIR``), so
``include "sub/part.nft"`` works beside the file, as ``nft -f`` users expect.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Union

from ...errors import InputError, MissingDependencyError
from ...model import BACKEND_FILE, Origin, Table
from ...suppression import ignored_ids
from . import tables as nft_tables
from .lines import place, walk

__all__ = ["read", "load_json"]

_LOADER = str(Path(__file__).with_name("loader.py"))
_ERR_RE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<c1>\d+)(?:-(?P<c2>\d+))?: Error: (?P<msg>.*)$", re.MULTILINE)
# The kernel's commit of one big transaction grows faster than the file: kube-proxy's nftables
# ruleset for 10,000 services (44,000 chains) took 84-180 s of `nft -f` here, nearly all kernel time.
_TIMEOUT = 600


# Above this size a file is read by lbfw's own reader (text.py) instead of a kernel load: nft -f
# of kube-proxy's ruleset took 1.4 s for 1,000 services (1.2 MB) but 96 s for 10,000 (12 MB).
TEXT_PARSE_MIN_BYTES = 1_000_000
PARSERS = ("auto", "kernel", "lbfw")


def read(
    path_or_text: Union[str, Path], source: str, parser: str = "auto", warnings: Optional[list] = None
) -> list[Table]:
    """Read an nft ruleset file (or its text) and return its tables, every rule carrying
    ``Origin(path, line)`` and its source text.

    ``path_or_text``: a Path, a path string, or the ruleset text itself (e.g. stdin);
    ``source``: the name used in origins and messages (the path as given, or "-").
    ``parser``: "kernel" loads the file with libnftables in a throwaway namespace and lists
    it back (nft's own check of every value); "lbfw" reads it with ``text.parse_text`` (raises
    ``text.Unsupported`` for grammar it does not implement); "auto" reads files of at least
    TEXT_PARSE_MIN_BYTES with lbfw's reader and falls back to the kernel for the rest.
    A note for the user goes to ``warnings`` when lbfw's reader was used."""
    if parser not in PARSERS:
        raise ValueError(f"parser must be one of {PARSERS}")
    text, path = _text_and_path(path_or_text, source)
    base_dir = os.getcwd() if path is None else os.path.dirname(os.path.abspath(path))
    if parser == "lbfw" or (parser == "auto" and len(text) >= TEXT_PARSE_MIN_BYTES):
        from .text import Unsupported, parse_text

        try:
            parsed = parse_text(text, source, base_dir)
        except Unsupported:
            if parser == "lbfw":
                raise
        else:
            if warnings is not None:
                warnings.append(
                    f"{source}: read by lbfw's own nft reader (the file is {len(text) // 1000:,} kB; loading it "
                    "into a kernel would take minutes): values, chains and sets are checked as nft checks them; "
                    f"for nft's own check run `nft -c -f {source}` as root, or `lbfw audit` a smaller file"
                )
            return _locate(parsed.tables, parsed.placed, parsed.blocks, text, source)
    with _terminate_cleans_up(), tempfile.TemporaryDirectory(prefix="lbfw-nft-") as tmp:
        if path is None:
            load_path = os.path.join(tmp, "ruleset.nft")
            with open(load_path, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            load_path = path
        doc = load_json(
            load_path, source, include_dirs=[base_dir], shown_as={load_path: source} if path is None else None
        )
    walker = walk(text, source, base_dir)
    placed = place(doc, walker.rules)
    tables = nft_tables.parse(doc, source, BACKEND_FILE, text_of=_texts(placed))
    return _locate(tables, placed, walker.blocks, text, source)


def _texts(placed: dict) -> dict:
    return {(fam, tab, handle): loc.text for (fam, tab, _chain, handle), loc in placed.items()}


def _locate(tables: list, placed: dict, blocks: dict, text: str, source: str) -> list:
    """Give tables, sets, chains and rules their place in the file (PATH:LINE) and the ids
    `# lbfw: ignore` comments above them suppress."""

    def where(key: tuple) -> Origin:
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
            if chain.policy is not None and chain.origin.source == source and chain.origin.line:
                chain.policy_ignore = _policy_ignore(lines, chain.origin.line)
            for rule in chain.rules:
                loc = placed.get((table.family, table.name, chain.name, rule.origin.handle))
                if loc is not None:
                    rule.origin = Origin(loc.path, line=loc.line)
                    in_text = loc.path == source and 2 <= loc.line <= len(lines) + 1
                    above = lines[loc.line - 2].strip() if in_text else ""
                    if above.startswith("#") and "lbfw" in above:
                        rule.ignore = frozenset(rule.ignore) | ignored_ids(above)
                else:
                    rule.origin = Origin(source)
    return tables


@contextlib.contextmanager
def _terminate_cleans_up() -> Iterator[None]:
    """SIGTERM raises SystemExit while the block runs (its temporary directory is then removed
    on the way out, as for Ctrl-C) instead of ending the process where it stands."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield  # a handler of the caller's own is in charge
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _dies_with_us() -> list:
    """setpriv --pdeathsig KILL: the kernel kills the loader when the lbfw thread that started
    it dies (the loader also asks for it itself: see loader.py)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


_POLICY_RE = re.compile(r"(^|[;{\s])policy\s")


def _policy_ignore(lines: list, chain_line: int) -> frozenset:
    """Check ids suppressed for a chain's policy: a `lbfw: ignore ID` comment on the line that
    says `policy ...` or a `#` line directly above it (searched from the chain's line to its
    first rule-like line)."""
    for number in range(chain_line, min(len(lines), chain_line + 12) + 1):
        text = lines[number - 1]
        code = text.split("#", 1)[0]
        if _POLICY_RE.search(code):
            here = ignored_ids(text[len(code) :]) if "#" in text else frozenset()
            above = lines[number - 2].strip() if number >= 2 else ""
            return here | (ignored_ids(above) if above.startswith("#") else frozenset())
        if "}" in code:
            break
    return frozenset()


def load_json(path: str, source: str, include_dirs: Optional[list] = None, shown_as: Optional[dict] = None) -> dict:
    """Load ``path`` into a throwaway network namespace and return `nft -j list ruleset`.

    Errors from nft become ``InputError(msg, path, line)``; ``shown_as`` renames
    paths in those messages (a temporary file -> "-")."""
    own_netns = str(os.stat("/proc/self/ns/net").st_ino)
    argv = (
        _dies_with_us()
        + _unshare_argv(source)
        + [sys.executable, "-I", _LOADER, "--not-netns", own_netns, "--parent", str(os.getpid())]
    )
    for d in include_dirs or []:
        argv += ["-I", d]
    argv.append(path)
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise InputError(f"libnftables took more than {_TIMEOUT} s to load the file", path=source) from None
    except OSError as exc:
        raise MissingDependencyError(f"cannot run {argv[0]}: {exc}", hint="install util-linux") from None
    if proc.returncode == 0:
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise InputError("libnftables printed no JSON for the loaded ruleset", path=source) from None
    err = proc.stderr or ""
    if proc.returncode == 4:
        raise MissingDependencyError(
            "reading nft files needs libnftables: neither the nftables Python module nor the nft command is installed",
            hint="install the Debian packages nftables and libnftables1 "
            "(and python3-nftables, or pip install pip-nftables)",
        )
    if proc.returncode == 3 or "unshare:" in err and "Error:" not in err:
        raise InputError(
            "cannot load the nft file: creating a private network namespace failed "
            f"({err.strip() or 'unshare failed'}); run as root, or allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1)",
            path=source,
        )
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
            "namespaces (sysctl kernel.unprivileged_userns_clone=1)",
            path=source,
        )
    return [unshare, "-rn"]


def _text_and_path(path_or_text: Union[str, Path], source: str) -> tuple:
    """(text, path or None). A str is a path when it names a file, or when it cannot be
    ruleset text (no newline, brace, semicolon or space): then a missing file is an error."""
    if (
        isinstance(path_or_text, str)
        and not os.path.isfile(path_or_text)
        and (any(c in path_or_text for c in "\n{; \t") or not path_or_text)
    ):
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

"""Readers: every place a ruleset comes from -> one ``model.Ruleset``.

``read_sources(sources, input_format, reader)`` is the one entry point the commands use.
Several sources are one host's ruleset (rules.v4 + rules.v6 + nftables.conf): every table of
every source is kept, same-named ones included, as the kernel keeps them all. No source at
all means the live host (``lbfw.read.live``).

The nft readers (``lbfw.read.nft``) and the live reader are imported only when a
source needs them, so reading an iptables dump needs neither libnftables nor root.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import Optional

from ..errors import InputError
from ..model import BACKEND_FILE, Ruleset, SourceInfo

__all__ = ["read_sources", "read_text", "source_bytes", "forget_read_once", "INPUT_FORMATS"]

INPUT_FORMATS = ("auto", "iptables-save", "ip6tables-save", "nft", "nft-json")


# Standard input and pipes named by path (`<(iptables-save)` is /dev/fd/63) can be read only once,
# but audit --verify, verify and fix read their sources twice: what they held is kept here for
# the command's run (regular files are read again: a 140k-rule dump is not kept twice).
_READ_ONCE: dict = {}


def forget_read_once() -> None:
    """Forget the kept pipes and standard input (a command starts afresh)."""
    _READ_ONCE.clear()


def source_bytes(source: str) -> bytes:
    """The bytes of a file, or of standard input ("-") or a pipe, read once and kept (see
    _READ_ONCE). OSError as open() raises it."""
    if source in _READ_ONCE:
        return _READ_ONCE[source]
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(source, "rb") as handle:
            data = handle.read()
            if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return data
    _READ_ONCE[source] = data
    return data


def read_text(source: str, stdin_bytes: Optional[bytes] = None) -> str:
    """The UTF-8 text of a file (or of standard input for "-"); InputError(path=source) when
    it is missing, a directory, unreadable, not UTF-8, or empty."""
    if source == "-":
        if stdin_bytes is None and "-" not in _READ_ONCE and sys.stdin.isatty():
            raise InputError(
                "standard input is a terminal: pipe a ruleset in (e.g. `iptables-save | lbfw audit -`)", path="-"
            )
        data = stdin_bytes if stdin_bytes is not None else source_bytes("-")
    else:
        try:
            data = source_bytes(source)
        except FileNotFoundError:
            raise InputError("no such file", path=source) from None
        except IsADirectoryError:
            raise InputError("is a directory, not a ruleset file (name the files in it)", path=source) from None
        except PermissionError:
            raise InputError("permission denied (run as a user who can read it)", path=source) from None
        except OSError as err:
            raise InputError(f"cannot read: {err.strerror or err}", path=source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(
            f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); is this a ruleset file?",
            path=source,
            line=line,
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise InputError("empty file: no ruleset to read", path=source)
    return text


def _parse_json(text: str, source: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"invalid JSON: {err.msg} (column {err.colno})", path=source, line=err.lineno) from None


def _read_one(source: str, text: str, fmt: str, warnings: list) -> list:
    """The tables of one source in format ``fmt``; notes for the user go to ``warnings``."""
    if fmt in ("iptables-save", "ip6tables-save"):
        from . import iptables

        return iptables.parse(
            text, source, family="ip6" if fmt == "ip6tables-save" else "ip", backend=BACKEND_FILE, warnings=warnings
        )
    if fmt == "nft":
        from .nft import files as nft_files

        # a path lets `include` resolve relative to the file; stdin has only its text
        return nft_files.read(text if source == "-" else source, source, warnings=warnings)
    if fmt == "nft-json":
        from .nft import tables as nft_tables

        return nft_tables.parse(_parse_json(text, source), source, backend=BACKEND_FILE)
    raise InputError(f"unknown input format {fmt!r} (one of: {', '.join(INPUT_FORMATS)})")


def read_sources(sources: list, input_format: str = "auto", reader: str = "auto") -> Ruleset:
    """Read ``sources`` (paths, or "-" for standard input) into one Ruleset.

    ``input_format`` "auto" detects each source's format from its content
    (``lbfw.read.detect``); any other value of INPUT_FORMATS applies to all sources.
    An empty ``sources`` reads the live host with ``reader`` (see ``lbfw.read.live``).
    Errors are InputError with the source's path (and line, where one is to blame).
    """
    if input_format not in INPUT_FORMATS:
        raise InputError(f"unknown input format {input_format!r} (one of: {', '.join(INPUT_FORMATS)})")
    if not sources:
        from .live import read_live

        return read_live(reader)
    if list(sources).count("-") > 1:
        raise InputError("'-' (standard input) can be given only once")
    from .detect import detect_format

    ruleset = Ruleset()
    for source in sources:
        text = read_text(source)
        if input_format == "auto":
            try:
                fmt = detect_format(text)
            except InputError as err:
                raise InputError(err.message, path=source) from None
        else:
            fmt = input_format
        warnings: list = []
        tables = _read_one(source, text, fmt, warnings)
        ruleset.tables.extend(tables)
        ruleset.sources.append(
            SourceInfo(
                source=source,
                format=fmt,
                tables=len(tables),
                chains=sum(len(t.chains) for t in tables),
                rules=sum(c.rule_count for t in tables for c in t.chains.values()),
                warnings=tuple(warnings),
            )
        )
    return ruleset

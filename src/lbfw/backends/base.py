"""The seam between lbfw's live transaction (fix/live.py) and each firewall backend.

One module per backend (legacy.py, iptables_nft.py, nftables.py) implements `Backend`:

- ``dump(ref)``: the table as its own tool prints it (the text plans and backups are made of);
- ``locate(lines, target)``: the line of a dump holding a rule (by position or handle);
- ``apply(ref, changes)``: content-addressed changes in one kernel transaction: a rule is
  replaced only while it is exactly the rule lbfw read, in the same chain; otherwise nothing
  changes and `RuleMoved` (exit 1) says so. It returns the changes as made, whose
  ``inverse()`` undoes them (the revert: lbfw's own edits backwards, nothing else);
- ``restore(ref, text)``: the whole table put back from a backup (`rollback --whole-tables`);
- ``sandbox_load(ref, text, source)``: how to load a dump into a private namespace (the proof).

The one table of tool names is `TOOLS`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional

from ..errors import ApplyError, MissingDependencyError

if TYPE_CHECKING:
    from ..fix.plan import LiveTarget
    from ..sandbox.proof import Load

LEGACY, IPTABLES_NFT, NFTABLES = "legacy", "iptables-nft", "nftables"

# (backend, family) -> the tools that read and write it. nftables has one tool for every family.
TOOLS: dict[tuple[str, str], dict[str, str]] = {
    (LEGACY, "ip"): {"save": "iptables-legacy-save", "restore": "iptables-legacy-restore"},
    (LEGACY, "ip6"): {"save": "ip6tables-legacy-save", "restore": "ip6tables-legacy-restore"},
    (IPTABLES_NFT, "ip"): {"save": "iptables-nft-save", "restore": "iptables-nft-restore"},
    (IPTABLES_NFT, "ip6"): {"save": "ip6tables-nft-save", "restore": "ip6tables-nft-restore"},
    (NFTABLES, "*"): {"save": "nft", "restore": "nft"},
}
TIMEOUT = 120.0

_HANDLE = re.compile(r"\s*# handle (\d+)\s*$")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")


class RuleMoved(ApplyError):
    """The rule lbfw planned on is gone, changed or moved: nothing was changed (exit 1)."""

    exit_code = 1


def tool(name: str) -> str:
    """The path of a firewall tool, or MissingDependencyError."""
    path = shutil.which(name)
    if path is None:
        for folder in ("/usr/sbin", "/sbin"):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        raise MissingDependencyError(
            f"{name} is not installed", hint="Install the Debian packages iptables and nftables."
        )
    return path


def run_tool(argv: list[str], input: Optional[str] = None, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run a firewall tool (argument list, never a shell); text in, text out."""
    try:
        return subprocess.run(
            [tool(argv[0]), *argv[1:]],
            input=input,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            close_fds=True,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise ApplyError(f"{argv[0]} did not finish within {TIMEOUT:g} s") from None


def comparable(line: str) -> str:
    """A rule as compared between two reads: counters, the handle comment and spacing aside."""
    return " ".join(_COUNTER.sub("counter", _HANDLE.sub("", line)).split())


def handle_of(line: str) -> Optional[int]:
    """The handle an `nft -a` line ends with, or None."""
    m = _HANDLE.search(line)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class TableRef:
    """One live table: the backend that owns it, its family and its name."""

    backend: str  # legacy | iptables-nft | nftables
    family: str
    table: str

    @property
    def key(self) -> str:
        """The pseudo-source naming this table in plans and diffs."""
        return f"live:{self.backend}/{self.family}/{self.table}"

    @property
    def filename(self) -> str:
        ext = "nft" if self.backend == NFTABLES else "rules"
        return f"{self.backend}-{self.family}-{self.table}.{ext}"


@dataclass(frozen=True)
class Change:
    """One content-addressed change in one chain.

    ``old`` is the rule as lbfw read it (None: ``new`` is inserted right before the rule
    ``anchor``); ``new`` is what replaces it (None: ``old`` is deleted). iptables rules are
    written as iptables-save writes them after ``-A CHAIN``; nft rules as `nft list` writes them,
    without the handle comment. ``handle`` is the nft handle of ``old`` (or of ``anchor``)."""

    chain: str
    old: Optional[str]
    new: Optional[str]
    handle: Optional[int] = None
    anchor: Optional[str] = None

    def inverse(self) -> Change:
        """The change that undoes this one once it is made (``handle``: the new rule's now)."""
        if self.new is None:
            raise ApplyError(f"a deleted rule cannot be put back by content (chain {self.chain})")
        return Change(self.chain, self.new, self.old, self.handle)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Change:
        return cls(
            str(data["chain"]),
            data.get("old"),
            data.get("new"),
            int(data["handle"]) if data.get("handle") is not None else None,
            data.get("anchor"),
        )


class Backend(ABC):
    """What lbfw does with the live tables of one backend (see the module docstring)."""

    name: str

    @abstractmethod
    def dump(self, ref: TableRef) -> str:
        """The table as its backend prints it now ('' for a table that does not exist)."""

    @abstractmethod
    def locate(self, lines: list[str], target: LiveTarget) -> Optional[int]:
        """The 1-based line of ``lines`` (this backend's dump) holding the rule ``target`` names."""

    @abstractmethod
    def apply(self, ref: TableRef, changes: list[Change], strict: bool = True) -> list[Change]:
        """Make ``changes`` in one transaction, each only while its rule is exactly as read;
        returns them as made (their inverse() undoes them). RuleMoved when a rule is gone,
        changed or (``strict``) ended up elsewhere than where the old one stood: then nothing
        is changed."""

    @abstractmethod
    def restore(self, ref: TableRef, text: str) -> None:
        """Put the whole table back exactly as ``text`` holds it; touches no other table."""

    @abstractmethod
    def sandbox_load(self, ref: TableRef, text: str, source: str) -> Load:
        """How to load this table's dump ``text`` into a private namespace (sandbox/proof.py)."""

    @abstractmethod
    def change_of(
        self,
        chain: str,
        old_line: Optional[str],
        new_line: str,
        place: Optional[int],
        anchor_line: Optional[str] = None,
    ) -> Change:
        """The Change that turns dump line ``old_line`` into ``new_line`` (``place``: the nft
        handle of the rule; for an insert, ``old_line`` is None, ``anchor_line`` the rule it goes
        before and ``place`` that rule's handle)."""

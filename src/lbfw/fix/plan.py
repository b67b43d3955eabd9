"""Pure planning: findings in, line edits out.

`plan_fixes(ruleset, findings, style)` turns each LB002 (narrow loopback accept) and LB003
(narrow anti-spoofing) finding into an `Edit` of one line of its source (a file as
written, or a live table's dump: see fix/live.py), or a `Refusal` saying why lbfw will not
touch it. Nothing here reads the kernel; files are read only when ``texts`` does not
already hold them.

What a fix is:

- LB002, style "interface" (the default): the 127.0.0.1 match becomes `-i lo` on
  INPUT/PREROUTING and `-o lo` on OUTPUT/POSTROUTING (nft `iif "lo"` / `oif "lo"`), every
  other match kept. If the rule already says `-i lo`, the address match is dropped: that is
  the minimal change that lets all of lo through, and it leaves the rule as every
  distribution writes it. A user chain reached from both directions (or from FORWARD) gets
  127.0.0.0/8 instead, since one interface option cannot fit both.
- LB002, style "range", and LB003 always: 127.0.0.1 becomes 127.0.0.0/8 (::1 stays as it
  is). Dotted spellings stay dotted (`/255.255.255.255` -> `127.0.0.0/255.0.0.0`).
- An element of a set or verdict map becomes 127.0.0.0/8 (an interface cannot stand for
  one element), with `flags interval` added to a named set that lacks it.
- A define or named set used by rules no finding names is not widened under them: the
  use is fixed in the rule instead (a single-address define), or the fix is refused.
- Rules owned by a manager (Docker, kube-proxy, firewalld, fail2ban, fw4; ufw unless the
  file is ufw's own) are refused with the place the manager's configuration must change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Optional, Union

from ..checks import ALL as ALL_CHECKS
from ..checks.fixes import CheckFix
from ..checks.owners import advice as owner_advice
from ..checks.reach import JumpGraph
from ..model import IPTABLES_HOOK_OF_CHAIN, SYNTAX_IPTABLES, SYNTAX_NFT, Ruleset
from . import rewrite
from .rewrite import Refuse

# What each check declares about its fix (checks/lb00N_*.py `FIX`): which findings are planned,
# the --style choices, and the fix-safety text of each edit.
FIXES: dict[str, CheckFix] = {c.ID: c.FIX for c in ALL_CHECKS if c.FIX.planned}
FIXABLE = tuple(FIXES)
STYLES = tuple(dict.fromkeys(mode for fix in FIXES.values() for mode in fix.modes))
SAFETY = {(check, mode): text for check, fix in FIXES.items() for mode, text in fix.safety.items()}

IN_HOOKS = frozenset({"prerouting", "input"})
OUT_HOOKS = frozenset({"output", "postrouting"})

# Files that are a manager's own hand-edited configuration: fixing them is fixing the manager. Not ufw's
# user.rules / user6.rules: ufw writes those from `ufw allow ...` and they are never edited by hand.
_OWNER_FILES = {"ufw": ("before.rules", "before6.rules", "after.rules", "after6.rules")}


@dataclass(frozen=True)
class LiveTarget:
    """Where a live rule is: what fix/live.py needs to replace it in the kernel."""

    backend: str  # legacy | iptables-nft | nftables
    family: str  # ip | ip6 | inet | ...
    table: str
    chain: str
    handle: Optional[int] = None  # nft
    index: Optional[int] = None  # iptables (1-based in its chain)


@dataclass(frozen=True)
class Edit:
    """One changed (or inserted) line of a source.

    ``old`` is the line as read, without its line ending; None for an inserted line, which
    goes right after line ``line``. ``notes`` are (check, what was done, fix safety) texts."""

    source: str
    line: int
    old: Optional[str]
    new: str
    where: str
    notes: tuple = ()
    kind: str = "rule"  # rule | set | define | insert
    target: Optional[LiveTarget] = None

    @property
    def checks(self) -> tuple:
        return tuple(sorted({n[0] for n in self.notes}))


@dataclass(frozen=True)
class Refusal:
    """A finding lbfw will not fix, and why (in words a sysadmin acts on)."""

    check: str
    where: str
    rule: Optional[str]
    why: str
    owner: Optional[str] = None


@dataclass
class FixPlan:
    style: str
    edits: list = field(default_factory=list)
    refusals: list = field(default_factory=list)
    texts: dict = field(default_factory=dict)  # source -> the text the edits were planned on

    def sources(self) -> list:
        seen = []
        for edit in self.edits:
            if edit.source not in seen:
                seen.append(edit.source)
        return seen

    def edits_for(self, source: str) -> list:
        return [e for e in self.edits if e.source == source]

    @property
    def empty(self) -> bool:
        return not self.edits and not self.refusals


Locate = Callable[[object], Optional[tuple]]  # finding -> (source, line, LiveTarget|None)


def read_text(path: str) -> str:
    """A file's text exactly as its bytes (undecodable bytes survive the round trip); a pipe
    (`<(iptables-save)`) as the reader read it."""
    from ..read import source_bytes

    return source_bytes(path).decode("utf-8", "surrogateescape")


def split_lines(text: str) -> list:
    """Lines without their endings (an ending "\\n" does not make an empty last line)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if "\r" not in text:
        return lines
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _default_locate(finding) -> Optional[tuple]:
    origin = finding.rule.origin if finding.rule is not None else None
    source = (origin.source if origin is not None else None) or finding.source
    line = (origin.line if origin is not None else None) or finding.line
    if source is None or line is None or source.startswith("live:"):
        return None
    return (source, line, None)


# --------------------------------------------------------------------------- chain direction


class Topology:
    """Where a rule is, and which hooks reach its chain (checks/reach.py), per table."""

    def __init__(self, ruleset: Ruleset):
        self.ruleset = ruleset
        self._where: Optional[dict[int, tuple]] = None
        self._hooks: dict = {}

    def locate_rule(self, rule, table_name=None, chain_name=None):
        """(table, chain) holding this Rule object, or (None, None). The names, when known
        (a finding carries them), spare a walk over every rule of a 140,000-rule dump."""
        if table_name and chain_name:
            for table in self.ruleset.tables:
                chain = table.chains.get(chain_name) if table.name == table_name else None
                if chain is not None and any(r is rule for r in chain.rules):
                    return table, chain
        if self._where is None:
            self._where = {}
            for table in self.ruleset.tables:
                for chain in table.chains.values():
                    for r in chain.rules:
                        self._where[id(r)] = (table, chain)
        return self._where.get(id(rule), (None, None))

    def hooks(self, table, chain) -> frozenset:
        """The hooks whose base chains reach ``chain`` of ``table``."""
        key = id(table)
        if key not in self._hooks:
            self._hooks[key] = JumpGraph(table).chain_hooks()
        return self._hooks[key].get(id(chain), frozenset())


def direction_of(hooks: Union[set[str], frozenset[str]]) -> Optional[str]:
    """ "in" when only PREROUTING/INPUT reach the chain, "out" for OUTPUT/POSTROUTING, else None."""
    if hooks and hooks <= IN_HOOKS:
        return "in"
    if hooks and hooks <= OUT_HOOKS:
        return "out"
    return None


# --------------------------------------------------------------------------- the planner


def _safety(check: str, how: str) -> str:
    """The fix-safety text for what ``how`` says was done (an interface, a wider range, or both)."""
    parts = []
    if "replaced by" in how or "dropped" in how:
        parts.append(SAFETY.get((check, "interface"), SAFETY[(check, "range")]))
    if "widened" in how:
        parts.append(SAFETY[(check, "range")])
    return " ".join(dict.fromkeys(parts)) or SAFETY[(check, "range")]


class _Planner:
    def __init__(self, ruleset, findings, style, texts, locate):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}")
        self.ruleset = ruleset
        self.style = style
        self.texts = dict(texts or {})
        self.locate = locate or _default_locate
        self.topology = Topology(ruleset)
        self.plan = FixPlan(style=style)
        self.lines = {}  # source -> list of original lines
        self.current = {}  # (source, line) -> current text
        self.notes = {}  # (source, line) -> list of notes
        self.kinds = {}  # (source, line) -> kind
        self.targets = {}  # (source, line) -> LiveTarget
        self.inserts = {}  # (source, after_line) -> [text]
        self.findings = [f for f in findings if f.check in FIXABLE]
        self.finding_lines = set()
        for f in self.findings:
            if f.rule is None or f.deliberate or (f.owner and not self._owner_file_ok(f)):
                continue  # refused below: its rule keeps whatever a define or set gives it
            loc = self._locate(f)
            if loc is not None:
                self.finding_lines.add((loc[0], loc[1]))

    def _locate(self, finding):
        try:
            return self.locate(finding)
        except (KeyError, ValueError):
            return None

    def _source_lines(self, source: str) -> list:
        if source not in self.lines:
            if source not in self.texts:
                if source.startswith("live:") or source == "-":
                    raise Refuse(f"the text of {source} is not available to edit")
                try:
                    self.texts[source] = read_text(source)
                except OSError as err:
                    raise Refuse(f"cannot read {source}: {err.strerror}") from None
            self.lines[source] = split_lines(self.texts[source])
        return self.lines[source]

    def _get(self, source, line) -> str:
        key = (source, line)
        if key not in self.current:
            lines = self._source_lines(source)
            if not 1 <= line <= len(lines):
                raise Refuse(f"{source} has no line {line} (did it change since it was read?)")
            self.current[key] = lines[line - 1]
        return self.current[key]

    def _set(self, source, line, text, note, kind="rule", target=None):
        self.current[(source, line)] = text
        self.notes.setdefault((source, line), []).append(note)
        self.kinds.setdefault((source, line), kind)
        if target is not None:
            self.targets[(source, line)] = target

    # ------------------------------------------------------------------ per finding

    def run(self) -> FixPlan:
        done = set()
        for finding in self.findings:
            where = self._where(finding)
            text = finding.rule.text if finding.rule is not None else None
            try:
                if finding.owner and not self._owner_file_ok(finding):
                    raise Refuse(finding.extra.get("owner_advice") or owner_advice(finding.owner))
                if finding.rule is None:
                    raise Refuse("the finding names no rule")
                if finding.deliberate:
                    # An owner match (Tor ports opened to chosen users, as in Tails) makes the /32 a
                    # policy to confirm, not a typo to rewrite. A note without such evidence is a
                    # latent mistake (nothing fails because of it today) and is fixed.
                    raise Refuse(
                        "restricted by an owner match, so it looks deliberate (see the finding). Fix "
                        "it by hand if it is a mistake, or suppress it with a `lbfw: ignore "
                        f"{finding.check}` comment"
                    )
                loc = self._locate(finding)
                if loc is None:
                    raise Refuse("lbfw cannot tell which line of the source holds this rule")
                source, line, target = loc
                if (source, line, finding.check) in done:
                    continue
                done.add((source, line, finding.check))
                self._fix(finding, source, line, target)
            except Refuse as why:
                self.plan.refusals.append(Refusal(finding.check, where, text, str(why), finding.owner))
        self._emit()
        return self.plan

    def _where(self, finding) -> str:
        origin = finding.rule.origin if finding.rule is not None else None
        if origin is not None:
            where = origin.where()
        elif finding.source and finding.line:
            where = f"{finding.source}:{finding.line}"
        else:
            where = finding.source or "?"
        if finding.chain and (origin is None or origin.line is None):
            where += f" ({finding.table} {finding.chain})"
        return where

    def _owner_file_ok(self, finding) -> bool:
        origin = finding.rule.origin if finding.rule is not None else None
        source = origin.source if origin is not None else (finding.source or "")
        return os.path.basename(source) in _OWNER_FILES.get(finding.owner, ())

    def _fix(self, finding, source, line, target):
        table, chain = self.topology.locate_rule(finding.rule, finding.table, finding.chain)
        chain_name = chain.name if chain is not None else (finding.chain or "")
        modes = FIXES[finding.check].modes
        mode = self.style if self.style in modes else modes[0]
        direction = None
        fallback = ""
        if mode == "interface":
            hooks = (
                self.topology.hooks(table, chain)
                if table is not None
                else ({IPTABLES_HOOK_OF_CHAIN[chain_name].lower()} if chain_name in IPTABLES_HOOK_OF_CHAIN else set())
            )
            direction = direction_of(hooks)
            if direction is None:
                mode = "range"
                fallback = (
                    f" (chain {chain_name} is reached from "
                    f"{', '.join(sorted(hooks)) or 'no hook'}, so no single interface fits: "
                    "the address is widened instead)"
                )
        syntax = table.syntax if table is not None else None
        current = self._get(source, line)
        if syntax is None:
            syntax = SYNTAX_IPTABLES if current.lstrip().startswith(("-A ", "-I ", "--append ")) else SYNTAX_NFT
        if syntax == SYNTAX_IPTABLES:
            new, how = rewrite.rewrite_iptables(current, mode, direction)
            self._set(source, line, new, (finding.check, how + fallback, _safety(finding.check, how)), "rule", target)
            return
        try:
            new, how = rewrite.rewrite_nft(current, mode, direction)
        except Refuse as why:
            if "no 127.0.0.1 literal" not in str(why):
                raise
            self._fix_indirect(finding, source, line, target, current, mode, direction, fallback, table)
            return
        self._set(source, line, new, (finding.check, how + fallback, _safety(finding.check, how)), "rule", target)

    # ------------------------------------------------------------------ defines and named sets (files)

    def _fix_indirect(self, finding, source, line, target, current, mode, direction, fallback, table):
        if target is not None:
            self._fix_live_set(finding, source, line, target, current, mode, direction)
            return
        masked = rewrite.nft_mask(current)
        lines = self._source_lines(source)
        if (
            target is None
            and masked.count("{") > masked.count("}")
            and self._fix_multiline_set(finding, source, line, lines)
        ):
            return
        for name in re.findall(r"\$(\w+)", masked):
            found = self._define(lines, name)
            if found is None:
                continue
            def_line, value = found
            if not rewrite.nft_narrow(rewrite.nft_mask(value)):
                continue
            self._fix_define(finding, source, line, current, name, def_line, value, mode, direction, fallback)
            return
        for name in re.findall(r"@(\w+)", masked):
            block = self._set_block(lines, name, table)
            if block is None:
                continue
            first, last = block
            if not any(rewrite.nft_narrow(rewrite.nft_mask(self._get(source, i))) for i in range(first, last + 1)):
                continue
            self._fix_named_set(finding, source, line, name, first, last)
            return
        raise Refuse("no 127.0.0.1 in the rule, its defines or its named sets: lbfw cannot tell what to change")

    def _fix_multiline_set(self, finding, source, line, lines) -> bool:
        """An anonymous set or verdict map written over several lines (`ip saddr {` ... `} accept`):
        its 127.0.0.1 elements become 127.0.0.0/8 where they stand. False when it holds none."""
        depth, last = 0, None
        for number in range(line, len(lines) + 1):
            masked = rewrite.nft_mask(self._get(source, number))
            depth += masked.count("{") - masked.count("}")
            if depth <= 0:
                last = number
                break
        if last is None:
            return False
        span = range(line + 1, last + 1)
        hits = {n: rewrite.nft_narrow(rewrite.nft_mask(self._get(source, n))) for n in span}
        if not any(hits.values()):
            return False
        body = " ".join(rewrite.nft_mask(self._get(source, n)) for n in range(line, last + 1))
        others = [
            m.group(0)
            for m in re.finditer(r"(?<![\w.])127\.\d+\.\d+\.\d+(?:/\d+)?", body)
            if not rewrite.nft_narrow(m.group(0))
        ]
        if others:
            raise Refuse(
                f"the set also lists {', '.join(others)}: 127.0.0.0/8 would overlap it; merge the elements by hand"
            )
        how = "the 127.0.0.1 set element widened to 127.0.0.0/8"
        for number, found in hits.items():
            if found:
                text = self._get(source, number)
                self._set(
                    source,
                    number,
                    rewrite.splice(text, [rewrite.Span(a, b, rewrite.WIDE) for a, b in found]),
                    (finding.check, how, _safety(finding.check, how)),
                    "set",
                )
        return True

    def _fix_live_set(self, finding, source, line, target, current, mode, direction):
        """A live rule whose 127.0.0.1 comes from a named set (`ip saddr @ok4 accept`): a copy of
        the rule with the set match replaced by the fix (`iif "lo"`, or 127.0.0.0/8) goes right
        before it. The set is not touched: nft 1.0.6 cannot add `flags interval` to an existing
        set ("File exists", measured) and refuses a prefix element without it, and other rules
        may use the set."""
        masked = rewrite.nft_mask(current)
        uses = list(re.finditer(r"\bip\s+([sd]addr)\s+(!=\s*)?@(\w+)", masked))
        if len(uses) != 1 or uses[0].group(2) or "vmap" in masked or "map" in masked.split():
            raise Refuse(
                "the address comes from a named set or map lbfw cannot fix live: change its element "
                "in the file the set is loaded from (--persist), or by hand"
            )
        use = uses[0]
        if mode == "interface" and direction is not None:
            match = 'iif "lo"' if direction == "in" else 'oif "lo"'
            how = f"the match on @{use.group(3)} copied before the rule as {match} (the set is left as it is)"
        else:
            match = f"ip {use.group(1)} {rewrite.WIDE}"
            how = f"the match on @{use.group(3)} copied before the rule as {rewrite.WIDE} (the set is left as it is)"
        copy = current[: use.start()] + match + current[use.end() :]
        copy = re.sub(r"\s*# handle \d+\s*$", "", re.sub(r"\bcounter packets \d+ bytes \d+", "counter", copy))
        note = (
            finding.check,
            how,
            _safety(finding.check, "replaced by" if "iif" in match or "oif" in match else "widened"),
        )
        self.inserts.setdefault((source, line - 1), []).append((copy, note, target))

    @staticmethod
    def _define(lines, name):
        pattern = re.compile(r"^\s*define\s+" + re.escape(name) + r"\s*=\s*(.*)$")
        for number, text in enumerate(lines, 1):
            m = pattern.match(text)
            if m:
                return number, m.group(1)
        return None

    def _other_uses(self, source, lines, pattern, skip) -> list:
        """Lines using ``pattern`` (outside comments) that no fixable finding names."""
        regex = re.compile(pattern)
        found = []
        for number, text in enumerate(lines, 1):
            if number in skip or (source, number) in self.finding_lines:
                continue
            if regex.search(rewrite.nft_mask(text)):
                found.append(number)
        return found

    def _fix_define(self, finding, source, line, current, name, def_line, value, mode, direction, fallback):
        lines = self._source_lines(source)
        others = self._other_uses(source, lines, r"\$" + re.escape(name) + r"(?!\w)", {def_line})
        is_set = "{" in value
        use = rewrite.nft_define_use(current, name)
        if mode == "interface" and not is_set and use is not None:
            # The rule's match on $NAME becomes the interface; the define keeps its other uses.
            literal = rewrite.nft_narrow(rewrite.nft_mask(value))[0]
            address = value[literal[0] : literal[1]]
            virtual = current[: use[3]] + address + current[use[1] :]
            new, how = rewrite.rewrite_nft(virtual, "interface", direction)
            how = how.replace("the 127.0.0.1 match", f"the match on ${name} (= {address})")
            self._set(source, line, new, (finding.check, how, SAFETY[(finding.check, "interface")]))
            return
        safety = SAFETY[(finding.check, "range")]
        if not others:
            def_text = self._get(source, def_line)
            masked = rewrite.nft_mask(def_text)
            eq = def_text.index("=")
            spans = [rewrite.Span(s, e, rewrite.WIDE) for s, e in rewrite.nft_narrow(masked) if s > eq]
            if spans:
                if is_set:
                    rewrite.widen_elements(def_text)  # refuses overlapping 127/8 elements
                self._set(
                    source,
                    def_line,
                    rewrite.splice(def_text, spans),
                    (
                        finding.check,
                        f"define {name}: 127.0.0.1 widened to 127.0.0.0/8 (no other rule uses it)" + fallback,
                        safety,
                    ),
                    "define",
                )
            return
        if is_set or use is None:
            raise Refuse(
                f"define ${name} is also used at line(s) {', '.join(map(str, others))}: widening its "
                "127.0.0.1 would change those rules too; give this rule its own define"
            )
        new = current[: use[3]] + rewrite.WIDE + current[use[1] :]
        self._set(
            source,
            line,
            new,
            (
                finding.check,
                f"${name} replaced by 127.0.0.0/8 in this rule; the define stays as it is "
                f"for line(s) {', '.join(map(str, others))}" + fallback,
                safety,
            ),
        )

    def _set_block(self, lines, name, table):
        start = None
        named = table.sets.get(name) if table is not None else None
        if named is not None and named.origin is not None and named.origin.line:
            start = named.origin.line
        pattern = re.compile(r"^\s*(?:set|map)\s+" + re.escape(name) + r"\s*\{")
        if start is None or not pattern.match(lines[start - 1] if start <= len(lines) else ""):
            start = next((n for n, t in enumerate(lines, 1) if pattern.match(t)), None)
        if start is None:
            return None
        depth = 0
        for number in range(start, len(lines) + 1):
            masked = rewrite.nft_mask(lines[number - 1])
            depth += masked.count("{") - masked.count("}")
            if depth <= 0:
                return start, number
        return None

    def _fix_named_set(self, finding, source, line, name, first, last):
        lines = self._source_lines(source)
        others = self._other_uses(source, lines, r"@" + re.escape(name) + r"(?!\w)", set(range(first, last + 1)))
        if others:
            raise Refuse(
                f"set @{name} is also used at line(s) {', '.join(map(str, others))}: widening its "
                "127.0.0.1 element would change those rules too; give this rule its own set"
            )
        body = " ".join(rewrite.nft_mask(self._get(source, i)) for i in range(first, last + 1))
        overlapping = [
            m.group(0)
            for m in re.finditer(r"(?<![\w.])127\.\d+\.\d+\.\d+(?:/\d+)?(?:-[\d.]+)?", body)
            if not rewrite.nft_narrow(m.group(0))
        ]
        if overlapping:
            raise Refuse(
                f"set @{name} also lists {', '.join(overlapping)}: 127.0.0.0/8 would overlap it; "
                "merge the elements by hand"
            )
        note = (
            finding.check,
            f"set @{name}: the element 127.0.0.1 widened to 127.0.0.0/8",
            SAFETY[(finding.check, "set")],
        )
        for number in range(first, last + 1):
            text = self._get(source, number)
            spans = [rewrite.Span(s, e, rewrite.WIDE) for s, e in rewrite.nft_narrow(rewrite.nft_mask(text))]
            if spans:
                self._set(source, number, rewrite.splice(text, spans), note, "set")
        self._ensure_interval(source, first, last, name, note)

    def _ensure_interval(self, source, first, last, name, note):
        flags_re = re.compile(r"\bflags\s+([\w]+(?:\s*,\s*\w+)*)")
        for number in range(first, last + 1):
            text = self._get(source, number)
            m = flags_re.search(rewrite.nft_mask(text))
            if m:
                if "interval" not in m.group(1).replace(" ", "").split(","):
                    new = text[: m.end()] + ", interval" + text[m.end() :]
                    self._set(
                        source,
                        number,
                        new,
                        (note[0], f"set @{name}: flags interval added (a prefix element needs it)", note[2]),
                        "set",
                    )
                return
        type_re = re.compile(r"\btype\s+[^;{}]*?(;|$)")
        for number in range(first, last + 1):
            text = self._get(source, number)
            m = type_re.search(rewrite.nft_mask(text))
            if m is None:
                continue
            how = (note[0], f"set @{name}: flags interval added (a prefix element needs it)", note[2])
            if m.group(1) == ";" and text[m.end() :].strip() not in ("", "}"):
                # One-line set: `set x { type ipv4_addr; elements = {...} }`
                self._set(source, number, text[: m.end()] + " flags interval;" + text[m.end() :], how, "set")
            else:
                indent = text[: len(text) - len(text.lstrip())]
                self.inserts.setdefault((source, number), []).append((indent + "flags interval", how))
            return
        raise Refuse(f"set @{name} has no `type` line lbfw can find to add `flags interval` after")

    # ------------------------------------------------------------------ output

    def _emit(self):
        for key in sorted(set(self.current) | set(self.inserts), key=lambda k: (self._order(k[0]), k[1])):
            source, line = key
            if key in self.current:
                old = self.lines[source][line - 1]
                new = self.current[key]
                if new != old:
                    self.plan.edits.append(
                        Edit(
                            source,
                            line,
                            old,
                            new,
                            self._where_line(source, line),
                            tuple(self.notes.get(key, ())),
                            self.kinds.get(key, "rule"),
                            self.targets.get(key),
                        )
                    )
            for text, note, *target in self.inserts.get(key, ()):
                where = self._where_line(source, line, target[0] if target else None)
                self.plan.edits.append(
                    Edit(source, line, None, text, where, (note,), "insert", target[0] if target else None)
                )
        self.plan.texts = {s: self.texts[s] for s in self.plan.sources()}

    def _order(self, source):
        order = list(dict.fromkeys(k[0] for k in list(self.current) + list(self.inserts)))
        return order.index(source)

    def _where_line(self, source, line, target=None):
        target = target or self.targets.get((source, line))
        if target is None:
            return f"{source}:{line}"
        place = f"handle {target.handle}" if target.handle is not None else f"#{target.index}"
        return f"{target.backend} {target.family} {target.table} {target.chain} {place}"


def plan_fixes(
    ruleset: Ruleset,
    findings: list,
    style: str = "interface",
    texts: Optional[Mapping[str, str]] = None,
    locate: Optional[Locate] = None,
) -> FixPlan:
    """Plan the fix of every LB002/LB003 finding.

    ``texts`` maps a source to its text (files are read from disk when absent);
    ``locate(finding) -> (source, line, LiveTarget|None)`` says which line of which text
    holds the finding's rule (default: the rule's file origin). Other checks are ignored.
    Edits on one line by several findings are merged into one Edit."""
    return _Planner(ruleset, findings, style, texts, locate).run()


def apply_to_text(text: str, edits: list) -> str:
    """The text with ``edits`` (all of one source) made; line endings and everything else kept.

    Raises ValueError when a line no longer reads as the edit expects."""
    lines = text.split("\n")
    inserted: dict[int, list[str]] = {}
    for edit in edits:
        if edit.old is None:
            inserted.setdefault(edit.line, []).append(edit.new)
            continue
        index = edit.line - 1
        raw = lines[index] if 0 <= index < len(lines) else None
        if raw is None:
            raise ValueError(f"line {edit.line} does not exist")
        cr = "\r" if raw.endswith("\r") else ""
        body = raw[:-1] if cr else raw
        if body != edit.old:
            raise ValueError(f"line {edit.line} changed: expected {edit.old!r}, found {body!r}")
        lines[index] = edit.new + cr
    for number in sorted(inserted, reverse=True):
        raw = lines[number - 1]
        cr = "\r" if raw.endswith("\r") else ""
        new = [t + cr for t in inserted[number]]
        if number == len(lines):  # after the last line, which has no newline
            lines[number - 1] = raw + "\n" + "\n".join(new)
        else:
            lines[number:number] = new
    return "\n".join(lines)

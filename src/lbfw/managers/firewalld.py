"""firewalld: direct rules and passthroughs (/etc/firewalld/direct.xml, where RHEL hosts keep
hand-written iptables rules) and zones' rich rules (/etc/firewalld/zones/*.xml). A narrow loopback
one is changed with `firewall-cmd --permanent`, then `firewall-cmd --reload`, never in the kernel:
firewalld puts its rules back on every reload.

Where they land (measured with firewalld 1.3 in a private namespace): on the nftables backend a
direct rule for `ipv4 filter INPUT` is an iptables-nft rule of `ip filter INPUT` itself (the iptables
backend uses INPUT_direct); a passthrough goes to the chain it names; a zone's rich rule is a rule
of `inet firewalld filter_IN_<zone>_allow` (`_deny`, `_log`, `_pre`, `_post`; IN_<zone>_* on the
iptables backend).

``read_config_files`` is the edge (it reads /etc); the rest is pure: ``parse`` reads the texts with
the line of each entry, ``attribute`` names the direct or rich rule behind a finding's kernel rule
and the commands that replace it.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import xml.parsers.expat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

from ..errors import InputError
from ..model import Action, Match, Rule

CONFIG = "/etc/firewalld"
RELOAD = ("firewall-cmd", "--reload")
TABLE = "firewalld"  # the nftables backend's own table (inet firewalld)

_CMD = ("firewall-cmd", "--permanent")
_NARROW = frozenset(("127.0.0.1", "127.0.0.1/32", "127.0.0.1/255.255.255.255"))
_WIDE = "127.0.0.0/8"
_FAMILY = {"ipv4": "ip", "ipv6": "ip6"}
_SOURCE_OPTS = ("-s", "--source", "--src")
_DEST_OPTS = ("-d", "--destination", "--dst")
# chains where the loopback interface can stand for the address (-i on the way in, -o on the way out)
_IN_CHAINS = ("INPUT", "PREROUTING")
_OUT_CHAINS = ("OUTPUT", "POSTROUTING")
_BUILTIN = _IN_CHAINS + _OUT_CHAINS + ("FORWARD",)
_ACTIONS = ("accept", "reject", "drop", "mark")
# which rich-rule actions land in which part of a zone's chains (log, pre and post take any)
_PART_ACTIONS = {"allow": ("accept",), "deny": ("reject", "drop")}
_ZONE_CHAIN = re.compile(r"^(?:filter_)?IN_(?P<zone>.+)_(?P<part>allow|deny|log|pre|post)$")


# --------------------------------------------------------------------------- what the files hold


@dataclass(frozen=True)
class DirectRule:
    """`<rule ipv table chain priority>ARGS</rule>` of direct.xml."""

    path: str
    line: int
    ipv: str
    table: str
    chain: str
    priority: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Passthrough:
    """`<passthrough ipv>ARGS</passthrough>` of direct.xml: iptables arguments run as they are."""

    path: str
    line: int
    ipv: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class RichRule:
    """A zone's `<rule>`: ``text`` is the rich-rule language firewall-cmd takes."""

    path: str
    line: int
    zone: str
    text: str
    source: Optional[str] = None  # the source address, when the rule has one (not inverted)
    ports: tuple[tuple[int, int], ...] = ()  # (low, high) of each `port` element
    action: Optional[str] = None  # accept | reject | drop | mark


@dataclass(frozen=True)
class Config:
    """What direct.xml and the zone files of /etc/firewalld hold."""

    direct: tuple[DirectRule, ...] = ()
    passthroughs: tuple[Passthrough, ...] = ()
    rich: tuple[RichRule, ...] = ()


@dataclass
class _Element:
    name: str
    attrs: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)
    text: str = ""


def read_config_files(root: str = CONFIG) -> dict[str, str]:
    """{path: text} of direct.xml and zones/*.xml under ``root`` ({} when firewalld is not set up)."""
    files: dict[str, str] = {}
    for path in [os.path.join(root, "direct.xml"), *sorted(glob.glob(os.path.join(root, "zones", "*.xml")))]:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                files[path] = handle.read()
        except OSError:
            continue
    return files


def _tree(path: str, text: str) -> _Element:
    """The XML document with each element's line; InputError(path, line) for one expat rejects."""
    parser = xml.parsers.expat.ParserCreate()
    stack: list[_Element] = []
    roots: list[_Element] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        element = _Element(name, dict(attrs), parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    def data(chunk: str) -> None:
        if stack:
            stack[-1].text += chunk

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as error:
        raise InputError(
            f"not XML firewalld can read: {xml.parsers.expat.errors.messages[error.code]}", path, error.lineno
        ) from None
    return roots[0]


def parse(files: dict[str, str]) -> Config:
    """The direct rules, passthroughs and rich rules of ``files`` ({path: text}: direct.xml and
    zones/NAME.xml, as ``read_config_files`` gives them). A file firewalld could not read either
    raises InputError(path, line)."""
    direct: list[DirectRule] = []
    passthroughs: list[Passthrough] = []
    rich: list[RichRule] = []
    for path, text in files.items():
        root = _tree(path, text)
        if os.path.basename(path) == "direct.xml":
            for element in root.children:
                try:
                    args = tuple(shlex.split(element.text))
                except ValueError as error:  # an unbalanced quote: firewalld cannot split it either
                    raise InputError(f"{element.name}: {error}", path, element.line) from None
                ipv = element.attrs.get("ipv", "ipv4")
                if element.name == "rule":
                    a = element.attrs
                    rule = DirectRule(
                        path,
                        element.line,
                        ipv,
                        a.get("table", "filter"),
                        a.get("chain", ""),
                        a.get("priority", "0"),
                        args,
                    )
                    direct.append(rule)
                elif element.name == "passthrough":
                    passthroughs.append(Passthrough(path, element.line, ipv, args))
        elif os.path.dirname(path).endswith("zones"):
            zone = os.path.basename(path)[: -len(".xml")]
            rich += (_rich(path, zone, element) for element in root.children if element.name == "rule")
    return Config(tuple(direct), tuple(passthroughs), tuple(rich))


def _rich(path: str, zone: str, rule: _Element) -> RichRule:
    """A zone's `<rule>` as firewalld's rich language, in the order firewalld spells it."""
    words = ["rule"]
    words += [f'{key}="{rule.attrs[key]}"' for key in ("priority", "family") if key in rule.attrs]
    order = {"source": 0, "destination": 1, "log": 3, "nflog": 3, "audit": 4}
    source: Optional[str] = None
    ports: list[tuple[int, int]] = []
    action: Optional[str] = None
    for part in sorted(rule.children, key=lambda e: order.get(e.name, 2 if e.name not in _ACTIONS else 5)):
        words.append(_rich_part(part))
        if part.name == "source" and not _inverted(part):
            source = part.attrs.get("address")
        elif part.name == "port":
            span = _port_range(part.attrs.get("port", ""))
            ports += [span] if span is not None else []
        elif part.name in _ACTIONS:
            action = part.name
    return RichRule(path, rule.line, zone, " ".join(words), source, tuple(ports), action)


def _inverted(element: _Element) -> bool:
    return element.attrs.get("invert", "").lower() in ("yes", "true")


def _rich_part(element: _Element) -> str:
    head = element.name + (" NOT" if _inverted(element) else "")
    attrs = [f'{key}="{value}"' for key, value in element.attrs.items() if key != "invert"]
    limits = [_rich_part(child) for child in element.children if child.name == "limit"]
    return " ".join([head, *attrs, *limits])


def _port_range(spec: str) -> Optional[tuple[int, int]]:
    low, _, high = spec.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        return None


# --------------------------------------------------------------------------- the commands


def _narrow_at(args: Sequence[str], options: tuple[str, ...]) -> Optional[int]:
    """Index of the address after one of ``options`` when it is 127.0.0.1 alone."""
    for i, word in enumerate(args[:-1]):
        if word in options and args[i + 1] in _NARROW:
            return i + 1
    return None


def widened(chain: str, args: Sequence[str], style: str = "interface") -> Optional[tuple[str, ...]]:
    """``args`` with the narrow loopback address replaced: by the loopback interface where the
    chain has one to match and the rule names none (`-s 127.0.0.1` -> `-i lo` on INPUT), else (and
    with ``style`` "range") by 127.0.0.0/8. None when no address of the rule is 127.0.0.1 alone."""
    words = list(args)
    for options, interface, chains in ((_SOURCE_OPTS, "-i", _IN_CHAINS), (_DEST_OPTS, "-o", _OUT_CHAINS)):
        at = _narrow_at(words, options)
        if at is None:
            continue
        negated = at >= 2 and words[at - 2] == "!"
        long = "--in-interface" if interface == "-i" else "--out-interface"
        if style == "interface" and chain in chains and not negated and not {interface, long} & set(words):
            words[at - 1 : at + 1] = [interface, "lo"]
        else:
            words[at] = _WIDE
        return tuple(words)
    return None


def _target_chain(args: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """(chain, rule arguments) of a passthrough's `-A CHAIN ...` / `-I CHAIN [N] ...` (table dropped)."""
    words = list(args)
    chain = ""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-t", "--table") and i + 1 < len(words):
            i += 2
            continue
        if word in ("-A", "--append", "-I", "--insert") and i + 1 < len(words):
            chain = words[i + 1]
            i += 2
            if word in ("-I", "--insert") and i < len(words) and words[i].isdigit():
                i += 1
            continue
        out.append(word)
        i += 1
    return chain, tuple(out)


def _table_of(args: Sequence[str]) -> str:
    words = list(args)
    for i, word in enumerate(words[:-1]):
        if word in ("-t", "--table"):
            return words[i + 1]
    return "filter"


Entry = Union[DirectRule, Passthrough, RichRule]


@dataclass(frozen=True)
class Replacement:
    """The `firewall-cmd --permanent` commands that replace one narrow entry (reload not included)."""

    entry: Entry
    commands: tuple[tuple[str, ...], ...]

    @property
    def where(self) -> str:
        return f"{self.entry.path}:{self.entry.line}"


def replacement(entry: Entry, style: str = "interface") -> Optional[Replacement]:
    """Add ``entry`` again with the loopback interface or 127.0.0.0/8 (``style`` as `lbfw fix
    --style`; a rich rule has no interface, so always the range), then remove it: the permanent
    configuration never lacks the rule between the two. None when it names no 127.0.0.1 alone."""
    if isinstance(entry, DirectRule):
        new = widened(entry.chain, entry.args, style)
        if new is None:
            return None
        where = (entry.ipv, entry.table, entry.chain, entry.priority)
        head = (*_CMD, "--direct")
        return Replacement(entry, ((*head, "--add-rule", *where, *new), (*head, "--remove-rule", *where, *entry.args)))
    if isinstance(entry, Passthrough):
        new = widened(_target_chain(entry.args)[0], entry.args, style)
        if new is None:
            return None
        head = (*_CMD, "--direct")
        return Replacement(
            entry,
            ((*head, "--add-passthrough", entry.ipv, *new), (*head, "--remove-passthrough", entry.ipv, *entry.args)),
        )
    if entry.source not in _NARROW:
        return None
    wide = entry.text.replace(f'address="{entry.source}"', f'address="{_WIDE}"', 1)
    zone = f"--zone={entry.zone}"
    return Replacement(entry, ((*_CMD, zone, "--add-rich-rule", wide), (*_CMD, zone, "--remove-rich-rule", entry.text)))


def shown(argv: Sequence[str]) -> str:
    """A command as a shell would take it."""
    return shlex.join(argv)


def how(entry: Entry) -> str:
    """The advice for a finding on ``entry``'s kernel rule: its file and line, then the commands
    that replace it (or, for an entry with no 127.0.0.1 alone, the tool to change it with)."""
    change = replacement(entry)
    if change is None:
        return f"{entry.path}:{entry.line}: change it with `firewall-cmd --permanent`, then `firewall-cmd --reload`"
    commands = ", ".join(f"`{shown(c)}`" for c in (*change.commands, RELOAD))
    return f"{change.where}: {commands}"


# --------------------------------------------------------------------------- kernel rule -> entry


def _key(matches: Iterable[Match], action: Action) -> tuple[object, ...]:
    """What the kernel decides by: the matches and verdict, without their text (iptables-save
    writes `-s 127.0.0.1/32 -m tcp` where direct.xml has `-s 127.0.0.1`)."""
    shape = tuple((m.field, m.values, m.negate, m.set_name, m.mask, m.opaque) for m in matches)
    return (shape, action.kind, action.target, action.to_addr, action.to_port, action.set_mark, action.set_ctmark)


def _parsed(table: str, chain: str, args: Sequence[str], jump: Optional[str] = None) -> Optional[Rule]:
    """The lbfw model of `-A CHAIN ARGS` in ``table`` (None when iptables would refuse it); a
    target the reader does not know is read again as the user chain firewalld declared."""
    from ..read.iptables import parse as parse_iptables

    declared = [chain] if jump in (None, chain) else [chain, jump]
    head = "".join(f":{name} {'ACCEPT' if name in _BUILTIN else '-'} [0:0]\n" for name in declared)
    try:
        tables = parse_iptables(f"*{table}\n{head}-A {chain} {shlex.join(args)}\nCOMMIT\n", "direct.xml", lazy=False)
    except InputError:
        return None
    rules = list(tables[0].chains[chain].rules) if tables else []
    rule = rules[0] if rules else None
    if rule is not None and rule.action.kind == "unknown" and jump is None and rule.action.target:
        return _parsed(table, chain, args, rule.action.target)
    return rule


def _direct_entry(config: Config, family: str, table: str, chain: str, rule: Rule) -> Optional[Entry]:
    want = _key(rule.matches, rule.action)
    for direct in config.direct:
        if _FAMILY.get(direct.ipv) != family or direct.table != table:
            continue
        if chain not in (direct.chain, direct.chain + "_direct"):
            continue
        parsed = _parsed(table, direct.chain, direct.args)
        if parsed is not None and _key(parsed.matches, parsed.action) == want:
            return direct
    for passthrough in config.passthroughs:
        target, args = _target_chain(passthrough.args)
        if _FAMILY.get(passthrough.ipv) != family or target != chain or _table_of(passthrough.args) != table:
            continue
        parsed = _parsed(table, target, args)
        if parsed is not None and _key(parsed.matches, parsed.action) == want:
            return passthrough
    return None


def _rich_entry(config: Config, chain: str, rule: Rule) -> Optional[RichRule]:
    """The zone's narrow rich rule a rule of its IN_<zone>_* chain comes from: the same zone,
    source 127.0.0.1, the port the kernel rule matches (when the rich rule names one)."""
    found = _ZONE_CHAIN.match(chain)
    if found is None or not any(m.field == "ip.saddr" and not m.negate for m in rule.matches):
        return None
    dports = [v for m in rule.matches if m.field == "th.dport" for v in m.values]
    verdicts = _PART_ACTIONS.get(found.group("part"))
    for rich in config.rich:
        if rich.zone != found.group("zone") or rich.source not in _NARROW:
            continue
        if verdicts is not None and rich.action not in verdicts:
            continue
        if rich.ports and not any(lo <= high and low <= hi for low, high in rich.ports for lo, hi in _ranges(dports)):
            continue
        return rich
    return None


def _ranges(values: Iterable[object]) -> Iterator[tuple[int, int]]:
    for value in values:
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
            yield value[0], value[1]
        elif isinstance(value, int):
            yield value, value


def entry_for(
    config: Config, family: Optional[str], table: Optional[str], chain: Optional[str], rule: Rule
) -> Optional[Entry]:
    """The direct rule, passthrough or rich rule of ``config`` behind a kernel rule, or None."""
    if chain is None or table is None:
        return None
    if table == TABLE:
        return _rich_entry(config, chain, rule)
    if family in ("ip", "ip6"):
        return _direct_entry(config, family, table, chain, rule) or _rich_entry(config, chain, rule)
    return None

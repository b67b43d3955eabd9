"""Reader for iptables-save / ip6tables-save text (files and the live `*-save` output).

Every iptables version's spelling is accepted: `! -s X` and the old `-s ! X`, dotted netmasks
(`/255.255.255.0`), bare addresses, host bits (`127.0.0.1/8` is 127.0.0.0/8 to the kernel),
`[pkts:bytes]` and `-c p b` counters, quoted comments with escaped quotes, trailing spaces.

Speed matters (real dumps reach 140,000 rules): a line is split with plain ``str.split``, and
only a line holding a ``"`` goes through the quote-aware splitter. Model objects are
immutable, so they are shared: each distinct address is parsed once, and the rest of a rule
after its leading `-s`/`-d` (what repeats in big dumps: `-j DROP` after a new address) is
parsed once per distinct text; inside that, each (module context, option, value) once.

Anything the model cannot express becomes an opaque ``Match`` with its text, and any target
lbfw does not know becomes ``Action("unknown")``: never an error, never dropped. Errors are
reserved for what iptables-restore itself would reject (see ``parse``).
"""

from __future__ import annotations

import gc
import re
from functools import partial
from typing import Optional

from ...errors import InputError
from ...model import (
    BACKEND_FILE,
    IPTABLES_CHAIN_TYPE,
    IPTABLES_HOOK_OF_CHAIN,
    IPTABLES_PRIORITY,
    SYNTAX_IPTABLES,
    Action,
    Chain,
    Origin,
    Rule,
    Table,
)
from ...suppression import ignored_ids
from .deferred import (
    _DEFERRABLE_TARGETS,
    _DEFERRED_OWN,
    _SIMPLE_RULE,
    _SIMPLE_RULE6,
    DeferredRules,
    _cut_comment,
    _ip6_addresses_read,
    port_line_sees_loopback,
)
from .fast import _ANY, _CONTINUE, _file_origin, _user_chain
from .matches import MatchBuilder
from .options import BUILTIN_CHAINS, RESUME_MATCH, VERDICT_TARGETS
from .tail import TailReader
from .targets import TargetReader
from .values import _ALL4, _ALL6, _CACHE_LIMIT, _Bad, split_quoted

_EMPTY: dict = {}
_COUNTER_RE = re.compile(r"^\[\d+:\d+\]$")
_LEADING = frozenset(("-s ", "-d ", "! -"))  # how a rule text starting with an address begins


class _Parser(TailReader, MatchBuilder, TargetReader):
    """One pass over the text; ``tables`` is the result."""

    def __init__(self, source: str, family: str, backend: str, lazy: bool = True):
        self.source = source
        # lines of the proven shape (see _SIMPLE_RULE) are built when first asked for
        self.lazy = lazy
        self.deferred_targets: set = set()  # non-chain targets deferred lines of this table name
        self.build = None  # DeferredRules.build for the open table's chains
        self.position = None  # live index of the deferred line being built
        self.family = family
        self.backend = backend
        self.live = backend != BACKEND_FILE
        self.saddr = "ip6.saddr" if family == "ip6" else "ip.saddr"
        self.daddr = "ip6.daddr" if family == "ip6" else "ip.daddr"
        self.family_word = "an IPv6" if family == "ip6" else "an IPv4"
        self.full = _ALL6 if family == "ip6" else _ALL4
        self.tables: list = []
        self.fast: dict = {}  # (module context, option, value) -> tuple of Matches
        # (-s | -d, negated) -> {value: Match}
        self.addrs: dict = {(opt, neg): {} for opt in ("-s", "-d") for neg in (False, True)}
        self.tails: dict = {}  # what follows the leading addresses -> tail()'s result
        self.jumps: dict = {}  # (chain, goto) -> Action
        self.rests: dict = {}  # plain_rule's text after the addresses -> parsed
        self.protos: dict = {}  # (-p value, negated) -> (matches, implied module)
        self.contexts: dict = {}  # (context, -m module) -> the context after it
        self.actions: dict = {}  # (target, args) -> Action, for targets that are no chain
        self.table: Optional[Table] = None
        self.table_line = 0
        self.lineno = 0
        # rules whose -j target was neither a chain nor a known target when read: resolved
        # at COMMIT, when every chain of the table is known
        self.unresolved: list = []
        self.warnings: list = []  # what was read but is not as it looks (SourceInfo.warnings)

    # ------------------------------------------------------------------ the line loop

    def run(self, text: str) -> list:
        pending_ignore: frozenset[str] = frozenset()
        v6 = self.family == "ip6"
        ip6_seen: dict = {}
        simple = (_SIMPLE_RULE6 if v6 else _SIMPLE_RULE).fullmatch
        deferrable = _DEFERRABLE_TARGETS
        # the open table's chains when lines may be deferred (kept in step at `*` and COMMIT)
        chains = _EMPTY
        for lineno, raw in enumerate(text.split("\n"), 1):
            line = raw.strip()
            if not line:
                pending_ignore = frozenset()
                continue
            first = line[0]
            if first == "-" and line[:3] == "-A " and not pending_ignore:
                sp = line.find(" ", 3)
                chain = chains.get(line[3:sp])
                if chain is not None:
                    m = simple(line, sp)
                    if m is not None and (not v6 or _ip6_addresses_read(m, ip6_seen)):
                        target = m.group("t")
                        if target is None or target in chains:
                            if target is None:
                                self.deferred_targets.update(_DEFERRED_OWN)
                        elif target in deferrable:
                            self.deferred_targets.add(target)
                        else:
                            target = False
                        if target is not False:
                            rules = chain.rules
                            if rules.__class__ is not DeferredRules:
                                assert self.build is not None  # set with the open table's chains
                                rules = chain.rules = DeferredRules(chain, self.build, rules)
                            rules.defer((lineno, line, 6) if v6 else (lineno, line))
                            # a chain with a deferred `--dport` line a loopback packet may
                            # meet is marked (LazyRules.may_name_loopback_port)
                            if m.group("port") is not None and port_line_sees_loopback(m, self.family):
                                rules.ports = True
                            continue
            self.lineno = lineno
            if first == "-" or first == "[":
                chain = None
                own_comment = None
                plain = line
                if first == "[":
                    # `iptables-save -c`: [packets:bytes] before the rule, nothing to the model
                    end = line.find("] ")
                    if end > 0 and _COUNTER_RE.match(line[: end + 1]):
                        plain = line[end + 2 :].lstrip()
                if plain[:3] == "-A " and self.table is not None:
                    # the usual line, kept short: the general path is rule_line
                    if '"' in plain:
                        plain, own_comment = _cut_comment(plain)
                    if plain is not None:
                        parts = plain.split(None, 2)
                        if len(parts) > 1:
                            chain = self.table.chains.get(parts[1])
                if chain is not None:
                    rule = self.plain_rule(parts[2] if len(parts) > 2 else "", line, chain, pending_ignore, own_comment)
                    if rule is not None:
                        self.add(chain, rule)
                else:
                    self.rule_line(line, pending_ignore)
                if pending_ignore:
                    pending_ignore = frozenset()
            elif first == "#":
                pending_ignore = ignored_ids(line) if "lbfw" in line.lower() else frozenset()
            elif first == ":":
                self.chain_line(line)
                if pending_ignore:
                    # `# lbfw: ignore LB001` above `:INPUT DROP [0:0]` suppresses the policy's findings
                    declared = self.table.chains.get(line[1:].split(None, 1)[0]) if self.table else None
                    if declared is not None:
                        declared.policy_ignore = pending_ignore
                pending_ignore = frozenset()
            elif first == "*":
                table = self.table_open(line)
                pending_ignore = frozenset()
                chains = table.chains if self.lazy else _EMPTY
            elif line == "COMMIT":
                self.commit()
                pending_ignore = frozenset()
                chains = _EMPTY
            else:
                raise self.bad(
                    f"not an iptables-save line (expected *table, :chain, -A rule, COMMIT or # comment): {line[:60]!r}"
                )
        if self.table is not None:
            raise self.bad(
                f"table '{self.table.name}' has no COMMIT (iptables-restore would reject the whole table)",
                line=self.table_line,
            )
        return self.tables

    def table_open(self, line: str) -> Table:
        """Open the table `*NAME` names (it becomes ``self.table``) and return it."""
        name = line[1:].strip()
        if self.table is not None:
            raise self.bad(f"'*{name}' starts a table while '{self.table.name}' (line {self.table_line}) has no COMMIT")
        if name not in BUILTIN_CHAINS:
            raise self.bad(f"unknown table '{name}' (raw, mangle, nat, filter or security)")
        self.table = Table(
            family=self.family,
            name=name,
            backend=self.backend,
            syntax=SYNTAX_IPTABLES,
            source=self.source,
            origin=self.origin(None),
        )
        self.table_line = self.lineno
        self.deferred_targets = set()
        self.build = partial(self.build_deferred, self.table)
        return self.table

    def commit(self) -> None:
        table = self.table
        if table is None:
            raise self.bad("COMMIT outside any table")
        for rule, name, goto, _chain_name in self.unresolved:
            if name in table.chains:
                rule.action = Action("goto" if goto else "jump", target=name)
            elif goto:
                raise self.bad(f"-g {name}: no chain '{name}' in table {table.name}", line=rule.origin.line)
        self.unresolved = []
        for chain in table.chains.values():
            rules = chain.rules
            if rules.__class__ is DeferredRules and not rules.unbuilt:
                chain.rules = rules.entries  # nothing left to build: a plain list
        for k, earlier in enumerate(self.tables):
            if earlier.name == table.name:
                # iptables-restore flushes a table when its section starts: the last one wins
                self.tables[k] = table
                self.warnings.append(
                    f"line {self.table_line}: table {table.name} again: it replaces the "
                    f"earlier section, as iptables-restore does"
                )
                break
        else:
            self.tables.append(table)
        self.table = None

    def origin(self, index: Optional[int]) -> Origin:
        if self.live:
            return Origin(self.source, index=index)
        return _file_origin(self.source, self.lineno)

    def chain_line(self, line: str) -> None:
        table = self.table
        if table is None:
            raise self.bad("chain declared outside any table (add a '*filter' line above it)")
        parts = line[1:].split()
        if len(parts) == 3 and parts[1] == "-":
            # the usual `:NAME - [0:0]` of a new user chain, kept short
            name = parts[0]
            if (
                name not in table.chains
                and name not in self.deferred_targets
                and name not in BUILTIN_CHAINS[table.name]
                and name not in VERDICT_TARGETS
                and name[0] != "-"
                and len(name) <= 28
            ):
                table.chains[name] = _user_chain(name, self.origin(None))
                return
        if not parts:
            raise self.bad("':' without a chain name")
        name = parts[0]
        policy = parts[1] if len(parts) > 1 else "-"
        if name in table.chains and table.chains[name].rule_count:
            raise self.bad(f"chain '{name}' declared again after it got rules")
        self.declare(name, policy)

    def declare(self, name: str, policy: str) -> Chain:
        table = self.table
        assert table is not None  # callers check that a table is open
        if name in BUILTIN_CHAINS[table.name]:
            hook = IPTABLES_HOOK_OF_CHAIN[name]
            prio = IPTABLES_PRIORITY[table.name]
            if isinstance(prio, dict):
                prio = prio[hook]
            upper = policy.upper()
            if upper == "-":
                upper = "ACCEPT"
            if upper not in ("ACCEPT", "DROP"):
                raise self.bad(f"chain {name}: policy must be ACCEPT or DROP, not '{policy}'")
            chain = Chain(
                name=name,
                hook=hook,
                priority=prio,
                type=IPTABLES_CHAIN_TYPE[table.name],
                policy=upper.lower(),
                origin=self.origin(None),
            )
        else:
            if policy != "-":
                raise self.bad(
                    f"chain '{name}' is not a built-in chain of table {table.name}: it "
                    f"cannot have a policy ('{policy}'); write ':{name} - [0:0]'"
                )
            if name in VERDICT_TARGETS or name.startswith("-") or len(name) > 28:
                raise self.bad(f"invalid chain name '{name}'")
            chain = Chain(name=name, origin=self.origin(None))
        existing = table.chains.get(name)
        if existing is not None:
            existing.policy = chain.policy
            return existing
        if name in self.deferred_targets:
            # deferred lines named a target of this name before it was a chain: build them
            # now, as they read when written
            self.build_table_now()
        table.chains[name] = chain
        return chain

    def add(self, chain: Chain, rule: Rule) -> None:
        """Append a built rule, after whatever the chain holds unbuilt."""
        chain.rules.append(rule)

    def build_table_now(self) -> None:
        """Build every deferred line of the open table (its chains are about to change)."""
        assert self.table is not None
        for chain in self.table.chains.values():
            rules = chain.rules
            if rules.__class__ is DeferredRules:
                rules.build_all()  # still reading: later lines queue up behind them

    def build_deferred(self, table: Table, chain: Chain, entry: tuple, position: int) -> Rule:
        """DeferredRules.build: the Rule of a deferred line (at 0-based ``position`` in ``chain``),
        exactly as reading it at once would have made it."""
        saved = self.table, self.lineno, self.position
        self.table = table
        self.lineno, line = entry[0], entry[1]
        self.position = position + 1
        try:
            plain = line
            own_comment = None
            if '"' in plain:
                plain, own_comment = _cut_comment(plain)
            parts = plain.split(None, 2)
            return self.plain_rule(parts[2], line, chain, frozenset(), own_comment)
        finally:
            self.table, self.lineno, self.position = saved

    def chain_for_rule(self, name: str) -> Chain:
        table = self.table
        assert table is not None  # rule_line checked that a table is open
        chain = table.chains.get(name)
        if chain is not None:
            return chain
        if name in BUILTIN_CHAINS[table.name]:
            # built-in chains exist in the kernel as soon as the table does
            return self.declare(name, "-")
        raise self.bad(
            f"chain '{name}' is used but never declared in table {table.name} "
            f"(iptables-restore rejects it; add ':{name} - [0:0]')"
        )

    # ------------------------------------------------------------------ rules

    def rule_line(self, line: str, ignore_above: frozenset) -> None:
        table = self.table
        if table is None:
            raise self.bad("rule outside any table (add a '*filter' line and a COMMIT)")
        if '"' in line:
            try:
                tokens = split_quoted(line)
            except _Bad as err:
                raise self.bad(err) from None
        else:
            tokens = line.split()
        if tokens[0][0] == "[":
            if not _COUNTER_RE.match(tokens[0]):
                raise self.bad(f"bad counters {tokens[0]!r} (expected [packets:bytes])")
            del tokens[0]
            if not tokens:
                raise self.bad("counters without a rule")
        cmd = tokens[0]
        n = len(tokens)
        if cmd == "-A" or cmd == "--append" or cmd == "-I" or cmd == "--insert":
            if n < 2:
                raise self.bad(f"{cmd} needs a chain name")
            chain = self.chain_for_rule(tokens[1])
            start = 2
            position = None
            if cmd in ("-I", "--insert"):
                position = 1
                if n > 2 and tokens[2].isdigit():
                    position = int(tokens[2])
                    start = 3
            rule = self.build_rule(tokens, start, line, chain, ignore_above)
            if rule is None:
                return
            if position is None:
                self.add(chain, rule)
            else:
                if position < 1 or position > len(chain.rules) + 1:
                    raise self.bad(f"{cmd} {chain.name} {position}: index out of range")
                chain.rules.insert(position - 1, rule)
            if self.live:
                # positions shift on insert: renumber the chain (1-based, as `iptables -R` counts)
                if position is None:
                    rule.origin = Origin(self.source, index=chain.rule_count)
                else:
                    for i, r in enumerate(chain.rules, 1):
                        r.origin = Origin(self.source, index=i)
            return
        if cmd in ("-N", "--new-chain"):
            if n != 2:
                raise self.bad(f"{cmd} takes exactly one chain name")
            self.declare(tokens[1], "-")
            return
        if cmd in ("-P", "--policy"):
            if n != 3 or tokens[1] not in BUILTIN_CHAINS[table.name]:
                raise self.bad(f"{cmd} needs a built-in chain of table {table.name} and ACCEPT or DROP")
            self.declare(tokens[1], tokens[2])
            return
        if cmd in ("-F", "--flush"):
            names = tokens[1:] or list(table.chains)
            for name in names:
                self.chain_for_rule(name).rules.clear()
            return
        if cmd in ("-X", "--delete-chain"):
            self.build_table_now()  # deferred jumps must not see their chain gone
            for name in tokens[1:] or [c.name for c in table.chains.values() if not c.is_base]:
                doomed = table.chains.get(name)
                if doomed is None or doomed.is_base:
                    raise self.bad(f"{cmd} {name}: no such user-defined chain")
                del table.chains[name]
            return
        if cmd in ("-Z", "--zero"):
            return
        raise self.bad(f"unsupported command {cmd!r} (expected -A CHAIN ...)")

    def plain_rule(
        self, rest: str, line: str, chain: Chain, ignore_above: frozenset, own_comment: Optional[str] = None
    ):
        """The Rule for an unquoted `-A CHAIN REST` line (None: a rule for the other family).

        Speed: iptables-save writes `-s`/`-d` first, and what follows them repeats across
        rules far more than the addresses do (blocklists: a new address, the same `-j DROP`).
        So leading addresses are peeled off REST here, each looked up in ``self.addrs``, and
        the rest of the text is parsed once by ``tail`` and then found in ``self.tails``:
        most lines are never split into all their tokens."""
        lead = None
        while rest[:3] in _LEADING:
            neg = rest[0] == "!"
            parts = (rest[2:] if neg else rest).split(None, 2)
            if len(parts) < 2 or parts[0] not in ("-s", "-d") or parts[1] == "!":
                break
            m = self.cached_address(parts[0], parts[1], neg)
            if m is _ANY:
                pass
            elif lead is None:
                lead = [m]
            else:
                lead.append(m)
            rest = parts[2] if len(parts) > 2 else ""
        parsed = self.rests.get(rest)
        if parsed is not None:
            return self.finish(lead, parsed, own_comment, line, chain, ignore_above)
        # The target often differs where the matches repeat (kube-proxy: one chain per
        # endpoint), so `-j TARGET ARGS` at the end is split off when it plainly is the end.
        target = None
        if rest[:3] == "-j " or rest[:3] == "-g ":
            head, target_text, goto = "", rest[3:], rest[1] == "g"
            target = target_text.split()
        else:
            p = rest.find(" -j ")
            goto = p < 0
            if goto:
                p = rest.find(" -g ")
            if p >= 0:
                head, target_text = rest[:p], rest[p + 4 :]
                target = target_text.split()
        if (
            target
            and RESUME_MATCH.isdisjoint(target)
            and "!" not in target
            and " -j " not in target_text
            and " -g " not in target_text
        ):
            parsed = self.tails.get(head)
            if parsed is None:
                parsed = self.tail(head.split(), 0)
                if len(self.tails) < _CACHE_LIMIT:
                    self.tails[head] = parsed
            parsed = (parsed[0], target[0], goto, tuple(target[1:]), parsed[4])
            if len(self.rests) < _CACHE_LIMIT:
                self.rests[rest] = parsed
        else:
            parsed = self.tail(rest.split(), 0)
            if len(self.rests) < _CACHE_LIMIT:
                self.rests[rest] = parsed
        return self.finish(lead, parsed, own_comment, line, chain, ignore_above)

    def build_rule(self, tokens: list, i: int, line: str, chain: Chain, ignore_above: frozenset):
        """The Rule for the tokens after `-A CHAIN` (quoted lines, counters, `-I`), with the
        same caches as ``plain_rule``; None when `-4`/`-6` says it is for the other family."""
        n = len(tokens)
        lead = None
        neg = False
        while i < n:
            tok = tokens[i]
            if tok == "!" and i + 1 < n and (tokens[i + 1] == "-s" or tokens[i + 1] == "-d"):
                neg = True
                i += 1
                continue
            if (tok == "-s" or tok == "-d") and i + 1 < n and tokens[i + 1] != "!":
                m = self.cached_address(tok, tokens[i + 1], neg)
                i += 2
                if m is _ANY:
                    pass
                elif lead is None:
                    lead = [m]
                else:
                    lead.append(m)
                neg = False
                continue
            if neg:
                i -= 1  # "!" before something else: the tail reads it
            break
        own_comment = None
        if '"' in line and "--comment" in tokens:
            # comments are as unique as addresses (and change nothing): keep them out of the key
            j = tokens.index("--comment")
            if (
                j >= i + 2
                and j + 1 < n
                and tokens[j - 1] == "comment"
                and tokens[j - 2] in ("-m", "--match")
                and tokens[j - 3] != "!"
            ):
                own_comment = tokens[j + 1]
                tokens = tokens[: j - 2] + tokens[j + 2 :]
        key = tuple(tokens[i:])
        parsed = self.tails.get(key)
        if parsed is None:
            parsed = self.tail(tokens, i)
            if len(self.tails) < _CACHE_LIMIT:
                self.tails[key] = parsed
        return self.finish(lead, parsed, own_comment, line, chain, ignore_above)

    def finish(
        self,
        lead: Optional[list],
        parsed: tuple,
        own_comment: Optional[str],
        line: str,
        chain: Chain,
        ignore_above: frozenset,
    ):
        """The Rule from its leading address matches and its parsed tail."""
        matches, target, goto, target_args, comment = parsed
        if matches is None:
            self.warnings.append(
                f"line {self.lineno}: rule marked for the other IP family (-4/-6): skipped, as iptables-restore does"
            )
            return None
        if own_comment is not None:
            comment = own_comment if comment is None else f"{own_comment} {comment}"
        if lead is not None:
            if matches:
                lead.extend(matches)
            matches = tuple(lead)
        if comment is None or "lbfw" not in comment.lower():
            ignore = ignore_above
        else:
            ignore = ignored_ids(comment) | ignore_above
        if self.live:
            origin = Origin(self.source, index=self.position or chain.rule_count + 1)
        else:
            origin = _file_origin(self.source, self.lineno)
        rule = Rule(matches, _CONTINUE, line, origin, comment, ignore)
        if target is not None:
            assert self.table is not None  # rules are read (and built) inside their table
            if target in self.table.chains:
                action = self.jumps.get((target, goto)) if not target_args else None
                if action is None:
                    action = self.action(target, goto, target_args, chain, rule)
                    if not target_args:
                        self.jumps[(target, goto)] = action
            else:
                action = None if goto else self.actions.get((target, target_args))
                if action is None:
                    action = self.action(target, goto, target_args, chain, rule)
            rule.action = action
        return rule


# --------------------------------------------------------------------------- public entry point


def parse(
    text: str,
    source: str,
    family: Optional[str] = None,
    backend: str = BACKEND_FILE,
    warnings: Optional[list] = None,
    lazy: bool = True,
) -> list:
    """Parse iptables-save (``family`` "ip") or ip6tables-save ("ip6") text into Tables.

    ``family`` None detects it from the text (header comment, IPv6 addresses, ipv6-icmp).
    ``source`` is the path as given (or "live:legacy" / "live:iptables-nft" with that
    ``backend``): files get ``Origin(source, line=N)``, live rules ``Origin(source, index=N)``.

    ``warnings``, if given, receives notes on what is read differently from how it looks (a
    table given twice: the last wins; a `-6` rule in an iptables file: skipped).

    Raises InputError(path=source, line=N) for what iptables-restore rejects: a rule or chain
    outside any table, a chain used but never declared, a table without COMMIT, an option
    missing its argument, an address that is not one, a line of no known kind.

    ``lazy``: rule lines of a shape proven well-formed (``_SIMPLE_RULE``) are checked now and
    built when their chain's ``rules`` is first read; False builds every rule now. Both give
    equal models and the same errors.
    """
    if family is None:
        from ..detect import detect_format

        try:
            family = "ip6" if detect_format(text) == "ip6tables-save" else "ip"
        except InputError:
            family = "ip"
    if family not in ("ip", "ip6"):
        raise ValueError(f"family must be 'ip' or 'ip6', not {family!r}")
    # Hundreds of thousands of new objects, none of them garbage: the cyclic collector would
    # walk them again and again (a third of the time on large dumps) for nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        parser = _Parser(source, family, backend, lazy)
        tables = parser.run(text)
        if warnings is not None:
            warnings.extend(parser.warnings)
        return tables
    finally:
        if was_enabled:
            gc.enable()

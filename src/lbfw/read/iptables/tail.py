"""What follows a rule's leading addresses -> (matches, target, goto, target args, comment).

``TailReader.tail`` walks the tokens once; each kind of token has its own step below. The
steps share one ``_Tail`` (where the walk is and what it has found so far).
"""

from __future__ import annotations

from typing import Optional

from ...model import Match
from .fast import _ANY
from .grouped import group_matches
from .matches import MatchBuilder
from .options import (
    GROUPED_MODULES,
    MODULE_OPTIONS,
    ONE_ARG_ALWAYS,
    OPTIONS,
    PROTO_MODULE,
    QUIET_MODULES,
    RECENT_COMMANDS,
    RESUME_MATCH,
)
from .values import _Bad, _quote

_EMPTY: dict = {}
_OTHER_FAMILY = (None, None, False, (), None)  # tail()'s result for a `-4`/`-6` rule of the other family


class _Tail:
    """The state of one walk over a rule's tokens."""

    __slots__ = (
        "tokens",
        "n",
        "i",
        "matches",
        "neg",
        "loaded",
        "proto",
        "ctx",
        "comment",
        "target",
        "goto",
        "target_args",
        "group",
        "modules",
    )

    def __init__(self, tokens: list, i: int) -> None:
        self.tokens = tokens
        self.n = len(tokens)
        self.i = i
        self.matches: list = []
        self.neg = False
        self.loaded: list = []  # match modules loaded so far, in order (-m and -p's)
        self.proto: Optional[str] = None  # the -p protocol's implied module name
        self.ctx = ""  # proto + loaded modules: part of the fast cache key
        self.comment: Optional[str] = None
        self.target: Optional[str] = None
        self.goto = False
        self.target_args: tuple = ()
        self.group: Optional[tuple] = None  # (index in matches, module count) of the open opaque match
        # rpfilter / recent loaded by `-m`: module count -> _Module, the options read so far
        self.modules: dict[int, _Module] = {}


class _Module:
    """The options of one `-m rpfilter`, `-m recent` or grouped module (options.GROUPED_MODULES),
    read so far: they make its Match(es)."""

    __slots__ = ("name", "index", "text", "seen", "negate", "command", "list_name", "options")

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index  # where its Match goes in the rule's matches
        self.text = f"-m {name}"
        self.seen: set = set()
        self.negate = False
        self.command: Optional[str] = None
        self.list_name = "DEFAULT"
        self.options: list = []  # grouped modules: (option, value, negated) as written


class TailReader(MatchBuilder):
    """The parser's option loop (a mixin of ``_Parser``): reads ``fast``, ``contexts``, ``protos``,
    ``addrs`` and ``family`` (``ParserState``); its option values become Matches (``MatchBuilder``)."""

    def tail(self, tokens: list, i: int) -> tuple:
        """Parse tokens[i:] -> (matches tuple, target, goto, target args, comment); matches
        None when the rule is for the other family (`-4`/`-6`). Depends on nothing but the
        tokens and the family, so its result may be reused for an identical tail."""
        st = _Tail(tokens, i)
        fast = self.fast
        n = st.n
        while st.i < n:
            tok = tokens[st.i]
            st.i += 1
            i = st.i
            if (tok == "-s" or tok == "-d") and i < n and tokens[i] != "!":
                self._tail_address(st, tok)
            elif tok == "-j" or tok == "-g" or tok == "--jump" or tok == "--goto":
                self._tail_target(st, tok)
            elif i < n and not st.neg and (hit := fast.get((st.ctx, tok, tokens[i]))) is not None:
                st.i += 1  # an option read before in the same context
                if hit:
                    st.matches.extend(hit)
            elif tok == "-m" or tok == "--match":
                self._tail_module(st, tok)
            elif tok == "-p" and i < n and tokens[i] != "!":
                self._tail_protocol(st, tok)
            elif tok == "!":
                if st.neg:
                    raise self.bad("'!' given twice")
                st.neg = True
            elif tok[0] != "-" or len(tok) < 2:
                raise self.bad(f"unexpected {tok!r} (an option was expected)")
            elif tok == "-c" or tok == "--set-counters":
                if i + 1 >= n:
                    raise self.bad(f"{tok} needs packet and byte counters")
                st.i += 2
            elif tok in ("-4", "--ipv4", "-6", "--ipv6"):
                if (tok in ("-4", "--ipv4")) != (self.family == "ip"):
                    return _OTHER_FAMILY
            elif tok == "-f" or tok == "--fragment":
                st.matches.append(
                    Match(field="ip.fragment", values=(True,), negate=st.neg, text=("! -f" if st.neg else "-f"))
                )
                st.neg = False
            else:
                self._tail_option(st, tok)
        if st.neg:
            raise self.bad("'!' at the end of the rule, negating nothing")
        return self._tail_result(st)

    # ------------------------------------------------------------------ the steps

    def _tail_address(self, st: _Tail, opt: str) -> None:
        """`-s VALUE` / `-d VALUE`: addresses are the one option whose values are mostly unique,
        so they have their own cache."""
        value = st.tokens[st.i]
        st.i += 1
        cache = self.addrs[(opt, st.neg)]
        m = cache.get(value)
        if m is None:
            m = cache[value] = self.address(opt, value, st.neg)
        if m is not _ANY:
            st.matches.append(m)
        st.neg = False

    def _tail_target(self, st: _Tail, opt: str) -> None:
        """`-j TARGET ARGS` / `-g CHAIN`: the target's options run to the end (or to a match
        option, written by hand)."""
        tokens, n, i = st.tokens, st.n, st.i
        if i >= n:
            raise self.bad(f"{opt} needs a target")
        if st.neg:
            raise self.bad(f"'!' cannot negate {opt}")
        if st.target is not None:
            raise self.bad("more than one target (-j/-g)")
        st.target = tokens[i]
        st.goto = opt == "-g" or opt == "--goto"
        i += 1
        j = i
        while (
            j < n
            and tokens[j] not in RESUME_MATCH
            and not (tokens[j] == "!" and j + 1 < n and tokens[j + 1] in RESUME_MATCH)
        ):
            j += 1
        st.target_args = tuple(tokens[i:j])
        st.i = j

    def _tail_module(self, st: _Tail, opt: str) -> None:
        """`-m MODULE`: later options may belong to it; a module that filters without options
        (socket, ...) is an opaque match unless options follow, which then carry the meaning."""
        tokens, n = st.tokens, st.n
        if st.i >= n:
            raise self.bad(f"{opt} needs a module name")
        if st.neg:
            raise self.bad(f"'!' cannot negate {opt} {tokens[st.i]}")
        module = tokens[st.i]
        st.i += 1
        st.loaded.append(module)
        key = (st.ctx, module)
        following = self.contexts.get(key)
        if following is None:
            following = self.contexts[key] = f"{st.ctx}|{module}"
        st.ctx = following
        if module == "rpfilter" or module == "recent" or module in GROUPED_MODULES:
            st.modules[len(st.loaded)] = _Module(module, len(st.matches))
            st.matches.append(None)  # its Match, made when the rule's options are all read
        elif module not in QUIET_MODULES:
            i = st.i
            if i >= n or not tokens[i].startswith("--") or tokens[i] in RESUME_MATCH:
                st.matches.append(Match(field=f"m.{module}", text=f"-m {module}", opaque=True))

    def _tail_protocol(self, st: _Tail, opt: str) -> None:
        """`-p PROTO`: its match, and the module it loads implicitly (`-p tcp --dport 22`)."""
        value = st.tokens[st.i]
        key = (value, st.neg)
        known_proto = self.protos.get(key)
        if known_proto is None:
            try:
                known_proto = self.protos[key] = (
                    self.build_match("proto", opt, value, st.neg, None),
                    PROTO_MODULE.get(value.lower()),
                )
            except _Bad as err:
                raise self.bad(err) from None
        st.i += 1
        if known_proto[0]:
            st.matches.extend(known_proto[0])
        st.proto = proto = known_proto[1]
        ctx = st.ctx
        st.ctx = f"{proto}{ctx[ctx.index('|') :]}" if ctx else f"{proto}|"
        st.neg = False

    def _option_kind(self, st: _Tail, opt: str) -> tuple:
        """(kind, number of arguments (-1: unknown, up to the next option), owning module)."""
        known = OPTIONS.get(opt)
        if known is not None:
            return known, 1, st.loaded[-1] if st.loaded else st.proto
        for module in reversed(st.loaded):
            handler = MODULE_OPTIONS.get(module, _EMPTY).get(opt)
            if handler is not None:
                return handler[0], handler[1], module
        if st.proto is not None:
            handler = MODULE_OPTIONS.get(st.proto, _EMPTY).get(opt)
            if handler is not None:
                return handler[0], handler[1], st.proto
        return "opaque", -1, st.loaded[-1] if st.loaded else st.proto

    def _option_value(self, st: _Tail, opt: str, nargs: int) -> tuple:
        """(the option's value text, whether it was the old spelling `OPT ! VALUE`)."""
        tokens, n, i = st.tokens, st.n, st.i
        if nargs == -1:
            # unknown option: its arguments are the tokens up to the next option
            if i < n and tokens[i] == "!" and i + 1 < n and not tokens[i + 1].startswith("-"):
                st.neg = not st.neg
                i += 1
            j = i
            while j < n and not tokens[j].startswith("-") and tokens[j] != "!":
                j += 1
            st.i = j
            return " ".join([_quote(a) for a in tokens[i:j]]), False
        old_neg = False
        if i < n and tokens[i] == "!" and nargs > 0:
            # the old spelling `-s ! X`
            if st.neg:
                raise self.bad(f"{opt}: '!' given twice")
            st.neg = old_neg = True
            i += 1
        if i + nargs > n:
            raise self.bad(f"{opt} needs an argument")
        if nargs == 1:
            value = tokens[i]
            if (
                value[:1] == "-"
                and opt not in ONE_ARG_ALWAYS
                and (value.startswith("--") or value in RESUME_MATCH or value in OPTIONS or value in ("-j", "-g"))
            ):
                raise self.bad(f"{opt} needs an argument")
            i += 1
        elif nargs == 0:
            value = ""
        else:
            value = " ".join(tokens[i : i + nargs])
            i += nargs
        st.i = i
        return value, old_neg

    def _tail_option(self, st: _Tail, opt: str) -> None:
        """Any other option: it takes arguments, and means what its kind says."""
        kind, nargs, owner = self._option_kind(st, opt)
        value, old_neg = self._option_value(st, opt, nargs)
        neg = st.neg
        st.neg = False
        if kind == "comment":
            st.comment = value if st.comment is None else f"{st.comment} {value}"
            return
        if kind == "rpfilter" or kind == "recent":
            self._module_option(st, opt, value, neg, kind)
            return
        if kind == "group":
            self._group_option(st, opt, value, neg, owner)
            return
        if kind == "proto":
            st.proto = PROTO_MODULE.get(value.lower())
            st.ctx = f"{st.proto}|{'|'.join(st.loaded)}"
        if kind == "opaque":
            self._opaque_option(st, opt, value, neg, owner)
            return
        if kind == "neutral":
            built = ()
        else:
            try:
                built = self.build_match(kind, opt, value, neg, st.proto)
            except _Bad as err:
                raise self.bad(err) from None
        if nargs == 1 and not neg and not old_neg and kind != "proto":
            self.fast[(st.ctx, opt, value)] = built
        if built:
            st.matches.extend(built)

    def _opaque_option(self, st: _Tail, opt: str, value: str, neg: bool, owner: Optional[str]) -> None:
        """Options lbfw cannot decide: one opaque match per module, with all its text."""
        piece = (f"! {opt} {value}" if neg else f"{opt} {value}").rstrip()
        here = (owner, len(st.loaded))
        matches = st.matches
        if st.group is not None and st.group[1] == here:
            old = matches[st.group[0]]
            matches[st.group[0]] = Match(field=old.field, text=f"{old.text} {piece}", opaque=True)
            return
        if owner in st.loaded:
            piece = f"-m {owner} {piece}"
        matches.append(Match(field=f"m.{owner}" if owner else f"opt.{opt.lstrip('-')}", text=piece, opaque=True))
        st.group = (len(matches) - 1, here)

    def _module_option(self, st: _Tail, opt: str, value: str, neg: bool, kind: str) -> None:
        """An option of `-m rpfilter` or `-m recent`: added to that module's one Match. What
        iptables-restore refuses is refused (an option twice, `!` on one that takes none)."""
        module = None
        for count in range(len(st.loaded), 0, -1):
            if st.loaded[count - 1] == kind:
                module = st.modules[count]
                break
        assert module is not None  # _option_kind gives this kind only for a loaded module
        if opt in module.seen:
            raise self.bad(f"{kind}: option {opt!r} can only be used once")
        invertible = opt == "--invert" if kind == "rpfilter" else opt in RECENT_COMMANDS
        if neg and (kind == "rpfilter" or not invertible):
            raise self.bad(f"{kind}: option {opt!r} cannot be inverted")
        module.seen.add(opt)
        piece = f"{opt} {value}" if value else opt
        module.text = f"{module.text} ! {piece}" if neg else f"{module.text} {piece}"
        if kind == "rpfilter":
            module.negate = module.negate or opt == "--invert"
        elif invertible:
            if module.command is not None:
                raise self.bad(f"recent: option {module.command!r} cannot be used together with {opt!r}")
            module.command = opt
            module.negate = neg
        elif opt == "--name":
            module.list_name = value

    def _group_option(self, st: _Tail, opt: str, value: str, neg: bool, owner: Optional[str]) -> None:
        """An option of a grouped module (owner, connlimit, statistic, ...): kept for its Matches."""
        for count in range(len(st.loaded), 0, -1):
            if st.loaded[count - 1] == owner:
                module = st.modules[count]
                break
        piece = f"{opt} {value}" if value else opt
        module.text = f"{module.text} ! {piece}" if neg else f"{module.text} {piece}"
        module.options.append((opt, value, neg))

    def _tail_result(self, st: _Tail) -> tuple:
        """The walk's findings as tail()'s result (the rpfilter / recent Matches made now)."""
        matches = st.matches
        if st.modules:
            grouped = False
            for module in st.modules.values():
                if module.name in GROUPED_MODULES:
                    try:
                        matches[module.index] = group_matches(module.name, module.options, module.text)
                    except _Bad as err:
                        raise self.bad(err) from None
                    grouped = True
                elif module.name == "rpfilter":
                    matches[module.index] = Match(field="rpfilter", values=(), negate=module.negate, text=module.text)
                elif module.command is None:
                    raise self.bad("recent: you must specify one of --set, --rcheck, --update or --remove")
                else:
                    matches[module.index] = Match(
                        field="recent",
                        values=((module.list_name, RECENT_COMMANDS[module.command]),),
                        negate=module.negate,
                        text=module.text,
                    )
            if grouped:
                matches = [m for item in matches for m in (item if isinstance(item, tuple) else (item,))]
        if st.loaded and "addrtype" in st.loaded and any(m.field == "addrtype.limit-iface" for m in matches):
            # --limit-iface-in/out: the type is looked up on one interface only: not modelled
            matches = [
                Match(field=m.field, values=m.values, negate=m.negate, text=m.text, opaque=True)
                if isinstance(m.field, str) and m.field.startswith("fib.")
                else m
                for m in matches
            ]
        return (tuple(matches), st.target, st.goto, st.target_args, st.comment)

"""`-j TARGET ARGS` -> Action: verdicts, jumps, NAT, MARK, and targets lbfw cannot follow."""

from __future__ import annotations

from typing import Optional

from ...model import NON_ENDING_TARGETS, Action, Chain, Rule
from .fast import _action
from .options import VERDICT_TARGETS
from .state import ParserState
from .values import _CACHE_LIMIT, _int, _ip4, _ip6, _quote, _value_mask


class TargetReader(ParserState):
    """The parser's target half (a mixin of ``_Parser``): reads ``table``, ``family``,
    ``family_word``, ``actions`` and ``unresolved`` (``ParserState``)."""

    def action(self, name: str, goto: bool, args: tuple, chain: Chain, rule: Rule) -> Action:
        """The Action for `-j NAME ARGS` (or `-g NAME`) in ``chain``."""
        assert self.table is not None  # targets are read inside their table
        if name in self.table.chains:
            return _action("goto" if goto else "jump", name, " ".join(args))
        if goto:
            self.unresolved.append((rule, name, True, chain.name))
            return Action("unknown", target=name)
        key = (name, args)
        action = self.actions.get(key)
        if action is None:
            action = self.target_action(name, args, chain, rule)
            if action.kind != "unknown" and name != "NETMAP" and len(self.actions) < _CACHE_LIMIT:
                self.actions[key] = action
        return action

    def target_action(self, name: str, args: tuple, chain: Chain, rule: Rule) -> Action:
        arg_text = " ".join([_quote(a) for a in args])
        kind = VERDICT_TARGETS.get(name)
        if kind is not None:
            if args and name != "REJECT":
                raise self.bad(f"-j {name} takes no options, got {arg_text!r}", line=rule.origin.line)
            return _action(kind, name, arg_text)
        if name == "CONNMARK":
            return self.connmark_target(args, arg_text)
        if name in NON_ENDING_TARGETS:
            return _action("continue", name, arg_text)
        if name == "MARK":
            mark = self.mark_target(args)
            return Action(
                "continue", target=name, args=arg_text, set_mark=mark, mark_unknown="meta" if mark is None else None
            )
        if name == "DNAT":
            addr, port = self.nat_to(args, "--to-destination")
            return _action("dnat", name, arg_text, addr, port)
        if name == "REDIRECT":
            _, port = self.nat_to(args, "--to-ports", ports_only=True)
            return Action("redirect", target=name, args=arg_text, to_port=port)
        if name == "SNAT":
            addr, port = self.nat_to(args, "--to-source")
            return _action("snat", name, arg_text, addr, port)
        if name == "MASQUERADE":
            return _action("masquerade", name, arg_text)
        if name == "NETMAP":
            # NETMAP rewrites the source in POSTROUTING/INPUT, the destination elsewhere: the
            # new destination depends on the packet, which the model does not say
            if chain.hook in ("postrouting", "input"):
                return Action("snat", target=name, args=arg_text)
            return Action("unknown", target=name, args=arg_text)
        if name == "NOTRACK":
            return Action("notrack", target=name, args=arg_text)
        if name == "CT":
            kind = "notrack" if "--notrack" in args else "continue"
            return Action(kind, target=name, args=arg_text)
        if name in ("NFQUEUE", "QUEUE"):
            return Action("queue", target=name, args=arg_text)
        # Maybe a chain declared further down (hand-written files): resolved at COMMIT.
        self.unresolved.append((rule, name, False, chain.name))
        return Action("unknown", target=name, args=arg_text)

    def mark_target(self, args: tuple, target: str = "MARK") -> Optional[tuple]:
        """MARK's (or CONNMARK's) edit as (value, mask): mark = (mark & ~mask) ^ value, the way
        iptables-save prints every form back (--set-xmark V/M; measured); None when not one."""
        for i, opt in enumerate(args[:-1]):
            try:
                if opt in ("--set-mark", "--set-xmark"):
                    value, mask = _value_mask(args[i + 1])
                    if opt == "--set-mark":
                        return (value, mask | value)  # iptables makes it --set-xmark v/(m|v)
                    return (value, mask)
                if opt == "--or-mark":
                    value = _int(args[i + 1])
                    return (value, value)
                if opt == "--and-mark":
                    value = _int(args[i + 1])
                    return (0, ~value & 0xFFFFFFFF)
                if opt == "--xor-mark":
                    return (_int(args[i + 1]), 0)
            except ValueError:
                raise self.bad(f"{target} {opt}: bad mark {args[i + 1]!r}") from None
        return None

    def connmark_target(self, args: tuple, arg_text: str) -> Action:
        """CONNMARK: an edit of the conntrack mark (set_ctmark), --save-mark / --restore-mark
        (copy_mark with the bits copied), or, when lbfw cannot follow it, mark_unknown."""
        copy = "meta->ct" if "--save-mark" in args else "ct->meta" if "--restore-mark" in args else None
        if copy is None:
            ctmark = self.mark_target(args, "CONNMARK")
            return Action(
                "continue",
                target="CONNMARK",
                args=arg_text,
                set_ctmark=ctmark,
                mark_unknown="ct" if ctmark is None else None,
            )
        masks = {}
        for i, opt in enumerate(args[:-1]):
            if opt in ("--mask", "--nfmask", "--ctmask"):
                try:
                    masks[opt] = _int(args[i + 1])
                except ValueError:
                    raise self.bad(f"CONNMARK {opt}: bad mask {args[i + 1]!r}") from None
        full = 0xFFFFFFFF
        nfmask = masks.get("--nfmask", masks.get("--mask", full))
        ctmask = masks.get("--ctmask", masks.get("--mask", full))
        if nfmask != ctmask or any(
            a.startswith("--shift") or a.startswith("--left") or a.startswith("--right") for a in args
        ):
            # bits copied to other bits: the new mark is not a plain copy
            return Action(
                "continue", target="CONNMARK", args=arg_text, mark_unknown="ct" if copy == "meta->ct" else "meta"
            )
        return Action("continue", target="CONNMARK", args=arg_text, copy_mark=(copy, nfmask))

    def nat_to(self, args: tuple, opt: str, ports_only: bool = False) -> tuple:
        """(first address, first port) of a NAT target's --to-* option; None where absent."""
        try:
            value = args[args.index(opt) + 1]
        except (ValueError, IndexError):
            return None, None
        addr = port = None
        try:
            if ports_only:
                port = int(value.partition("-")[0])
                if not 0 <= port <= 65535:
                    raise self.bad(f"{opt}: port {port} is not valid (0-65535)")
                return None, port
            if self.family == "ip6":
                if value.startswith("["):
                    addr_text, _, rest = value[1:].partition("]")
                    port_text = rest[1:] if rest.startswith(":") else ""
                else:
                    addr_text, port_text = value, ""
                addr = _ip6(addr_text.partition("-")[0]) if addr_text else None
            else:
                addr_text, _, port_text = value.partition(":")
                addr = _ip4(addr_text.partition("-")[0]) if addr_text else None
            if port_text:
                port = int(port_text.partition("-")[0])
        except ValueError:
            raise self.bad(f"{opt}: {value!r} is not {self.family_word} address[:port]") from None
        if port is not None and not 0 <= port <= 65535:
            # iptables-restore 1.8.9, measured: "Port `65536' not valid" (0 is taken)
            raise self.bad(f"{opt}: port {port} is not valid (0-65535)")
        return addr, port

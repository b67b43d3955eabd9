"""Fast constructors of model objects (the reader makes hundreds of thousands of them)."""

from __future__ import annotations

from dataclasses import fields as _dc_fields
from typing import Optional

from ...model import Action, Chain, Match, Origin

# Frozen dataclasses set each field through object.__setattr__: 3.3 us for a Match on a slow
# machine. Rules with unique addresses (fail2ban, blocklists: 140,000 of them) need one new
# Match and Origin each, so these build the very same objects through the slot descriptors
# (1.3 us). They are equal, hash and print exactly like ones made by the constructor. The slot
# descriptors are taken from the class __dict__: what `Match.field` is, but typed as a descriptor.
_new = object.__new__
_m_field, _m_values, _m_negate, _m_text, _m_set_name, _m_mask, _m_opaque = (
    Match.__dict__[name].__set__ for name in ("field", "values", "negate", "text", "set_name", "mask", "opaque")
)
_o_source, _o_line, _o_handle, _o_index = (
    Origin.__dict__[name].__set__ for name in ("source", "line", "handle", "index")
)


def _match(field: str, values: tuple, negate: bool, text: str) -> Match:
    """Match(field, values, negate, text) for a decidable match, built fast (see above)."""
    m = _new(Match)
    _m_field(m, field)
    _m_values(m, values)
    _m_negate(m, negate)
    _m_text(m, text)
    _m_set_name(m, None)
    _m_mask(m, None)
    _m_opaque(m, False)
    return m


def _file_origin(source: str, line: int) -> Origin:
    """Origin(source, line=line), built fast (see above)."""
    o = _new(Origin)
    _o_source(o, source)
    _o_line(o, line)
    _o_handle(o, None)
    _o_index(o, None)
    return o


(
    _a_kind,
    _a_target,
    _a_args,
    _a_to_addr,
    _a_to_port,
    _a_vmap_field,
    _a_vmap,
    _a_set_name,
    _a_set_mark,
    _a_set_ctmark,
    _a_copy_mark,
    _a_mark_unknown,
) = (
    Action.__dict__[name].__set__
    for name in (
        "kind",
        "target",
        "args",
        "to_addr",
        "to_port",
        "vmap_field",
        "vmap",
        "set_name",
        "set_mark",
        "set_ctmark",
        "copy_mark",
        "mark_unknown",
    )
)


def _action(kind: str, target: str, args: str, to_addr: Optional[int] = None, to_port: Optional[int] = None) -> Action:
    """Action(kind, target=, args=, to_addr=, to_port=), built fast (kube-proxy: one new
    jump per endpoint chain and one DNAT per endpoint, 3.2 us -> 1.3 us each)."""
    a = _new(Action)
    _a_kind(a, kind)
    _a_target(a, target)
    _a_args(a, args)
    _a_to_addr(a, to_addr)
    _a_to_port(a, to_port)
    _a_vmap_field(a, None)
    _a_vmap(a, ())
    _a_set_name(a, None)
    _a_set_mark(a, None)
    _a_set_ctmark(a, None)
    _a_copy_mark(a, None)
    _a_mark_unknown(a, None)
    return a


# Should the model gain a field, the shortcuts above would leave it unset: use the constructors.
if tuple(f.name for f in _dc_fields(Action)) != (
    "kind",
    "target",
    "args",
    "to_addr",
    "to_port",
    "vmap_field",
    "vmap",
    "set_name",
    "set_mark",
    "set_ctmark",
    "copy_mark",
    "mark_unknown",
):

    def _action(
        kind: str,
        target: str,
        args: str,
        to_addr: Optional[int] = None,  # noqa: F811
        to_port: Optional[int] = None,
    ) -> Action:
        return Action(kind, target=target, args=args, to_addr=to_addr, to_port=to_port)


if tuple(f.name for f in _dc_fields(Match)) != ("field", "values", "negate", "text", "set_name", "mask", "opaque"):

    def _match(field: str, values: tuple, negate: bool, text: str) -> Match:  # noqa: F811
        return Match(field, values, negate, text)


if tuple(f.name for f in _dc_fields(Origin)) != ("source", "line", "handle", "index"):

    def _file_origin(source: str, line: int) -> Origin:  # noqa: F811
        return Origin(source, line=line)


_c_name, _c_rules, _c_hook, _c_priority, _c_type, _c_policy, _c_origin, _c_handle, _c_policy_ignore = (
    Chain.__dict__[f.name].__set__ for f in _dc_fields(Chain)
)


_NO_IGNORE: frozenset = frozenset()


def _user_chain(name: str, origin: Origin) -> Chain:
    """Chain(name=name, origin=origin), built fast: a kube-proxy dump declares a user chain
    for every service and endpoint (50,000 at 140,000 rules)."""
    c = _new(Chain)
    _c_name(c, name)
    _c_rules(c, [])
    _c_hook(c, None)
    _c_priority(c, None)
    _c_type(c, None)
    _c_policy(c, None)
    _c_origin(c, origin)
    _c_handle(c, None)
    _c_policy_ignore(c, _NO_IGNORE)
    return c


if tuple(f.name for f in _dc_fields(Chain)) != (
    "name",
    "rules",
    "hook",
    "priority",
    "type",
    "policy",
    "origin",
    "handle",
    "policy_ignore",
):

    def _user_chain(name: str, origin: Origin) -> Chain:  # noqa: F811
        return Chain(name=name, origin=origin)


_CONTINUE = Action("continue")
_ANY = object()  # an address match of every address: no match at all

"""Modules whose options together make their Matches (owner, connlimit, statistic, limit,
hashlimit, quota, time, cpu): ``group_matches`` turns one module's options, read by the tail
walk, into Matches. Pure but for owner names, resolved with pwd/grp where the reader runs."""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable
from typing import Optional

from ...model import Match
from .values import _Bad, _strtoui

_ID_MAX = 0xFFFFFFFF
Options = list  # [(option, value, negated)], in the order written


def _ids(value: str, lookup: Callable[[str], int]) -> Optional[tuple]:
    """`A`, `A-B` or a name -> (lo, hi); None for a name that does not resolve here (the file
    may come from another host)."""
    lo_text, dash, hi_text = value.partition("-")
    if lo_text.isdigit() and (not dash or hi_text.isdigit()):
        lo = int(lo_text)
        hi = int(hi_text) if dash else lo
        if hi > _ID_MAX or lo > hi:
            raise _Bad(f"owner: bad id range {value!r}")
        return (lo, hi)
    try:
        n = lookup(value)
    except (KeyError, OverflowError):
        return None
    return (n, n)


def _owner(options: Options, text: str) -> tuple:
    """--uid-owner -> meta.skuid, --gid-owner -> meta.skgid (with --suppl-groups the gid may be a
    supplementary group: opaque), --socket-exists -> meta.socket; each with its own `!`."""
    suppl = any(opt == "--suppl-groups" for opt, _v, _n in options)
    out = []
    for opt, value, neg in options:
        piece = f"! {opt} {value}" if neg else f"{opt} {value}"
        piece = piece.rstrip()
        if opt == "--uid-owner" or opt == "--gid-owner":
            field = "meta.skuid" if opt == "--uid-owner" else "meta.skgid"
            lookup = (lambda n: pwd.getpwnam(n).pw_uid) if field == "meta.skuid" else (lambda n: grp.getgrnam(n).gr_gid)
            ids = _ids(value, lookup)
            if ids is None or (suppl and field == "meta.skgid"):
                out.append(Match(field=field, negate=neg, text=f"-m owner {piece}", opaque=True))
            else:
                out.append(Match(field=field, values=(ids,), negate=neg, text=f"-m owner {piece}"))
        elif opt == "--socket-exists":
            out.append(Match(field="meta.socket", values=(True,), negate=neg, text=f"-m owner {piece}"))
        elif opt != "--suppl-groups":
            out.append(Match(field="m.owner", negate=neg, text=f"-m owner {piece}", opaque=True))
    return tuple(out)


def _one(options: Options, name: str) -> dict:
    seen: dict = {}
    for opt, value, neg in options:
        if opt in seen:
            raise _Bad(f"{name}: option {opt!r} can only be used once")
        seen[opt] = (value, neg)
    return seen


def _connlimit(options: Options, text: str) -> tuple:
    """(("above" | "upto", N),); `!` swaps them, as iptables-save prints it back."""
    seen = _one(options, "connlimit")
    for opt, how in (("--connlimit-above", "above"), ("--connlimit-upto", "upto")):
        if opt in seen:
            value, neg = seen[opt]
            try:
                n = _strtoui(value, _ID_MAX)
            except ValueError:
                raise _Bad(f"connlimit: {opt} {value!r} is not a number") from None
            if neg:
                how = "upto" if how == "above" else "above"
            return (Match(field="connlimit", values=((how, n),), text=text),)
    raise _Bad("connlimit: you must specify --connlimit-above or --connlimit-upto")


def _statistic(options: Options, text: str) -> tuple:
    """--mode nth --every N --packet P -> statistic.nth ((N, P),); --mode random --probability p ->
    statistic.random (p,). `!` on --every / --probability inverts the match."""
    seen = _one(options, "statistic")
    if seen.get("--mode", ("", False))[1]:
        raise _Bad('statistic: option "--mode" cannot be inverted')
    mode = seen.get("--mode", ("random", False))[0]
    negate = any(neg for _v, neg in seen.values())
    try:
        if mode == "nth":
            if "--every" not in seen or "--packet" not in seen:
                raise _Bad('statistic: option "--every" also requires "--packet"')
            every = _strtoui(seen["--every"][0], _ID_MAX)
            packet = _strtoui(seen["--packet"][0], _ID_MAX)
            if every == 0 or packet >= every:
                raise _Bad(f"statistic: --packet {packet} must be below --every {every}")
            return (Match(field="statistic.nth", values=((every, packet),), negate=negate, text=text),)
        if mode == "random":
            probability = float(seen.get("--probability", ("1", False))[0])
            if not 0.0 <= probability <= 1.0:
                raise _Bad(f"statistic: --probability {probability} is not within 0 and 1")
            return (Match(field="statistic.random", values=(probability,), negate=negate, text=text),)
    except ValueError:
        raise _Bad(f"statistic: bad option value in {text!r}") from None
    raise _Bad(f"statistic: unknown mode {mode!r}")


def _limit(options: Options, text: str) -> tuple:
    return (Match(field="limit", values=(("limit", text),), text=text),)


def _hashlimit(options: Options, text: str) -> tuple:
    """--hashlimit-upto (or the old --hashlimit): under the rate; --hashlimit-above: negate."""
    above = any(opt == "--hashlimit-above" for opt, _v, _n in options)
    return (Match(field="limit", values=(("hashlimit", text),), negate=above, text=text),)


def _quota(options: Options, text: str) -> tuple:
    seen = _one(options, "quota")
    if "--quota" not in seen:
        return (Match(field="m.quota", text=text, opaque=True),)
    value, neg = seen["--quota"]
    try:
        n = _strtoui(value, (1 << 64) - 1)
    except ValueError:
        raise _Bad(f"quota: bad quota {value!r}") from None
    return (Match(field="quota", values=(("over" if neg else "quota", n),), text=text),)


def _runtime(kind: str) -> Callable[[Options, str], tuple]:
    def build(options: Options, text: str) -> tuple:
        return (Match(field="runtime", values=((kind, text),), text=text),)

    return build


# module -> builder(options, module text) -> Matches
GROUP_BUILDERS: dict[str, Callable[[Options, str], tuple]] = {
    "owner": _owner,
    "connlimit": _connlimit,
    "statistic": _statistic,
    "limit": _limit,
    "hashlimit": _hashlimit,
    "quota": _quota,
    "time": _runtime("time"),
    "cpu": _runtime("cpu"),
}


def group_matches(module: str, options: Options, text: str) -> tuple:
    """The Matches of one `-m MODULE` with its ``options``; ``text`` is the module as written."""
    return GROUP_BUILDERS[module](options, text)

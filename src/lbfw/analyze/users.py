"""Flows that name no user, on a ruleset whose owner matches (`-m owner --uid-owner`, nft `meta
skuid`/`skgid`) decide them: answer once per user the rules single out, plus once for everyone else.

The verdict for "others" (a uid and gid no owner match names) becomes the flow's verdict, and the
users whose verdict differs are listed with theirs (FlowResult.by_user): "delivered for uid 106,
blocked for others" rather than "unknown".
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from dataclasses import replace
from typing import Optional

from ..model import LazyRules, Ruleset
from ..results import UNKNOWN, Flow, FlowResult, UserVerdict
from .packet import User

IdRanges = tuple[tuple[int, int], ...]

MAX_USERS = 16  # representatives per id kind; beyond them the flow stays unknown
OTHER_IDS = (1000, 65534, 4000000000)
OWNER_FIELDS = frozenset(("meta.skuid", "meta.skgid"))


class UserSweep:
    """The owner ids a ruleset names (collected once, when a flow first needs them)."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self._ids: Optional[tuple[IdRanges, IdRanges]] = None

    def ids(self) -> tuple[IdRanges, IdRanges]:
        """(uid ranges, gid ranges) named by non-opaque owner matches anywhere in the ruleset."""
        if self._ids is None:
            uids: set[tuple[int, int]] = set()
            gids: set[tuple[int, int]] = set()
            for table in self.ruleset.tables:
                for chain in table.chains.values():
                    rules = chain.rules
                    if isinstance(rules, LazyRules) and not rules.unbuilt_may_carry(OWNER_FIELDS):
                        rules = rules.built_rules()  # a kube-proxy dump's 100,000 lines stay unbuilt
                    for rule in rules:
                        for m in rule.matches:
                            if m.opaque or m.field not in OWNER_FIELDS:
                                continue
                            target = uids if m.field == "meta.skuid" else gids
                            target.update(v if isinstance(v, tuple) else (int(v), int(v)) for v in m.values)
            self._ids = (tuple(sorted(uids)), tuple(sorted(gids)))
        return self._ids

    def others(self) -> Optional[User]:
        """A uid and gid no owner match of the ruleset names (who the server is assumed to run as);
        None when the matches name too many ranges to pick one."""
        uid_ranges, gid_ranges = self.ids()
        uids = _representatives(uid_ranges)
        gids = _representatives(gid_ranges)
        if uids is None or gids is None:
            return None
        return User(uids[-1], gids[-1])

    def sweep(self, flow: Flow, unknown_result: FlowResult, evaluate: Callable[[Flow, User], FlowResult]) -> FlowResult:
        """Evaluate ``flow`` for each representative user; ``evaluate(flow, User)`` is the engine's."""
        uid_ranges, gid_ranges = self.ids()
        uids = _representatives(uid_ranges)
        gids = _representatives(gid_ranges)
        if uids is None or gids is None:
            return unknown_result
        others = User(uids[-1], gids[-1])
        base = evaluate(flow, others)
        if base.verdict == UNKNOWN:
            return unknown_result
        by_user = []
        caveats = list(base.caveats)
        for uid in uids:
            for gid in gids:
                if uid == others.uid and gid == others.gid:
                    continue
                # a named uid with an unnamed gid, or an unnamed uid with a named gid
                if uid != others.uid and gid != others.gid:
                    continue
                result = evaluate(flow, User(uid, gid))
                caveats.extend(c for c in result.caveats if c not in caveats)
                if result.verdict != base.verdict or result.redirected_to != base.redirected_to:
                    named_uid = uid != others.uid
                    who = _who("uid", uid) if named_uid else _who("gid", gid)
                    by_user.append(
                        UserVerdict(
                            who,
                            uid if named_uid else None,
                            None if named_uid else gid,
                            result.describe(),
                            result.verdict,
                        )
                    )
        return replace(base, by_user=tuple(by_user), caveats=tuple(caveats))


def _representatives(ranges: IdRanges) -> Optional[list[int]]:
    """The lowest id of each named range, then one id no range names (last). None: too many."""
    reps = sorted({lo for lo, _ in ranges})
    if len(reps) > MAX_USERS:
        return None
    for other in OTHER_IDS:
        if not any(lo <= other <= hi for lo, hi in ranges):
            return reps + [other]
    return None


def _who(kind: str, number: int) -> str:
    if kind == "uid":
        try:
            return f"uid {number} ({pwd.getpwuid(number).pw_name})"
        except (KeyError, OverflowError):
            return f"uid {number}"
    return f"gid {number}"

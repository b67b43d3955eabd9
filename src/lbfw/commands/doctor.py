"""`lbfw doctor [--plan PLAN | --to ...] [--user ...] [--format text|json]`: is this host ready for
the loopback setup about to be deployed? Glue: gather the facts, read the firewall, diagnose, render."""

from __future__ import annotations

import os
import platform
import sys
from typing import Optional

from ..errors import UsageError
from ._common import choose, write_output

FORMATS = ("text", "json")


def resolve_user(spec: Optional[str]):
    """``--user NAME|UID`` (a number is taken as is) or, without it, whoever runs doctor."""
    import pwd

    from ..doctor.host import User

    if spec is None:
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        caps = None
        if platform.system() == "Linux":
            from ..doctor.facts_linux import CAP_NET_BIND_SERVICE, effective_caps

            bits = effective_caps()
            caps = None if bits is None else bool(bits >> CAP_NET_BIND_SERVICE & 1)
        elif uid == 0:
            caps = True
        return User(name, uid, caps)
    if spec.isdigit():
        uid = int(spec)
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = spec
    else:
        try:
            uid = pwd.getpwnam(spec).pw_uid
        except KeyError:
            raise UsageError(f"--user {spec}: no such user") from None
        name = spec
    return User(name, uid, True if uid == 0 else None)


def gather_host():
    """The facts of this host, by platform (others: a Host that says what it is)."""
    system = platform.system()
    if system == "Linux":
        from ..doctor.facts_linux import gather

        return gather()
    if system == "Darwin":
        from ..doctor.facts_macos import gather

        return gather()
    from ..doctor.host import Host

    return Host(platform=system or "unknown")


def read_firewall(host, needed: bool):
    """(ruleset, None) or (None, why it was not read)."""
    if not needed:
        return None, "not needed"
    if host.platform == "macos":
        return None, "lbfw does not analyse pf rulesets (see DR052)"
    if not host.is_root:
        return None, "reading the live ruleset needs root (sudo lbfw doctor ...)"
    from ..errors import LbfwError
    from ..pipeline import read_ruleset

    try:
        return read_ruleset([], "auto", "auto"), None
    except LbfwError as err:
        return None, f"the live ruleset could not be read: {err.message}"


def run(
    plan: Optional[str] = None,
    to=(),
    from_: Optional[str] = None,
    user: Optional[str] = None,
    connections: Optional[int] = None,
    format: str = "text",
    fail_on: str = "warning",
    emit_launchd: bool = False,
) -> int:
    choose("--format", format, FORMATS)
    from ..doctor.items import FAIL_ON, at_or_above

    choose("--fail-on", fail_on, FAIL_ON)
    to = list(to or [])
    if to and plan is not None:
        raise UsageError("use --to or --plan, not both")
    if from_ is not None and not to:
        raise UsageError("--from goes with --to; a plan names each flow's client itself")
    if connections is not None and connections < 1:
        raise UsageError(f"--connections must be at least 1 (not {connections})")
    from ..analyze.flows import parse_plan, parse_to

    flows = parse_plan(plan) if plan is not None else [parse_to(spec, from_) for spec in to]

    if emit_launchd:
        if not flows:
            raise UsageError("--emit-launchd needs --plan or --to: the addresses to alias")
        from ..doctor.macos import launchd_plist, plan_aliases

        write_output(launchd_plist(plan_aliases(flows)), None)
        return 0

    who = resolve_user(user)
    host = gather_host()
    on = any(str(v) == "1" and n != "lo" for n, v in host.route_localnet.items())
    ruleset, unread = read_firewall(host, bool(flows) or on)
    from ..doctor import diagnose

    items = diagnose(host, flows, who, ruleset, unread, connections)
    context = {
        "platform": host.platform,
        "root": host.is_root,
        "plan": plan or (", ".join(to) or None),
        "flows": len(flows),
        "user": {"name": who.name, "uid": who.uid},
    }
    if format == "json":
        from ..doctor.render import render_json

        text = render_json(items, context)
    else:
        from ..doctor.render import render_text
        from ..render.common import use_color

        text = render_text(items, context, color=use_color(sys.stdout))
    write_output(text, None)
    return 1 if at_or_above(items, fail_on) else 0

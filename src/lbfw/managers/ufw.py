"""ufw: a rule `ufw allow from 127.0.0.1` made lives in /etc/ufw/user.rules (chains ufw-user-*), which
ufw rewrites and nobody edits by hand; the safe change is ufw's own command.

Every rule in user.rules follows a `### tuple ### ACTION PROTO DPORT DST SPORT SRC [DAPP SAPP] DIR[_IFACE]
[comment=HEX]` line (ufw's backend_iptables.py writes it, reads it back on `ufw reload`). `ufw delete`
finds a rule by those fields, so lbfw renders the command from the tuple the way ufw's own parser does
(parser.py get_command: what `ufw show added` prints).

The fix of a narrow loopback rule is two commands, in this order: first its twin on the loopback
interface (`ufw allow in on lo ...`, the same ports and protocol; `--style range`: `from 127.0.0.0/8`),
then `ufw delete` of the narrow rule. ufw's stock before.rules already accepts `-i lo` ahead of the user
rules, so there the twin changes nothing; it is added anyway because before.rules is the admin's to edit
(some remove that line), and added first so that no loopback flow is refused between the two commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

USER_RULES = "/etc/ufw/user.rules"
USER6_RULES = "/etc/ufw/user6.rules"
_ANY = ("0.0.0.0/0", "::/0")
_NARROW = ("127.0.0.1", "127.0.0.1/32")
_TUPLE = re.compile(r"^### tuple ###\s*(?P<body>.*)$")


@dataclass(frozen=True)
class UserRule:
    """One rule of user.rules, as its tuple line says (ufw's UFWRule fields)."""

    action: str  # allow | deny | reject | limit
    protocol: str
    dport: str
    dst: str
    sport: str
    src: str
    direction: str = "in"
    interface: str = ""
    logtype: str = ""  # log | log-all
    dapp: str = ""
    sapp: str = ""
    comment: str = ""
    line: Optional[int] = None  # the tuple's line in user.rules
    lines: tuple[str, ...] = ()  # the `-A` lines it made

    def words(self, comment: bool = True) -> list[str]:
        """The rule as ufw's get_command renders it (what `ufw show added` prints), word by word, after
        `ufw` or `ufw delete`. `ufw delete` finds a rule without its comment (measured, ufw 0.36.2)."""
        out = [self.action]
        short = (
            self.dst in _ANY
            and self.src in _ANY
            and self.sport == "any"
            and not self.sapp
            and not self.interface
            and self.dport != "any"
        )
        if short:
            if self.direction == "out":
                out.append("out")
            if self.logtype:
                out.append(self.logtype)
            out.append(self.dapp or (self.dport + (f"/{self.protocol}" if self.protocol != "any" else "")))
        else:
            if self.interface:
                out += [self.direction, "on", self.interface]
            elif self.direction == "out":
                out.append("out")
            if self.logtype:
                out.append(self.logtype)
            for word, loc, port, app in (
                ("from", self.src, self.sport, self.sapp),
                ("to", self.dst, self.dport, self.dapp),
            ):
                loc = "any" if loc in _ANY else loc
                if loc != "any" or port != "any" or app:
                    out += [word, loc] + (["app", app] if app else ["port", port] if port != "any" else [])
            if "to" not in out and "from" not in out and not self.interface:
                out += ["to", "any"]
            if self.protocol != "any" and not self.dapp and not self.sapp:
                out += ["proto", self.protocol]
        if self.comment and comment:
            out += ["comment", self.comment]
        return out

    @property
    def narrow(self) -> bool:
        """Whether it allows 127.0.0.1 alone as its source or destination (and names no interface).
        A narrow deny is left alone: its loopback twin would refuse all of 127.0.0.0/8."""
        return self.action == "allow" and not self.interface and (self.src in _NARROW or self.dst in _NARROW)

    def on_loopback(self, style: str = "interface") -> UserRule:
        """The same rule for all of loopback: on `lo` (the address dropped), or 127.0.0.0/8 (``range``)."""
        wide = "127.0.0.0/8" if style == "range" else "0.0.0.0/0"
        return replace(
            self,
            src=wide if self.src in _NARROW else self.src,
            dst=wide if self.dst in _NARROW else self.dst,
            interface="" if style == "range" else "lo",
            comment="",
            line=None,
            lines=(),
        )


def _unhex(text: str) -> str:
    try:
        return bytes.fromhex(text).decode("utf-8")
    except ValueError:
        return text


def user_rules(text: str) -> list[UserRule]:
    """The rules of a user.rules text, each with its tuple's line and the `-A` lines under it."""
    out: list[UserRule] = []
    current: Optional[UserRule] = None
    for number, raw in enumerate(text.split("\n"), 1):
        match = _TUPLE.match(raw.strip())
        if match:
            if current is not None:
                out.append(current)
            current = _parse_tuple(match.group("body"), number)
        elif raw.startswith("-A ") and current is not None:
            current = replace(current, lines=(*current.lines, raw.strip()))
        elif raw.startswith("### END RULES"):
            break
    if current is not None:
        out.append(current)
    return out


def _parse_tuple(body: str, number: int) -> Optional[UserRule]:
    comment = ""
    if " comment=" in f" {body}":
        body, _, hexed = f" {body}".partition(" comment=")
        comment = _unhex(hexed.strip())
    words = body.split()
    if len(words) not in (7, 9) or words[0].startswith("route:"):
        return None  # the old 6/8-field format (no direction) and route rules: no command offered
    action, _, logtype = words[0].partition("_")
    dapp, sapp = (words[6], words[7]) if len(words) == 9 else ("-", "-")
    direction, _, interface = words[-1].partition("_")
    if "!" in interface:
        return None  # in_X!out_Y: a route rule's two interfaces
    protocol, dport, dst, sport, src = words[1:6]
    return UserRule(
        action,
        protocol,
        dport,
        dst,
        sport,
        src,
        direction=direction,
        interface=interface,
        logtype=logtype,
        dapp="" if dapp == "-" else dapp.replace("%20", " "),
        sapp="" if sapp == "-" else sapp.replace("%20", " "),
        comment=comment,
        line=number,
    )


def _options(rule: str) -> tuple:
    """An iptables rule's options, order and iptables-save's spelling aside (`-s 127.0.0.1/32` =
    `-s 127.0.0.1`, the implicit `-m tcp` dropped), to find a live rule's line in user.rules."""
    words = rule.split()
    if words[:1] == ["-A"]:
        words = words[2:]
    groups: list[list[str]] = []
    for word in words:
        if word.startswith("-") and not word[1:].isdigit() or not groups:
            groups.append([word])
        else:
            groups[-1].append(word.removesuffix("/32"))
    kept = [g for g in groups if g not in (["-m", "tcp"], ["-m", "udp"])]
    return tuple(sorted(tuple(g) for g in kept))


def find(rules: list[UserRule], chain: str, rule: str) -> Optional[UserRule]:
    """The user.rules rule that made the live ``rule`` of ``chain`` (None: none, or more than one)."""
    wanted = _options(rule)
    hits = [
        r
        for r in rules
        if r is not None and any(line.split()[1:2] == [chain] and _options(line) == wanted for line in r.lines)
    ]
    return hits[0] if len(hits) == 1 else None


def fix_commands(rule: UserRule, style: str = "interface") -> tuple[tuple[str, ...], ...]:
    """The argv lists that fix a narrow rule: its loopback twin added, then the rule deleted; () when
    the rule is not narrow."""
    if not rule.narrow:
        return ()
    return (("ufw", *rule.on_loopback(style).words()), ("ufw", "delete", *rule.words(comment=False)))


_SOURCE = re.compile(r"(?:^|\s)-s\s+(127\.0\.0\.1)(?:/32)?(?:\s|$)")
_DPORT = re.compile(r"--dport\s+(\d+)")
_PROTO = re.compile(r"(?:^|\s)-p\s+(tcp|udp)(?:\s|$)")
_JUMP = re.compile(r"(?:^|\s)-j\s+(\S+)")
_ACTIONS = {"ACCEPT": "allow", "DROP": "deny", "REJECT": "reject"}


def commands(chain: str, rule: str) -> tuple:
    """The ufw commands for a narrow loopback rule of ufw-user-input when user.rules is not at hand
    (a saved dump): read from the iptables rule, so a comment or an app profile is not known. ()
    for other chains or rules."""
    action = _ACTIONS.get(next(iter(_JUMP.findall(rule)), ""))
    if not chain.startswith(("ufw-user-input", "ufw6-user-input")) or not _SOURCE.search(rule) or action is None:
        return ()
    port, proto = _DPORT.search(rule), _PROTO.search(rule)
    made = UserRule(
        action,
        proto.group(1) if proto else "any",
        port.group(1) if port else "any",
        "0.0.0.0/0",
        "any",
        "127.0.0.1",
    )
    return tuple(" ".join(argv) for argv in fix_commands(made))

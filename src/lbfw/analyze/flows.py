"""Which loopback flows to look at: the audit's default set, PLAN.toml, and `--to ADDR:PORT/proto`.

Pure: no I/O except reading the plan file the user names.
"""

from __future__ import annotations

import ipaddress
import pwd
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Optional, Union

from ..errors import InputError
from ..model import LazyRules, Rule, Ruleset, Table
from ..results import Flow

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    # tomli is a dependency on 3.10 only: a 3.11 environment checking for 3.10 does not have it
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

PortRange = tuple[int, int]

# The audit's addresses: the kernel's default source (127.0.0.1 for every 127/8 server, ::1 for
# ::1: an explicit 127.0.0.1 or ::1 client would be the same packet) and a bound alternate as
# clients; 127.0.0.1, systemd-resolved's 127.0.0.53 and an address far from 127.0.0.1 as servers.
IPV4_CLIENTS = (None, "127.0.0.2")
IPV4_SERVERS = ("127.0.0.1", "127.0.0.53", "127.66.66.66")
IPV6_CLIENTS = (None,)
IPV6_SERVERS = ("::1",)
# Well-known loopback services, tried where the rules name their port: systemd-resolved's stub
# (127.0.0.53:53, udp and tcp) and Debian's 127.0.1.1, the address /etc/hosts gives the host's
# own name (any service reached by hostname: tried on every port the rules single out).
RESOLVED_STUB = ("127.0.0.53", 53)
DEBIAN_HOSTNAME = "127.0.1.1"
PROTOS = ("tcp", "udp")
# A port no rule names: the first of these that no rule mentions (else the first free from 40000).
UNNAMED_CANDIDATES = (47231, 38917, 51413, 44321, 58109)
MAX_PORT_CLASSES = 12  # per protocol: the classes named by the most rules first

_PORT_FIELDS = ("th.dport", "th.sport", "th.port")
_TCP, _UDP = 6, 17
_LOOP4 = (0x7F000000, 0x7FFFFFFF)


# --------------------------------------------------------------------------- the audit's flows


def default_flows(ruleset: Ruleset) -> list[Flow]:
    """The audit's flow set (see `audit_flows`)."""
    return audit_flows(ruleset)[0]


def audit_flows(ruleset: Ruleset) -> tuple[list[Flow], int]:
    """(flows, the port no rule names). The flows: every client x server pair above, tcp and
    udp, on the port no rule names plus one representative port per port class the rules single
    out (so a rule about port 22 or 53 is not missed); systemd-resolved's 127.0.0.53:53 where a
    rule names port 53, and 127.0.1.1 on the ports the rules single out. No two flows are the
    same packet; deterministic and bounded. Reports say "any port" for the unnamed port: it
    stands for every port no rule names."""
    classes, named = _port_classes(ruleset)
    unnamed = classes[PROTOS[0]][0]
    flows: list[Flow] = []
    seen: set[Flow] = set()

    def add(flow: Flow) -> None:
        if flow not in seen:
            seen.add(flow)
            flows.append(flow)

    for proto in PROTOS:
        ports = classes[proto]
        for server in IPV4_SERVERS:
            for client in IPV4_CLIENTS:
                for port in ports:
                    add(Flow(proto, server, port, client))
        stub, stub_port = RESOLVED_STUB
        if any(lo <= stub_port <= hi for lo, hi in named[proto]):
            for client in IPV4_CLIENTS:
                add(Flow(proto, stub, stub_port, client))
        for port in ports[1:]:
            add(Flow(proto, DEBIAN_HOSTNAME, port, None))
        for server in IPV6_SERVERS:
            for client in IPV6_CLIENTS:
                for port in ports:
                    add(Flow(proto, server, port, client))
    return flows, unnamed


def _rule_port_ranges(ruleset: Ruleset) -> Iterator[tuple[tuple[str, ...], list[PortRange]]]:
    """(protocols the rule is about, port ranges) for every rule that names ports and can see
    loopback traffic. One cheap pass: most rules of a big dump name no port at all."""
    port_fields = _PORT_FIELDS
    # lines a reader left unbuilt (kube-proxy's endpoint chains) are built only if one of
    # them may name a port a loopback packet can meet
    for table in ruleset.tables:
        for chain in table.chains.values():
            rules = chain.rules
            if isinstance(rules, LazyRules) and not rules.may_name_loopback_port():
                rules = rules.built_rules()
            for rule in rules:
                ranges: Optional[list[PortRange]] = None
                for m in rule.matches:
                    f = m.field
                    if f.__class__ is str:
                        if f in port_fields and not m.opaque:
                            ranges = (ranges or []) + _ranges_of(f, m.values, table)
                    elif any(x in port_fields for x in f):
                        ranges = (ranges or []) + _ranges_of(f, m.values, table)
                action = rule.action
                if action.kind == "vmap" and action.vmap_field is not None:
                    values = tuple(e.value for e in action.vmap)
                    found = _ranges_of(action.vmap_field, values, table)
                    if found:
                        ranges = (ranges or []) + found
                if ranges and _may_see_loopback(rule):
                    yield _rule_protos(rule), ranges


def _ranges_of(field: Union[str, tuple[str, ...]], values: Iterable[Any], table: Table) -> list[PortRange]:
    if field.__class__ is str:
        found: list[PortRange] = []
        if field in _PORT_FIELDS:
            for v in values:
                if v.__class__ is tuple and len(v) == 2 and 1 <= v[0] <= v[1] <= 65535:
                    found.append(v)
                else:
                    r = _as_range(v)
                    if r is not None:
                        found.append(r)
        return found
    out: list[Optional[PortRange]] = []
    for k, f in enumerate(field):
        if f in _PORT_FIELDS:
            for v in values:
                if isinstance(v, tuple) and len(v) > k:
                    out.append(_as_range(v[k]))
    return [r for r in out if r is not None]


def _as_range(v: Any) -> Optional[PortRange]:
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (max(1, v[0]), min(65535, v[1])) if v[1] >= 1 else None
    if isinstance(v, int) and 1 <= v <= 65535:
        return (v, v)
    return None


def _rule_protos(rule: Rule) -> tuple[str, ...]:
    for m in rule.matches:
        if m.field == "meta.l4proto" and not m.negate and not m.opaque:
            found = []
            for lo, hi in m.values:
                if lo <= _TCP <= hi:
                    found.append("tcp")
                if lo <= _UDP <= hi:
                    found.append("udp")
            return tuple(found)
    return PROTOS


def _may_see_loopback(rule: Rule) -> bool:
    """False for rules no packet of a loopback flow can match: a positive address match outside
    127/8 and ::1 (kube-proxy's cluster IPs), or a positive interface match other than lo."""
    for m in rule.matches:
        if m.negate or m.opaque or not isinstance(m.field, str):
            continue
        if m.field in ("ip.saddr", "ip.daddr") and m.values:
            if not any(_overlaps(v, _LOOP4) for v in m.values if isinstance(v, tuple)):
                return False
        elif m.field in ("ip6.saddr", "ip6.daddr") and m.values:
            if not any(_overlaps(v, (1, 1)) for v in m.values if isinstance(v, tuple)):
                return False
        elif (
            m.field in ("meta.iifname", "meta.oifname")
            and m.values
            and not any(_iface_may_be_lo(str(v)) for v in m.values)
        ):
            return False
    return True


def _overlaps(a: PortRange, b: PortRange) -> bool:
    return not (a[1] < b[0] or b[1] < a[0])


def _iface_may_be_lo(pattern: str) -> bool:
    if pattern.endswith(("*", "+")):
        return "lo".startswith(pattern[:-1])
    return pattern == "lo"


def _port_classes(ruleset: Ruleset) -> tuple[dict[str, list[int]], dict[str, list[PortRange]]]:
    """({proto: [unnamed port, representative of each class...]}, {proto: [named ranges]}).

    A class is a set of ports every rule treats alike: the ports covered by the same
    combination of named ranges. The representative is the lowest port of the class."""
    per_proto: dict[str, dict[PortRange, int]] = {p: {} for p in PROTOS}  # proto -> {range: rules naming it}
    every: list[PortRange] = []
    for protos, ranges in _rule_port_ranges(ruleset):
        for r in set(ranges):
            every.append(r)
            for p in protos:
                per_proto[p][r] = per_proto[p].get(r, 0) + 1
    unnamed = _unnamed_port(every)
    out: dict[str, list[int]] = {}
    for proto in PROTOS:
        reps = _representatives(per_proto[proto])
        out[proto] = [unnamed] + [port for port in reps if port != unnamed]
    return out, {proto: list(per_proto[proto]) for proto in PROTOS}


def _representatives(counts: dict[PortRange, int]) -> list[int]:
    """Lowest port of each distinct class (by the set of ranges covering it), the classes
    named by the most rules first, at most MAX_PORT_CLASSES, returned sorted."""
    if not counts:
        return []
    if len(counts) > 16 * MAX_PORT_CLASSES:
        # kube-proxy names thousands of node ports: sweep only the most-named ranges (ties: the
        # lowest port) so the classes stay bounded and the sweep cheap
        keep = sorted(counts, key=lambda r: (-counts[r], r))[: 16 * MAX_PORT_CLASSES]
        counts = {r: counts[r] for r in keep}
    ranges = sorted(counts)
    points = sorted({lo for lo, _ in ranges} | {hi + 1 for _, hi in ranges})
    starts = sorted(ranges)
    active: list[PortRange] = []
    seen: dict[frozenset[PortRange], tuple[int, int]] = {}
    k = 0
    for point in points[:-1]:
        while k < len(starts) and starts[k][0] <= point:
            active.append(starts[k])
            k += 1
        active = [r for r in active if r[1] >= point]
        if not active:
            continue
        signature = frozenset(active)
        if signature not in seen:
            seen[signature] = (sum(counts[r] for r in active), point)
    ranked = sorted(seen.values(), key=lambda item: (-item[0], item[1]))[:MAX_PORT_CLASSES]
    return sorted(port for _, port in ranked)


def _unnamed_port(ranges: list[PortRange]) -> int:
    def named(port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in ranges)

    for port in UNNAMED_CANDIDATES:
        if not named(port):
            return port
    for port in range(40000, 65536):
        if not named(port):
            return port
    return UNNAMED_CANDIDATES[0]  # every port named: any is as good as another


# --------------------------------------------------------------------------- addresses


def _loopback_addr(text: str, what: str, path: Optional[str], line: Optional[int]) -> str:
    """Validate a loopback address, returning it in canonical form."""
    raw = text.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        raise InputError(f"{what}: {text!r} is not an IP address", path=path, line=line) from None
    if not addr.is_loopback:
        raise InputError(
            f"{what}: {addr} is not a loopback address (lbfw only speaks about loopback traffic: 127.0.0.0/8 and ::1)",
            path=path,
            line=line,
        )
    return str(addr)


def _same_family(server: str, client: Optional[str], path: Optional[str], line: Optional[int]) -> None:
    if client is not None and (":" in server) != (":" in client):
        raise InputError(f"client {client} and server {server} are not of the same IP version", path=path, line=line)


# --------------------------------------------------------------------------- --to

_TO_RE = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[^:/\[\]]+)):(?P<port>[^/]+)(?:/(?P<proto>[A-Za-z]+))?$")


def with_user(
    flow: Flow, user: Optional[str], what: str = "--user", path: Optional[str] = None, line: Optional[int] = None
) -> Flow:
    """``flow`` for the client user NAME or UID: a name is resolved on the host running lbfw (one it
    does not have is kept with uid None: the audited host may have it), a number taken as it is."""
    if user is None:
        return flow
    text = str(user).strip()
    if not text:
        raise InputError(f"{what}: the user is empty", path=path, line=line)
    uid = gid = None
    if text.isdigit():
        uid = int(text)
        if uid >= 1 << 32:
            raise InputError(f"{what}: uid {text} is out of range", path=path, line=line)
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = None
    else:
        try:
            entry = pwd.getpwnam(text)
            uid, gid = entry.pw_uid, entry.pw_gid
        except KeyError:
            pass
    return Flow(flow.proto, flow.server, flow.port, flow.client, text, uid, gid)


def parse_to(spec: str, client: Optional[str] = None, user: Optional[str] = None) -> Flow:
    """`--to 127.0.0.53:53/udp`, `--to [::1]:80` (tcp by default), with `--from ADDR` and `--user NAME|UID`."""
    m = _TO_RE.match(spec.strip())
    if not m:
        raise InputError(f"--to {spec!r}: expected ADDR:PORT[/tcp|/udp], e.g. 127.0.0.53:53/udp or [::1]:80")
    server = _loopback_addr(m.group("v6") or m.group("v4"), f"--to {spec}", None, None)
    if m.group("v4") is not None and ":" in server:
        raise InputError(f"--to {spec!r}: write IPv6 addresses in brackets, e.g. [::1]:80")
    port_text = m.group("port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(f"--to {spec!r}: port {port_text!r} is not a number from 1 to 65535")
    proto = (m.group("proto") or "tcp").lower()
    if proto not in PROTOS:
        raise InputError(f"--to {spec!r}: protocol {m.group('proto')!r} is not tcp or udp")
    if client is not None:
        client = _loopback_addr(client, "--from", None, None)
        _same_family(server, client, None, None)
    return with_user(Flow(proto, server, int(port_text), client), user)


# --------------------------------------------------------------------------- PLAN.toml

_FLOW_HEADER = re.compile(r"^\s*\[\[\s*flow\s*\]\]")
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")
_FLOW_KEYS = ("proto", "server", "port", "client", "user")


def _flow_lines(text: str) -> list[tuple[int, dict[str, int]]]:
    """For each `[[flow]]` table: (header line, {key: line}) from the text (tomllib gives no lines)."""
    tables = []
    current: Optional[tuple[int, dict[str, int]]] = None
    for number, line in enumerate(text.splitlines(), start=1):
        if _FLOW_HEADER.match(line):
            current = (number, {})
            tables.append(current)
            continue
        if line.lstrip().startswith("["):
            current = None
            continue
        if current is not None:
            km = _KEY_LINE.match(line)
            if km:
                current[1].setdefault(km.group(1).strip("\"'"), number)
    return tables


def parse_plan(path: str) -> list[Flow]:
    """Read PLAN.toml: `[[flow]]` tables with proto ("tcp" | "udp"), server (a loopback
    address), port (1-65535) and an optional client. Any mistake -> InputError(path, line)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise InputError(f"cannot read the plan: {err.strerror or err}", path=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the plan is not UTF-8 text", path=path) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column \d+\)", str(err))
        line = int(m.group(1)) if m else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err))
        raise InputError(f"not valid TOML: {message}", path=path, line=line) from None
    positions = _flow_lines(text)
    for key in doc:
        if key != "flow":
            line = _top_key_line(text, key)
            raise InputError(f"unknown key {key!r}: a plan holds only [[flow]] tables", path=path, line=line)
    tables = doc.get("flow")
    if not isinstance(tables, list) or not tables:
        raise InputError(
            'no [[flow]] tables: write one per flow, e.g. [[flow]] proto = "udp" server = "127.0.0.53" port = 53',
            path=path,
            line=1 if text else None,
        )
    flows = []
    for index, table in enumerate(tables):
        header, keys = positions[index] if index < len(positions) else (None, {})

        def where(key: str, keys: dict[str, int] = keys, header: Optional[int] = header) -> Optional[int]:
            return keys.get(key, header)

        if not isinstance(table, dict):
            raise InputError("flow must be a table", path=path, line=header)
        for key in table:
            if key not in _FLOW_KEYS:
                raise InputError(
                    f"unknown key {key!r} in [[flow]] (expected proto, server, port, client, user)",
                    path=path,
                    line=where(key),
                )
        for key in ("proto", "server", "port"):
            if key not in table:
                raise InputError(f"[[flow]] lacks {key!r}", path=path, line=header)
        proto = table["proto"]
        if not isinstance(proto, str) or proto.lower() not in PROTOS:
            raise InputError(f'proto {proto!r}: expected "tcp" or "udp"', path=path, line=where("proto"))
        server = table["server"]
        if not isinstance(server, str):
            raise InputError(f"server {server!r}: expected an address in quotes", path=path, line=where("server"))
        server = _loopback_addr(server, "server", path, where("server"))
        port = table["port"]
        if isinstance(port, bool) or not isinstance(port, int):
            raise InputError(f"port {port!r}: expected an integer", path=path, line=where("port"))
        if not 1 <= port <= 65535:
            raise InputError(f"port {port} is out of range (1-65535)", path=path, line=where("port"))
        client = table.get("client")
        if client is not None:
            if not isinstance(client, str):
                raise InputError(f"client {client!r}: expected an address in quotes", path=path, line=where("client"))
            client = _loopback_addr(client, "client", path, where("client"))
            _same_family(server, client, path, where("client"))
        user = table.get("user")
        if user is not None and (isinstance(user, bool) or not isinstance(user, (str, int))):
            raise InputError(f"user {user!r}: expected a name or a uid", path=path, line=where("user"))
        flows.append(
            with_user(
                Flow(proto.lower(), server, port, client),
                None if user is None else str(user),
                "user",
                path,
                where("user"),
            )
        )
    return flows


def _top_key_line(text: str, key: str) -> Optional[int]:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(f"[{key}]") or stripped.startswith(f"[[{key}]]"):
            return number
        km = _KEY_LINE.match(line)
        if km and km.group(1).strip("\"'") == key:
            return number
    return None

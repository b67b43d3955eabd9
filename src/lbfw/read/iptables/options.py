"""The iptables vocabulary the reader knows: tables, protocols, targets, and which option
belongs to which match module with how many arguments it takes."""

from __future__ import annotations

# The built-in chains each table has (iptables-restore rejects a policy on anything else).
BUILTIN_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

PROTOCOLS = {
    "all": 0,
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "egp": 8,
    "udp": 17,
    "ipv6": 41,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "icmp6": 58,
    "ospf": 89,
    "pim": 103,
    "vrrp": 112,
    "l2tp": 115,
    "sctp": 132,
    "mh": 135,
    "ipv6-mh": 135,
    "udplite": 136,
    "dccp": 33,
}
# The match module a protocol loads implicitly (`-p tcp --dport 22` needs no `-m tcp`).
PROTO_MODULE = {
    "tcp": "tcp",
    "udp": "udp",
    "sctp": "sctp",
    "udplite": "udplite",
    "dccp": "dccp",
    "icmp": "icmp",
    "icmpv6": "icmp6",
    "ipv6-icmp": "icmp6",
    "icmp6": "icmp6",
    "6": "tcp",
    "17": "udp",
    "132": "sctp",
    "1": "icmp",
    "58": "icmp6",
}

TCP_FLAGS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32, "ALL": 63, "NONE": 0, "ECE": 64, "CWR": 128}

CT_STATES = {
    "NEW": "new",
    "ESTABLISHED": "established",
    "RELATED": "related",
    "INVALID": "invalid",
    "UNTRACKED": "untracked",
}
CT_STATUS = {
    "SNAT": "snat",
    "DNAT": "dnat",
    "CONFIRMED": "confirmed",
    "SEEN_REPLY": "seen-reply",
    "ASSURED": "assured",
    "EXPECTED": "expected",
}

VERDICT_TARGETS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject", "RETURN": "return"}

# Options whose single argument may itself start with "-" (so it is always taken).
ONE_ARG_ALWAYS = frozenset(
    ("--comment", "--log-prefix", "--string", "--hex-string", "--u32", "--nflog-prefix", "--ulog-prefix", "--helper")
)

# Options that take the match loop back from target options (a hand-written `-j X -s Y`).
RESUME_MATCH = frozenset(
    (
        "-s",
        "--source",
        "--src",
        "-d",
        "--destination",
        "--dst",
        "-p",
        "--protocol",
        "-i",
        "--in-interface",
        "-o",
        "--out-interface",
        "-m",
        "--match",
        "-c",
        "--set-counters",
        "-f",
        "--fragment",
        "-4",
        "-6",
        "--ipv4",
        "--ipv6",
    )
)

# Modules that add nothing by being loaded (their options, if any, are handled one by one).
# A module outside this set that carries no option at all still filters (rpfilter, socket):
# it becomes an opaque match.
QUIET_MODULES = frozenset(
    (
        "tcp",
        "udp",
        "udplite",
        "sctp",
        "dccp",
        "icmp",
        "icmp6",
        "comment",
        "limit",
        "multiport",
        "state",
        "conntrack",
        "addrtype",
        "iprange",
        "mark",
        "connmark",
        "set",
        "mac",
        "owner",
        "hashlimit",
        "connlimit",
        "physdev",
        "time",
        "string",
        "u32",
        "length",
        "ttl",
        "hl",
        "pkttype",
        "tos",
        "dscp",
        "ecn",
        "helper",
        "policy",
        "quota",
        "statistic",
        "connbytes",
        "devgroup",
        "cgroup",
        "realm",
        "esp",
        "ah",
        "frag",
        "ipv6header",
        "rt",
        "mh",
        "dst",
        "hbh",
        "tcpmss",
        "cpu",
        "nfacct",
        "bpf",
        "ipvs",
        "cluster",
        "condition",
        "osf",
        "geoip",
        "account",
        "connlabel",
        "ipcomp",
        "rateest",
    )
)


# Options every rule understands (not tied to a module): option -> kind.
OPTIONS = {
    "-s": "saddr",
    "--source": "saddr",
    "--src": "saddr",
    "-d": "daddr",
    "--destination": "daddr",
    "--dst": "daddr",
    "-i": "iif",
    "--in-interface": "iif",
    "-o": "oif",
    "--out-interface": "oif",
    "-p": "proto",
    "--protocol": "proto",
}

_PORTS = {
    "--sport": ("port", 1),
    "--source-port": ("port", 1),
    "--dport": ("port", 1),
    "--destination-port": ("port", 1),
}
# Module options lbfw understands: module -> option -> (kind, number of arguments).
# Options of a loaded module not listed here are kept opaque with their arguments.
MODULE_OPTIONS = {
    "tcp": {**_PORTS, "--syn": ("syn", 0), "--tcp-flags": ("tcpflags", 2), "--tcp-option": ("tcpoption", 1)},
    "udp": dict(_PORTS),
    "udplite": dict(_PORTS),
    "sctp": dict(_PORTS),
    "dccp": dict(_PORTS),
    "icmp": {"--icmp-type": ("icmptype", 1)},
    "icmp6": {"--icmpv6-type": ("icmptype", 1)},
    "multiport": {
        "--sports": ("ports", 1),
        "--source-ports": ("ports", 1),
        "--dports": ("ports", 1),
        "--destination-ports": ("ports", 1),
        "--ports": ("ports", 1),
    },
    "state": {"--state": ("state", 1)},
    "conntrack": {"--ctstate": ("state", 1), "--ctstatus": ("ctstatus", 1), "--ctdir": ("ctdir", 1)},
    "addrtype": {
        "--src-type": ("srctype", 1),
        "--dst-type": ("dsttype", 1),
        "--limit-iface-in": ("limitiface", 0),
        "--limit-iface-out": ("limitiface", 0),
    },
    "iprange": {"--src-range": ("range", 1), "--dst-range": ("range", 1)},
    "mark": {"--mark": ("mark", 1)},
    "connmark": {"--mark": ("ctmark", 1)},
    # header fields and other one-option matches (packet.py)
    "ttl": {"--ttl-eq": ("hop", 1), "--ttl-lt": ("hop", 1), "--ttl-gt": ("hop", 1)},
    "hl": {"--hl-eq": ("hop", 1), "--hl-lt": ("hop", 1), "--hl-gt": ("hop", 1)},
    "length": {"--length": ("length", 1)},
    "dscp": {"--dscp": ("dscp", 1), "--dscp-class": ("dscp", 1)},
    "ecn": {"--ecn-ip-ect": ("ecn", 1), "--ecn-tcp-cwr": ("ecn", 0), "--ecn-tcp-ece": ("ecn", 0)},
    "tos": {"--tos": ("tos", 1)},
    "pkttype": {"--pkt-type": ("pkttype", 1)},
    "devgroup": {"--src-group": ("devgroup", 1), "--dst-group": ("devgroup", 1)},
    "helper": {"--helper": ("helper", 1)},
    "tcpmss": {"--mss": ("mss", 1)},
    "physdev": {
        "--physdev-in": ("physdev", 1),
        "--physdev-out": ("physdev", 1),
        "--physdev-is-in": ("physdev", 0),
        "--physdev-is-out": ("physdev", 0),
        "--physdev-is-bridged": ("physdev", 0),
    },
    # modules whose options together make their Matches (grouped.py)
    "owner": {
        "--uid-owner": ("group", 1),
        "--gid-owner": ("group", 1),
        "--socket-exists": ("group", 0),
        "--suppl-groups": ("group", 0),
    },
    "connlimit": {
        "--connlimit-above": ("group", 1),
        "--connlimit-upto": ("group", 1),
        "--connlimit-mask": ("group", 1),
        "--connlimit-saddr": ("group", 0),
        "--connlimit-daddr": ("group", 0),
    },
    "statistic": {
        "--mode": ("group", 1),
        "--every": ("group", 1),
        "--packet": ("group", 1),
        "--probability": ("group", 1),
    },
    "hashlimit": {
        opt: ("group", 1)
        for opt in (
            "--hashlimit-upto",
            "--hashlimit-above",
            "--hashlimit",
            "--hashlimit-burst",
            "--hashlimit-mode",
            "--hashlimit-name",
            "--hashlimit-srcmask",
            "--hashlimit-dstmask",
            "--hashlimit-htable-size",
            "--hashlimit-htable-max",
            "--hashlimit-htable-expire",
            "--hashlimit-htable-gcinterval",
            "--hashlimit-rate-interval",
        )
    }
    | {"--hashlimit-rate-match": ("group", 0)},
    "quota": {"--quota": ("group", 1)},
    "time": {
        "--timestart": ("group", 1),
        "--timestop": ("group", 1),
        "--datestart": ("group", 1),
        "--datestop": ("group", 1),
        "--monthdays": ("group", 1),
        "--weekdays": ("group", 1),
        "--kerneltz": ("group", 0),
        "--utc": ("group", 0),
        "--localtz": ("group", 0),
        "--contiguous": ("group", 0),
    },
    "cpu": {"--cpu": ("group", 1)},
    "set": {"--match-set": ("matchset", 2), "--set": ("matchset", 2)},
    "comment": {"--comment": ("comment", 1)},
    "limit": {"--limit": ("group", 1), "--limit-burst": ("group", 1)},
    "mac": {"--mac-source": ("opaque", 1)},
    "string": {"--string": ("opaque", 1), "--hex-string": ("opaque", 1)},
    "u32": {"--u32": ("opaque", 1)},
    # one Match per `-m rpfilter` / `-m recent`, of all its options (tail.py)
    "rpfilter": {
        "--loose": ("rpfilter", 0),
        "--validmark": ("rpfilter", 0),
        "--accept-local": ("rpfilter", 0),
        "--invert": ("rpfilter", 0),
    },
    "recent": {
        "--set": ("recent", 0),
        "--rcheck": ("recent", 0),
        "--update": ("recent", 0),
        "--remove": ("recent", 0),
        "--name": ("recent", 1),
        "--rsource": ("recent", 0),
        "--rdest": ("recent", 0),
        "--mask": ("recent", 1),
        "--seconds": ("recent", 1),
        "--reap": ("recent", 0),
        "--hitcount": ("recent", 1),
        "--rttl": ("recent", 0),
    },
}

# modules that make their Matches from all their options at once (grouped.GROUP_BUILDERS)
GROUPED_MODULES = frozenset(("owner", "connlimit", "statistic", "limit", "hashlimit", "quota", "time", "cpu"))

# `-m recent`'s commands (exactly one per match) -> the command of its Match (model "recent")
RECENT_COMMANDS = {"--set": "set", "--rcheck": "rcheck", "--update": "update", "--remove": "remove"}

"""Deterministic generators of big rulesets for the benchmark and the scaling tests.

Every generator is pure: (size, seed) in, ruleset text out, the same text for the same
arguments on every machine. Nothing here touches the kernel; bench.py loads the results
into private network namespaces to prove they are real rulesets.

- ``kube_dump(rules)``: an iptables-save dump shaped like kube-proxy's iptables mode
  (KUBE-SERVICES dispatching to KUBE-SVC-* chains, which spread over KUBE-SEP-* chains
  with ``-m statistic --mode random --probability``, DNAT, KUBE-MARK-MASQ, KUBE-NODEPORTS,
  KUBE-POSTROUTING), nat-heavy, with a small filter table whose INPUT policy is DROP and
  whose loopback accept is the narrow ``-s 127.0.0.1/32``.
- ``filter_dump(rules)``: a filter-heavy ruleset (zones dispatched by interface into ~100
  service chains with CIDRs over many source networks, ports, multiport, conntrack, LOG,
  RETURN), the shape that makes exact analyzers blow up.
- ``nft_big_set(elements)``: an nftables ruleset (``nft -f`` syntax) with one named set of
  100,000 IPv4 addresses used by the input chain.

Run as a script to write them: ``python tests/benchmarks/generate.py OUTDIR``.
"""

from __future__ import annotations

import base64
import hashlib
import random
import sys
from pathlib import Path

DEFAULT_SEED = 20260

KUBE_SIZES = {"kube-10k": 10_000, "kube-35k": 35_000, "kube-140k": 140_000}
FILTER_SIZE = 5_000
NFT_SET_ELEMENTS = 100_000

CHAIR_DUMP = "configs_chair_for_Network_Architectures_and_Services__iptables-save-2016-06-27_16-29-01"
# The collectors censored the MACs; iptables-restore rejects the placeholder.
CENSORED_MAC = "--mac-source XX:XX:XX:XX:XX:XX"
DUMMY_MAC = "--mac-source 02:00:00:00:00:01"

_NAMESPACES = (
    "default",
    "kube-system",
    "monitoring",
    "payments",
    "checkout",
    "search",
    "ingress-nginx",
    "logging",
    "auth",
    "billing",
    "catalog",
    "media",
    "ml-serving",
    "cache",
    "queue",
)
_PORTS = (
    (80, "http"),
    (443, "https"),
    (8080, "http-alt"),
    (9090, "metrics"),
    (5432, "postgres"),
    (6379, "redis"),
    (3306, "mysql"),
    (8443, "webhook"),
    (9092, "kafka"),
    (53, "dns"),
)
_ENDPOINTS = (1, 1, 2, 2, 3, 3, 3, 4, 5, 8)  # mean 3.2 endpoints per service


def _ip(value: int) -> str:
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _hash16(text: str) -> str:
    """kube-proxy's chain-name hash: base32 of sha256, first 16 characters."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:16].decode()


def count_rules(text: str) -> int:
    """Rules in an iptables-save dump (the `-A` lines)."""
    return sum(1 for line in text.splitlines() if line.startswith("-A "))


# --------------------------------------------------------------------------- kube-proxy


def kube_dump(rules: int, seed: int = DEFAULT_SEED) -> str:
    """A kube-proxy-like iptables-save dump with about ``rules`` rules (within one service's worth).

    The header tables (mangle canaries, filter with INPUT policy DROP and the narrow
    127.0.0.1/32 accept, the fixed nat jumps) are always there; services are added until the
    rule count reaches ``rules``.
    """
    rng = random.Random(seed)
    mangle = [
        "*mangle",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-IPTABLES-HINT - [0:0]",
        ":KUBE-KUBELET-CANARY - [0:0]",
        "COMMIT",
    ]
    filter_chains = [
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":KUBE-EXTERNAL-SERVICES - [0:0]",
        ":KUBE-FIREWALL - [0:0]",
        ":KUBE-FORWARD - [0:0]",
        ":KUBE-KUBELET-CANARY - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-PROXY-CANARY - [0:0]",
        ":KUBE-PROXY-FIREWALL - [0:0]",
        ":KUBE-SERVICES - [0:0]",
    ]
    filter_rules = [
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
        "-j KUBE-PROXY-FIREWALL",
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
        "-A INPUT -j KUBE-FIREWALL",
        # The narrow loopback accept lbfw exists to find.
        "-A INPUT -s 127.0.0.1/32 -j ACCEPT",
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT",
        "-A INPUT -s 10.0.0.0/8 -p tcp -m multiport --dports 2379,2380,6443 -j ACCEPT",
        "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT",
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
        "-j KUBE-PROXY-FIREWALL",
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
        "-j KUBE-PROXY-FIREWALL",
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A OUTPUT -j KUBE-FIREWALL",
        '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet '
        'connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    nat_chains = [
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-KUBELET-CANARY - [0:0]",
        ":KUBE-MARK-MASQ - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-POSTROUTING - [0:0]",
        ":KUBE-PROXY-CANARY - [0:0]",
        ":KUBE-SERVICES - [0:0]",
    ]
    nat_head = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    services: list[str] = []  # KUBE-SERVICES (nat), in order
    nodeports: list[str] = []  # KUBE-NODEPORTS (nat)
    per_chain: list[str] = []  # KUBE-SVC / KUBE-EXT / KUBE-SEP rules
    filter_services: list[str] = []
    count = len(filter_rules) + len(nat_head) + 1  # + the final KUBE-SERVICES nodeports rule
    endpoint_ip = 0x0AF40000 + 2  # 10.244.0.2
    index = 0
    while count < rules:
        index += 1
        ns = _NAMESPACES[index % len(_NAMESPACES)] if index % 7 else f"team-{rng.randrange(400):03d}"
        name = f"svc-{index:05d}"
        port, port_name = _PORTS[rng.randrange(len(_PORTS))]
        proto = "udp" if port == 53 and rng.random() < 0.5 else "tcp"
        spn = f"{ns}/{name}:{port_name}"
        cluster_ip = _ip(0x0A600000 + index)  # 10.96.0.0/12
        svc = "KUBE-SVC-" + _hash16(spn + proto)
        k = _ENDPOINTS[rng.randrange(len(_ENDPOINTS))]
        if index % 50 == 0:  # a service with no endpoints: filter REJECT, as kube-proxy writes it
            filter_services.append(
                f'-A KUBE-SERVICES -d {cluster_ip}/32 -p {proto} -m comment --comment "{spn} has no endpoints" '
                f"-m {proto} --dport {port} -j REJECT --reject-with icmp-port-unreachable"
            )
            count += 1
            continue
        nat_chains.append(f":{svc} - [0:0]")
        services.append(
            f'-A KUBE-SERVICES -d {cluster_ip}/32 -p {proto} -m comment --comment "{spn} cluster IP" '
            f"-m {proto} --dport {port} -j {svc}"
        )
        per_chain.append(
            f"-A {svc} ! -s 10.244.0.0/16 -d {cluster_ip}/32 -p {proto} -m comment --comment "
            f'"{spn} cluster IP" -m {proto} --dport {port} -j KUBE-MARK-MASQ'
        )
        count += 2
        if index % 5 == 0:  # NodePort service
            ext = "KUBE-EXT-" + _hash16(spn + proto)
            nat_chains.append(f":{ext} - [0:0]")
            nodeports.append(
                f'-A KUBE-NODEPORTS -p {proto} -m comment --comment "{spn}" -m {proto} '
                f"--dport {30000 + index % 2768} -j {ext}"
            )
            per_chain.append(
                f'-A {ext} -m comment --comment "masquerade traffic for {spn} external destinations" -j KUBE-MARK-MASQ'
            )
            per_chain.append(f"-A {ext} -j {svc}")
            count += 3
        target_port = port if port != 80 else 8080
        for j in range(k):
            ep = _ip(endpoint_ip)
            endpoint_ip += 1 if endpoint_ip & 255 < 250 else 8
            sep = "KUBE-SEP-" + _hash16(spn + proto + f"{ep}:{target_port}")
            nat_chains.append(f":{sep} - [0:0]")
            stat = ""
            if j < k - 1:
                stat = f" -m statistic --mode random --probability {1.0 / (k - j):.11f}"
            per_chain.append(f'-A {svc} -m comment --comment "{spn} -> {ep}:{target_port}"{stat} -j {sep}')
            per_chain.append(f'-A {sep} -s {ep}/32 -m comment --comment "{spn}" -j KUBE-MARK-MASQ')
            per_chain.append(
                f'-A {sep} -p {proto} -m comment --comment "{spn}" -m {proto} '
                f"-j DNAT --to-destination {ep}:{target_port}"
            )
            count += 3
    services.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
        'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    out = ["# Generated by iptables-save v1.8.9 on Sun Nov 22 00:00:00 2026"]
    out += mangle
    out += ["*filter"] + filter_chains + filter_rules + filter_services + ["COMMIT"]
    out += ["*nat"] + nat_chains + nat_head + nodeports + services + per_chain + ["COMMIT"]
    out.append("# Completed on Sun Nov 22 00:00:00 2026")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- filter-heavy

_ZONES = (
    ("ext", "eth0"),
    ("dmz", "eth1"),
    ("lan", "bond0.10"),
    ("mgmt", "bond0.20"),
    ("voip", "bond0.30"),
    ("guest", "wlan0"),
    ("vpn", "tun0"),
    ("lab", "eth2"),
    ("stor", "eth3"),
    ("backup", "eth4"),
)


def filter_dump(rules: int = FILTER_SIZE, seed: int = DEFAULT_SEED, services: int = 100) -> str:
    """A filter-heavy iptables-save dump with about ``rules`` rules (within one rule).

    INPUT and FORWARD (policy DROP) dispatch by interface into one chain per zone, then send
    every other interface (lo included, as firewalld's default zone does) to the ``pub``
    zone; zone chains send source networks and port lists to ~``services`` service chains;
    service chains accept ports per source CIDR (tcp, udp, multiport, conntrack NEW), log,
    and RETURN. Loopback packets that the narrow 127.0.0.1 accept misses walk the ``pub``
    zone and the service chains its port lists reach, so the analysis has real work to do.
    """
    rng = random.Random(seed)
    # Source networks: never 0/8, 10/8 or 127/8, so no random rule is about loopback by chance.
    firsts = [n for n in range(1, 223) if n not in (10, 127)]
    nets = [
        (
            rng.choice(firsts) << 24 | rng.randrange(256) << 16 | rng.randrange(256) << 8,
            rng.choice((16, 20, 22, 24, 24, 24, 26, 28, 32)),
        )
        for _ in range(600)
    ]

    def cidr() -> str:
        base, plen = nets[rng.randrange(len(nets))]
        base &= (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        return f"{_ip(base)}/{plen}"

    head = [
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A INPUT -m conntrack --ctstate INVALID -j DROP",
        "-A INPUT -s 127.0.0.1/32 -j ACCEPT",
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
        "-A OUTPUT -o lo -j ACCEPT",
    ]
    chains = [":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    zones = _ZONES + (("pub", None),)
    for zone, iface in zones:
        chains += [f":{zone}_in - [0:0]", f":{zone}_fwd - [0:0]"]
        dispatch = f"-i {iface} " if iface else ""  # pub: every interface no zone claims
        head.append(f"-A INPUT {dispatch}-j {zone}_in")
        head.append(f"-A FORWARD {dispatch}-j {zone}_fwd")
    head.append('-A INPUT -m limit --limit 10/min -j LOG --log-prefix "INPUT drop: " --log-level 6')
    head.append('-A FORWARD -m limit --limit 10/min -j LOG --log-prefix "FORWARD drop: " --log-level 6')
    svc_names = [f"svc_{i:03d}" for i in range(services)]
    chains += [f":{name} - [0:0]" for name in svc_names]
    body: list[str] = []
    # Budget: zones take ~20% of the rules, services the rest.
    zone_budget = max(4, (rules - len(head)) // 5 // (2 * len(zones)))
    for zone, _iface in zones:
        for direction in ("in", "fwd"):
            chain = f"{zone}_{direction}"
            for _ in range(zone_budget - 2):
                svc = svc_names[rng.randrange(services)]
                kind = rng.random()
                if kind < 0.6:
                    body.append(f"-A {chain} -s {cidr()} -j {svc}")
                elif kind < 0.8:
                    body.append(f"-A {chain} -s {cidr()} -d {cidr()} -j {svc}")
                else:
                    ports = ",".join(str(p) for p in sorted(rng.sample(range(1, 10000), 4)))
                    body.append(f"-A {chain} -p tcp -m multiport --dports {ports} -j {svc}")
            body.append(f'-A {chain} -m limit --limit 5/min -j LOG --log-prefix "{chain} drop: "')
            body.append(f"-A {chain} -j RETURN")
    remaining = rules - len(head) - len(body)
    per_service = max(3, remaining // services)
    extra = max(0, remaining - per_service * services)
    for i, svc in enumerate(svc_names):
        n = per_service + (1 if i < extra else 0)
        for _ in range(n - 2):
            kind = rng.random()
            port = rng.randrange(1, 65536)
            if kind < 0.4:
                body.append(f"-A {svc} -s {cidr()} -p tcp -m tcp --dport {port} -m conntrack --ctstate NEW -j ACCEPT")
            elif kind < 0.6:
                body.append(f"-A {svc} -s {cidr()} -p udp -m udp --dport {port} -j ACCEPT")
            elif kind < 0.75:
                ports = ",".join(str(p) for p in sorted(rng.sample(range(1, 65536), rng.randrange(2, 8))))
                body.append(f"-A {svc} -s {cidr()} -p tcp -m multiport --dports {ports} -j ACCEPT")
            elif kind < 0.85:
                body.append(
                    f"-A {svc} -s {cidr()} -d {cidr()} -p tcp -m tcp --dport {port}:{min(65535, port + 99)} -j ACCEPT"
                )
            elif kind < 0.93:
                body.append(f"-A {svc} -s {cidr()} -j DROP")
            else:
                body.append(f"-A {svc} -s {cidr()} -p tcp -m tcp --dport {port} -j REJECT --reject-with tcp-reset")
        body.append(f'-A {svc} -m limit --limit 2/min -j LOG --log-prefix "{svc}: "')
        body.append(f"-A {svc} -j RETURN")
    out = ["# Generated by iptables-save v1.8.9 on Sun Nov 22 00:00:00 2026", "*filter"]
    out += chains + head + body + ["COMMIT", "# Completed on Sun Nov 22 00:00:00 2026"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- nftables with a big set


def nft_big_set(elements: int = NFT_SET_ELEMENTS, seed: int = DEFAULT_SEED) -> str:
    """An nftables ruleset (``nft -f`` syntax) whose input chain drops a named set of ``elements``
    distinct IPv4 addresses; its loopback accept is the narrow ``ip saddr 127.0.0.1``.

    No ``flush ruleset``: loading it must never wipe anything but a throwaway namespace's
    (empty) ruleset anyway, and a file that flushes is a trap if loaded by hand.
    """
    rng = random.Random(seed)
    picked = set()
    while len(picked) < elements:
        # Outside 0/8, 10/8, 127/8 and multicast: plain unicast "bad actors".
        picked.add(
            rng.randrange(0x0B000000, 0x7F000000) if rng.random() < 0.5 else rng.randrange(0x80000000, 0xDF000000)
        )
    addrs = [_ip(a) for a in sorted(picked)]
    lines = [
        "#!/usr/sbin/nft -f",
        "# lbfw benchmark: a 100,000-element blocklist set",
        "",
        "define ssh_port = 22",
        "",
        "table inet lbfw_bench {",
        "\tset blocklist4 {",
        "\t\ttype ipv4_addr",
        "\t\telements = {",
    ]
    step = 8
    for i in range(0, len(addrs), step):
        tail = "," if i + step < len(addrs) else ""
        lines.append("\t\t\t" + ", ".join(addrs[i : i + step]) + tail)
    lines += [
        "\t\t}",
        "\t}",
        "",
        "\tset admin_nets {",
        "\t\ttype ipv4_addr",
        "\t\tflags interval",
        "\t\telements = { 10.10.0.0/16, 192.168.100.0/24, 172.16.0.0/12 }",
        "\t}",
        "",
        "\tchain services {",
        "\t\ttcp dport { 80, 443 } accept",
        "\t\tip saddr @admin_nets tcp dport { $ssh_port, 9100 } accept",
        "\t\tudp dport 53 accept",
        "\t\treturn",
        "\t}",
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        "\t\tip saddr 127.0.0.1 accept",
        "\t\tip6 saddr ::1 accept",
        "\t\tip saddr @blocklist4 counter drop",
        "\t\tmeta l4proto icmp accept",
        "\t\tmeta l4proto ipv6-icmp accept",
        "\t\tjump services",
        '\t\tlog prefix "input drop: " limit rate 5/minute',
        "\t}",
        "",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
        "\t\tip saddr @blocklist4 drop",
        "\t}",
        "",
        "\tchain output {",
        "\t\ttype filter hook output priority filter; policy accept;",
        "\t\tip daddr @blocklist4 counter reject",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def chair_for_kernel(text: str) -> str:
    """The chair dump with its censored MACs replaced, so iptables-restore takes it."""
    return text.replace(CENSORED_MAC, DUMMY_MAC)


def write_all(outdir: Path, seed: int = DEFAULT_SEED, sizes: dict | None = None) -> dict[str, Path]:
    """Write every generated ruleset into ``outdir``; returns {name: path}."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, size in (sizes or KUBE_SIZES).items():
        paths[name] = outdir / f"{name}.rules"
        paths[name].write_text(kube_dump(size, seed))
    paths["filter-5k"] = outdir / "filter-5k.rules"
    paths["filter-5k"].write_text(filter_dump(FILTER_SIZE, seed))
    paths["nft-100k-set"] = outdir / "nft-100k-set.nft"
    paths["nft-100k-set"].write_text(nft_big_set(NFT_SET_ELEMENTS, seed))
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUTDIR")
    for label, path in write_all(Path(sys.argv[1])).items():
        print(f"{label}\t{path}")

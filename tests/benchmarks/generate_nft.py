"""Deterministic native-nftables rulesets for the benchmark and the scaling tests (issue 17).

Pure like ``generate.py``: (size, seed) in, ``nft -f`` text out, the same on every machine.

- ``kube_nft(services)``: what kube-proxy's nftables mode writes (pkg/proxy/nftables/proxier.go,
  ``setupNFTables`` + ``syncProxyRules``): one ``table ip kube-proxy`` with the base chains
  filter-prerouting/-input/-forward/-output at ``dstnat - 10`` and nat-prerouting/-output/-postrouting;
  the verdict maps ``service-ips`` / ``no-endpoint-services`` / ``firewall-ips`` keyed by
  ``ipv4_addr . inet_proto . inet_service`` and ``service-nodeports`` / ``no-endpoint-nodeports`` keyed
  by ``inet_proto . inet_service``, matched with ``ip daddr . meta l4proto . th dport vmap @...``;
  ``fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports``;
  a ``service-HASH-ns/name/proto/port`` chain per service port (masquerade mark for off-cluster
  sources, then ``numgen random mod N vmap { 0 : goto endpoint-..., ... }``), an
  ``endpoint-HASH-...`` chain per endpoint (``ip saddr EP jump mark-for-masquerade``, ``meta
  l4proto tcp dnat to EP:PORT``), ``external-`` chains for NodePort/LoadBalancer services (Local
  policy with the ``fib saddr type local`` short-circuits), ``firewall-`` chains for
  loadBalancerSourceRanges, affinity sets (``dynamic,timeout``) and their ``update`` rules,
  services without endpoints in the no-endpoint maps (``goto reject-chain``), and the
  mark-for-masquerade / masquerading chains. kube-proxy writes no loopback accept: the table
  only steers service traffic; the node's own filter is beside it (``table inet host``, a
  narrow ``ip saddr 127.0.0.1 accept`` under policy drop, as in ``generate.kube_dump``).
- ``nft_ban_sets(elements)``: a host firewall with a crowdsec/fail2ban style ban list of
  ``elements`` IPv4 addresses (and an IPv6 one a tenth of the size, and an interval set of
  networks), dropped in a raw prerouting chain and in input, with the narrow loopback accept.
"""

from __future__ import annotations

import base64
import hashlib
import random

from generate import _ENDPOINTS, _NAMESPACES, _PORTS, DEFAULT_SEED, _ip

KUBE_NFT_SIZES = {"kube-nft-1k": 1_000, "kube-nft-5k": 5_000, "kube-nft-10k": 10_000}
BAN_SIZES = {"nft-ban-100k": 100_000, "nft-ban-1m": 1_000_000}

_MASQ_MARK = "0x00004000"
_CLUSTER_CIDR = "10.244.0.0/16"  # the local-traffic detector's pod CIDR (IfLocalNFT / IfNotLocalNFT)
_SERVICE_NET = 0x0A600000  # 10.96.0.0/12 service ClusterIPs
_POD_NET = 0x0AF40000  # 10.244.0.0/16 endpoints


def _hash8(name: str) -> str:
    """kube-proxy's ``hashAndTruncate`` prefix: base32 of sha256, first 8 characters."""
    return base64.b32encode(hashlib.sha256(name.encode()).digest())[:8].decode()


def _chain(prefix: str, base: str) -> str:
    return f"{prefix}{_hash8(base)}-{base}"


class _KubeTable:
    """The kube-proxy table being built: chains in order, map elements by map name."""

    def __init__(self) -> None:
        self.chains: dict[str, list[str]] = {}
        self.elements: dict[str, list[str]] = {
            m: []
            for m in (
                "service-ips",
                "service-nodeports",
                "no-endpoint-services",
                "no-endpoint-nodeports",
                "firewall-ips",
            )
        }
        self.affinity: list[tuple[str, int]] = []

    def rule(self, chain: str, text: str) -> None:
        self.chains.setdefault(chain, []).append(text)


def kube_nft(services: int, seed: int = DEFAULT_SEED) -> str:
    """kube-proxy's nftables-mode ruleset for ``services`` service ports, plus the node's own
    filter table (module docstring). No ``flush ruleset``, as in ``generate.nft_big_set``."""
    rng = random.Random(seed)
    t = _KubeTable()
    for c in ("services", "masquerading", "mark-for-masquerade", "endpoints-check", "firewall-check"):
        t.chains[c] = []
    t.rule("mark-for-masquerade", f"mark set mark or {_MASQ_MARK}")
    t.rule("masquerading", f"mark and {_MASQ_MARK} == 0 return")
    t.rule("masquerading", f"mark set mark xor {_MASQ_MARK}")
    t.rule("masquerading", "masquerade fully-random")
    t.rule("endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
    t.rule(
        "endpoints-check",
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
    )
    t.rule("firewall-check", "ip daddr . meta l4proto . th dport vmap @firewall-ips")
    t.rule("services", "ip daddr . meta l4proto . th dport vmap @service-ips")
    t.rule("services", "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports")
    t.chains["reject-chain"] = ["reject"]
    next_pod = 2
    node_port = 30000
    for i in range(services):
        ns = _NAMESPACES[i % len(_NAMESPACES)]
        port, port_name = _PORTS[rng.randrange(len(_PORTS))]
        proto = "udp" if port == 53 else "tcp"
        name = f"{ns}/svc-{i:05d}/{proto}/{port_name}"
        cluster_ip = _ip(_SERVICE_NET + 10 + i)
        kind = rng.random()
        n_eps = 0 if kind < 0.03 else _ENDPOINTS[rng.randrange(len(_ENDPOINTS))]
        external = kind >= 0.75  # NodePort; the top tenth also a LoadBalancer
        local_policy = external and rng.random() < 0.3
        affinity = rng.random() < 0.05
        eps = []
        for _ in range(n_eps):
            eps.append((_ip(_POD_NET + next_pod), 8000 + port % 1000))
            next_pod += 1
        nodeport = None
        if external:
            nodeport = node_port
            node_port += 1
        lb_ip = _ip(0xC6336400 + i) if kind >= 0.9 else None  # 198.51.100.0/22-ish VIPs
        key = f"{cluster_ip} . {proto} . {port}"
        if not eps:
            t.elements["no-endpoint-services"].append(
                f'{key} comment "{ns}/svc-{i:05d}:{port_name}" : goto reject-chain'
            )
            if nodeport is not None:
                t.elements["no-endpoint-nodeports"].append(f"{proto} . {nodeport} : goto reject-chain")
            continue
        svc_chain = _chain("service-", name)
        ext_chain = _chain("external-", name)
        t.elements["service-ips"].append(f"{key} : goto {svc_chain}")
        t.rule(
            svc_chain,
            f"ip daddr {cluster_ip} {proto} dport {port} ip saddr != {_CLUSTER_CIDR} jump mark-for-masquerade",
        )
        ep_chains = [_chain("endpoint-", f"{name}__{ip}/{p}") for ip, p in eps]
        if affinity:
            for ep_chain in ep_chains:
                aff = "affinity-" + ep_chain[len("endpoint-") :]
                t.affinity.append((aff, 10800))
                t.rule(svc_chain, f"ip saddr @{aff} goto {ep_chain}")
        vmap = ", ".join(f"{k} : goto {c}" for k, c in enumerate(ep_chains))
        t.rule(svc_chain, f"numgen random mod {len(eps)} vmap {{ {vmap} }}")
        for (ip, p), ep_chain in zip(eps, ep_chains):
            t.rule(ep_chain, f"ip saddr {ip} jump mark-for-masquerade")
            if affinity:
                t.rule(ep_chain, f"update @affinity-{ep_chain[len('endpoint-') :]} {{ ip saddr }}")
            t.rule(ep_chain, f"meta l4proto {proto} dnat to {ip}:{p}")
        if not external:
            continue
        t.elements["service-nodeports"].append(f"{proto} . {nodeport} : goto {ext_chain}")
        if lb_ip is not None:
            t.elements["service-ips"].append(f"{lb_ip} . {proto} . {port} : goto {ext_chain}")
            fw_chain = _chain("firewall-", name)
            t.elements["firewall-ips"].append(
                f'{lb_ip} . {proto} . {port} comment "{ns}/svc-{i:05d}:{port_name}" : goto {fw_chain}'
            )
            t.rule(fw_chain, "ip saddr != { 203.0.113.0/24, 192.0.2.0/24 } drop")
        if local_policy:
            # no local-policy chain of its own here: every endpoint is taken as local
            t.rule(ext_chain, f'ip saddr {_CLUSTER_CIDR} goto {svc_chain} comment "short-circuit pod traffic"')
            t.rule(ext_chain, 'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"')
            t.rule(ext_chain, f'fib saddr type local goto {svc_chain} comment "short-circuit local traffic"')
        else:
            t.rule(ext_chain, "jump mark-for-masquerade")
        t.rule(ext_chain, f"goto {svc_chain}")
    return _render_kube(t)


def _render_kube(t: _KubeTable) -> str:
    out = [
        "#!/usr/sbin/nft -f",
        "# lbfw benchmark: kube-proxy nftables mode (pkg/proxy/nftables/proxier.go) and the node's filter",
        "",
        "table ip kube-proxy {",
        '\tcomment "rules for kube-proxy"',
    ]
    for name, typ, comment in (
        (
            "no-endpoint-services",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "vmap to drop or reject packets to services with no endpoints",
        ),
        (
            "no-endpoint-nodeports",
            "inet_proto . inet_service : verdict",
            "vmap to drop or reject packets to service nodeports with no endpoints",
        ),
        (
            "firewall-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "destinations that are subject to LoadBalancerSourceRanges",
        ),
        (
            "service-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        ),
        ("service-nodeports", "inet_proto . inet_service : verdict", "NodePort traffic"),
    ):
        out += ["", f"\tmap {name} {{", f"\t\ttype {typ}", f'\t\tcomment "{comment}"']
        elems = t.elements[name]
        if elems:
            out.append("\t\telements = {")
            out += [f"\t\t\t{e}," for e in elems[:-1]] + [f"\t\t\t{elems[-1]}", "\t\t}"]
        out.append("\t}")
    for name, timeout in t.affinity:
        out += [
            "",
            f"\tset {name} {{",
            "\t\ttype ipv4_addr",
            "\t\tflags dynamic,timeout",
            f"\t\ttimeout {timeout}s",
            "\t}",
        ]
    for name, typ, hook, prio in (
        # kube-proxy asks for `dstnat - 10` / `dstnat`; nft 1.0.6 takes the name on prerouting
        # only ("invalid priority expression value in this context"), so the numbers (-100 - 10)
        ("filter-prerouting", "filter", "prerouting", "-110"),
        ("filter-input", "filter", "input", "-110"),
        ("filter-forward", "filter", "forward", "-110"),
        ("filter-output", "filter", "output", "-110"),
        ("nat-prerouting", "nat", "prerouting", "dstnat"),
        ("nat-output", "nat", "output", "-100"),
        ("nat-postrouting", "nat", "postrouting", "srcnat"),
    ):
        out += ["", f"\tchain {name} {{", f"\t\ttype {typ} hook {hook} priority {prio}; policy accept;"]
        jumps = {
            "filter-prerouting": ["ct state new jump firewall-check"],
            "filter-input": ["ct state new jump endpoints-check"],
            "filter-forward": ["ct state new jump endpoints-check"],
            "filter-output": ["ct state new jump endpoints-check", "ct state new jump firewall-check"],
            "nat-prerouting": ["jump services"],
            "nat-output": ["jump services"],
            "nat-postrouting": ["jump masquerading"],
        }[name]
        out += [f"\t\t{j}" for j in jumps] + ["\t}"]
    for name, rules in t.chains.items():
        out += ["", f"\tchain {name} {{"] + [f"\t\t{r}" for r in rules] + ["\t}"]
    out += [
        "}",
        "",
        "table inet host {",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tip saddr 127.0.0.1 accept",
        "\t\tip saddr 10.244.0.0/16 accept",
        "\t\ttcp dport { 22, 10250 } accept",
        "\t\tmeta l4proto icmp accept",
        "\t}",
        "}",
    ]
    return "\n".join(out) + "\n"


def _addresses(rng: random.Random, count: int) -> list[int]:
    picked: set = set()
    while len(picked) < count:
        # plain unicast "bad actors": outside 0/8, 10/8, 127/8 and multicast
        low = rng.random() < 0.5
        picked.add(rng.randrange(0x0B000000, 0x7F000000) if low else rng.randrange(0x80000000, 0xDF000000))
    return sorted(picked)


def nft_ban_sets(elements: int, seed: int = DEFAULT_SEED) -> str:
    """A host firewall with a crowdsec/fail2ban style ban list (module docstring): ``elements``
    IPv4 addresses in ``crowdsec-blacklists``, a tenth as many IPv6 ones, a few ban networks."""
    rng = random.Random(seed)
    v4 = [_ip(a) for a in _addresses(rng, elements)]
    v6 = [
        f"2001:db8:{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}:{k >> 16:x}::{k & 0xFFFF:x}"
        for k in range(elements // 10)
    ]
    out = [
        "#!/usr/sbin/nft -f",
        f"# lbfw benchmark: a {elements:,}-element ban list (crowdsec / fail2ban style)",
        "",
        "table inet filter {",
    ]
    for name, typ, addrs in (("crowdsec-blacklists", "ipv4_addr", v4), ("crowdsec6-blacklists", "ipv6_addr", v6)):
        out += [f"\tset {name} {{", f"\t\ttype {typ}", "\t\tflags timeout", "\t\telements = {"]
        for i in range(0, len(addrs), 8):
            tail = "," if i + 8 < len(addrs) else ""
            out.append("\t\t\t" + ", ".join(f"{a} timeout 4h" for a in addrs[i : i + 8]) + tail)
        out += ["\t\t}", "\t}", ""]
    out += [
        "\tset f2b-sshd {",
        "\t\ttype ipv4_addr",
        "\t\tflags interval",
        "\t\telements = { 45.146.164.0/22, 80.94.92.0/24, 185.220.100.0/22, 193.32.162.0/24 }",
        "\t}",
        "",
        "\tchain crowdsec-raw {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
        "\t\tip saddr @crowdsec-blacklists drop",
        "\t\tip6 saddr @crowdsec6-blacklists drop",
        "\t}",
        "",
        "\tchain f2b {",
        "\t\tip saddr @f2b-sshd reject",
        "\t\treturn",
        "\t}",
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        "\t\tip saddr 127.0.0.1 accept",
        "\t\tip6 saddr ::1 accept",
        "\t\tip saddr @crowdsec-blacklists counter drop",
        "\t\ttcp dport 22 jump f2b",
        "\t\ttcp dport { 22, 80, 443 } accept",
        "\t\tmeta l4proto { icmp, ipv6-icmp } accept",
        "\t}",
        "",
        "\tchain output {",
        "\t\ttype filter hook output priority filter; policy accept;",
        "\t\tip daddr @crowdsec-blacklists reject",
        "\t}",
        "}",
    ]
    return "\n".join(out) + "\n"


def nft_rule_count(text: str) -> int:
    """Rules in generated nft text: the lines inside chain blocks that are not the chain's
    ``type ... hook`` line (what ``nft list`` prints as rules)."""
    count, in_chain = 0, False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("chain ") and s.endswith("{"):
            in_chain = True
        elif s == "}":
            in_chain = False
        elif in_chain and s and not s.startswith("type "):
            count += 1
    return count

"""Legacy iptables tables through python-iptables (``iptc``), the optional ``--reader iptc``.

python-iptables sees legacy (ip_tables) tables only, never iptables-nft's, and it is
slow (DOMAIN.md: 1.31 s for 5,000 rules against 0.02 s for iptables-legacy-save), so
it is never the default. To give the same model as the text path by construction,
it writes iptables-save lines (exactly as iptables 1.8.9's ``print_rule4``/
``print_rule6`` do: addresses, interfaces, protocol, fragment, each match's own
``save`` output, then the target's) and those go through the same
``iptables.parse``.

Only tables the kernel already lists (/proc/net/ip_tables_names) may be opened:
libiptc would otherwise load the table module and create an empty table.
"""

from __future__ import annotations

import socket
from typing import Optional

from ..errors import InputError, MissingDependencyError

__all__ = ["save_text", "load_iptc"]

_PROTO_NAMES_FALLBACK = {
    1: "icmp",
    6: "tcp",
    17: "udp",
    58: "ipv6-icmp",
    132: "sctp",
    136: "udplite",
    50: "esp",
    51: "ah",
    135: "mh",
    33: "dccp",
    47: "gre",
}
_proto_names: Optional[dict] = None


def load_iptc():
    """Import python-iptables, or say how to install it."""
    try:
        import iptc  # noqa: F401  (optional extra, imported only for --reader iptc)
    except ImportError as err:
        raise MissingDependencyError(
            f"python-iptables is not installed ({err})",
            hint="install it: pip install 'lbfw[iptc]'  (or use the default reader: --reader auto)",
        ) from None
    except Exception as err:  # the binding fails to load its C libraries (e.g. #353 with 1.8.11)
        raise MissingDependencyError(
            f"python-iptables cannot load libiptc/libxtables here: {err}", hint="use the default reader: --reader auto"
        ) from None
    return iptc


def _proto_name(num: int) -> str:
    """getprotobynumber(), as iptables-save uses it: /etc/protocols, then iptables' own table."""
    global _proto_names
    if _proto_names is None:
        names: dict[int, str] = {}
        try:
            with open("/etc/protocols", encoding="utf-8", errors="replace") as f:
                for line in f:
                    parts = line.split("#", 1)[0].split()
                    if len(parts) >= 2 and parts[1].isdigit():
                        names.setdefault(int(parts[1]), parts[0])
        except OSError:
            pass
        _proto_names = names
    return _proto_names.get(num) or _PROTO_NAMES_FALLBACK.get(num) or str(num)


def _mask_text4(addr: bytes, mask: bytes) -> str:
    m = int.from_bytes(mask, "big")
    bits = bin(m).count("1")
    if m == ((1 << 32) - 1) ^ ((1 << (32 - bits)) - 1):
        return f"{socket.inet_ntop(socket.AF_INET, addr)}/{bits}"
    return f"{socket.inet_ntop(socket.AF_INET, addr)}/{socket.inet_ntop(socket.AF_INET, mask)}"


def _mask_text6(addr: bytes, mask: bytes) -> str:
    m = int.from_bytes(mask, "big")
    bits = bin(m).count("1")
    if m == ((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1):
        return f"{socket.inet_ntop(socket.AF_INET6, addr)}/{bits}"
    return f"{socket.inet_ntop(socket.AF_INET6, addr)}/{socket.inet_ntop(socket.AF_INET6, mask)}"


def _iface(letter: str, name: bytes, mask: bytes, invert: bool) -> str:
    """iptables' print_iface: the name, and "+" when the mask stops before the NUL."""
    mask = bytes(mask)
    name = bytes(name)
    if not mask or mask[0] == 0:
        return ""
    out = []
    plus = False
    for i in range(16):
        if mask[i] != 0:
            if name[i] != 0:
                out.append(chr(name[i]))
        else:
            if i > 0 and name[i - 1] != 0:
                plus = True
            break
    return f"{' !' if invert else ''} -{letter} {''.join(out)}{'+' if plus else ''}"


# ipt_ip / ip6t_ip6 invflags (the same bits in both) and IPT_F_FRAG.
_INV_VIA_IN, _INV_VIA_OUT, _INV_SRCIP, _INV_DSTIP, _INV_FRAG, _INV_PROTO = 0x01, 0x02, 0x08, 0x10, 0x20, 0x40
_F_FRAG = 0x01


def _field_bytes(struct, name: str) -> bytes:
    """The raw bytes of a ctypes struct field (c_char arrays would stop at the first NUL)."""
    import ctypes

    desc = getattr(type(struct), name)
    return ctypes.string_at(ctypes.addressof(struct) + desc.offset, desc.size)


def _clean(buf) -> str:
    """A match's or target's save() output; the binding's C wrapper ends it with newlines."""
    return (buf or b"").decode(errors="replace").replace("\n", "").rstrip()


def _rule_line(chain: str, rule, family: str) -> str:
    """One rule as iptables-save prints it (iptables 1.8.9, print_rule4 / print_rule6)."""
    ip = rule.entry.ip if family == "ip" else rule.entry.ipv6
    inv = ip.invflags
    fmt = _mask_text4 if family == "ip" else _mask_text6
    parts = [f"-A {chain}"]
    for flag, a_name, m_name, letter in ((_INV_SRCIP, "src", "smsk", "-s"), (_INV_DSTIP, "dst", "dmsk", "-d")):
        addr, mask = _field_bytes(ip, a_name), _field_bytes(ip, m_name)
        invert = bool(inv & flag)
        if any(addr) or any(mask) or invert:
            parts.append(f"{' !' if invert else ''} {letter} {fmt(addr, mask)}")
    parts.append(_iface("i", _field_bytes(ip, "iniface"), _field_bytes(ip, "iniface_mask"), bool(inv & _INV_VIA_IN)))
    parts.append(_iface("o", _field_bytes(ip, "outiface"), _field_bytes(ip, "outiface_mask"), bool(inv & _INV_VIA_OUT)))
    if ip.proto:
        parts.append(f"{' !' if inv & _INV_PROTO else ''} -p {_proto_name(ip.proto)}")
    if family == "ip" and ip.flags & _F_FRAG:
        parts.append(f"{' !' if inv & _INV_FRAG else ''} -f")
    ipp = rule.get_ip()
    for match in rule.matches:
        buf = match._get_saved_buf(ipp)
        parts.append(f" -m {match.name}{_clean(buf)}")
    target = rule.target
    if target is not None:
        name = target.name
        if name and not target._is_standard_target():
            buf = target._get_saved_buf(ipp)
            parts.append(f" -j {name}{_clean(buf)}")
        elif name:
            parts.append(f" -{'g' if target.goto else 'j'} {name}")
    return "".join(parts)


def save_text(family: str = "ip", tables: Optional[list] = None) -> str:
    """The legacy ``tables`` of ``family`` ("ip" or "ip6") as iptables-save text.

    ``tables`` default: those the kernel lists in /proc/net/ip(6)_tables_names."""
    names_file = "/proc/net/ip_tables_names" if family == "ip" else "/proc/net/ip6_tables_names"
    if tables is None:
        try:
            with open(names_file, encoding="ascii") as f:
                tables = [n.strip() for n in f if n.strip()]
        except OSError:
            return ""
    if not tables:
        return ""
    iptc = load_iptc()
    # autocommit off: this reader never writes, and nothing is ever committed
    make = (
        (lambda name: iptc.Table(name, autocommit=False))
        if family == "ip"
        else (lambda name: iptc.Table6(name, autocommit=False))
    )
    out = [f"# Generated by lbfw from python-iptables ({family})"]
    for name in tables:
        try:
            table = make(name)
            table.refresh()
            chains = table.chains
        except Exception as err:  # libiptc reports through its own exception types
            raise InputError(
                f"python-iptables cannot read the legacy {family} table {name}: {err}", path="live:legacy"
            ) from None
        out.append(f"*{name}")
        for chain in chains:
            if chain.is_builtin():
                policy = chain.get_policy()
                pkts, byts = chain.get_counters()
                out.append(f":{chain.name} {policy.name} [{pkts}:{byts}]")
            else:
                out.append(f":{chain.name} - [0:0]")
        for chain in chains:
            for rule in chain.rules:
                out.append(_rule_line(chain.name, rule, family))
        out.append("COMMIT")
    return "\n".join(out) + "\n"

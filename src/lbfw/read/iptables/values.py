"""Value parsers: numbers, addresses, ports, marks and TCP flags as iptables reads them, and the
quote-aware splitter. Pure functions; a value iptables-restore would reject raises ``_Bad``
(or ValueError for the parser to word)."""

from __future__ import annotations

import ipaddress
import re
import socket
from socket import AF_INET as _AF_INET
from socket import inet_pton as _pton
from typing import Optional

from .options import TCP_FLAGS

_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.S)
_UNESCAPE = re.compile(r"\\(.)", re.S)
_HEX = frozenset("0123456789abcdefABCDEF")
_ALL4 = (1 << 32) - 1
_ALL6 = (1 << 128) - 1
_from_bytes = int.from_bytes
_CACHE_LIMIT = 200_000  # entries per cache: enough for any real dump, bounded for odd ones
_HOSTNAME_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


class _Bad(Exception):
    """A value iptables-restore would reject; turned into InputError with path and line."""

    def __init__(self, message: str, hint: Optional[str] = None):
        super().__init__(message)
        self.hint = hint


def split_quoted(line: str) -> list:
    """Split a line the way iptables-restore does: whitespace separates, `"..."` groups (a
    quote may open inside a word: `ab"c d"` is `abc d`; the closing quote ends the word), and
    inside quotes a backslash escapes the next character. Raises _Bad on an open quote."""
    out = []
    pos = 0
    while True:
        q = line.find('"', pos)
        if q < 0:
            out.extend(line[pos:].split())
            return out
        segment = line[pos:q]
        words = segment.split()
        prefix = words.pop() if words and not segment[-1].isspace() else ""
        out.extend(words)
        quoted = _QUOTED.match(line, q)
        if quoted is None:
            raise _Bad("unterminated quote")
        body = quoted.group(1)
        if "\\" in body:
            body = _UNESCAPE.sub(r"\1", body)
        out.append(prefix + body)
        pos = quoted.end()


def _quote(tok: str) -> str:
    if tok and " " not in tok and "\t" not in tok and '"' not in tok and "\\" not in tok:
        return tok
    return '"' + tok.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _strtoui(text: str, limit: int) -> int:
    """An unsigned number as xtables reads it (strtoul, base 0): `0x1f` is hex, `010` is
    octal 8 (and `08` is no number at all), `10` is decimal. ValueError past ``limit``."""
    if text[:2] in ("0x", "0X"):
        value = int(text[2:], 16) if text[2:] and all(c in _HEX for c in text[2:]) else -1
    elif text[:1] == "0" and len(text) > 1:
        value = int(text[1:], 8) if all(c in "01234567" for c in text[1:]) else -1
    else:
        value = int(text) if text.isdigit() and text.isascii() else -1
    if not 0 <= value <= limit:
        raise ValueError(text)
    return value


def _ip4(text: str, mask: bool = False) -> int:
    """An IPv4 address as iptables reads it (xtables' numeric parser): up to four parts,
    each decimal, hex or octal, missing ones filled with zeros from the right (`10` is
    10.0.0.0, `127.1` is 127.1.0.0, not inet_aton's 127.0.0.1). A mask needs all four."""
    try:
        # inet_pton takes exactly four decimal parts without leading zeros: read alike
        return _from_bytes(_pton(_AF_INET, text), "big")
    except (OSError, ValueError):
        pass
    parts = text.split(".")
    if len(parts) > 4 or (mask and len(parts) != 4):
        raise ValueError(text)
    value = 0
    for part in parts:
        value = (value << 8) | _strtoui(part, 255)
    return value << (8 * (4 - len(parts)))


def _ip4_or_resolved(text: str) -> int:
    """_ip4, then what iptables falls back to for a name: getaddrinfo, which reads numeric
    spellings the way inet_aton does (`127.256` is 127.0.1.0). Names stay unresolved."""
    try:
        return _ip4(text)
    except ValueError:
        pass
    if text and text[0].isdigit() and not text.endswith("."):
        try:
            return _from_bytes(socket.inet_aton(text), "big")
        except OSError:
            pass
    raise ValueError(text)


def _ip6(text: str) -> int:
    """An IPv6 address as ip6tables reads it (inet_pton; a `%scope` is dropped, as ip6tables
    does: `fe80::1%lo` is saved as fe80::1/128)."""
    return int(ipaddress.IPv6Address(text.partition("%")[0]))


def _net(text: str, family: str) -> Optional[tuple]:
    """One address or network as iptables reads it -> (lo, hi), or None when the mask is not
    contiguous (the kernel compares addr & mask, which no single range expresses).
    Raises ValueError when it is not an address of ``family``."""
    v6 = family == "ip6"
    bits = 128 if v6 else 32
    full = _ALL6 if v6 else _ALL4
    addr_text, slash, mask_text = text.rpartition("/")
    if not slash:
        addr_text, mask_text = mask_text, ""
    addr = _ip6(addr_text) if v6 else _ip4_or_resolved(addr_text)
    if not slash:
        return (addr, addr)
    if (":" if v6 else ".") not in mask_text:
        plen = _strtoui(mask_text, bits)
        mask = (full << (bits - plen)) & full
    else:
        mask = _ip6(mask_text) if v6 else _ip4(mask_text, mask=True)
        inverted = ~mask & full
        if inverted & (inverted + 1):  # not of the form 1...10...0
            return None
    lo = addr & mask
    return (lo, lo | (~mask & full))


def _port(text: str, proto: Optional[str]) -> int:
    """A port as iptables 1.8 reads it, which depends on the match (each seen in a namespace):

    - tcp, sctp, multiport (``proto`` "tcp", "sctp" ...): a number in base 0 (`022` is 18,
      `0x16` is 22) or a service of that protocol (`-p udp -m multiport --dports ssh` fails);
    - udp's `--sport`/`--dport` (``proto`` None): a decimal number (`022` is 22, `0x50` is
      refused) or a service of any protocol (`-p udp --dport ssh` is 22, ssh being tcp only).
    """
    if proto is None:
        if text.isdigit() and text.isascii():
            value = int(text)
            if value > 65535:
                raise ValueError(text)
            return value
    elif text[:1].isdigit():
        return _strtoui(text, 65535)
    try:
        return socket.getservbyname(text) if proto is None else socket.getservbyname(text, proto)
    except OSError:
        raise ValueError(text) from None


def _port_range(text: str, proto: Optional[str]) -> tuple:
    """`a`, `a:b`, `:b`, `a:` -> (lo, hi); see _port for ``proto``."""
    lo_text, colon, hi_text = text.partition(":")
    if not colon:
        value = _port(text, proto)
        return (value, value)
    lo = _port(lo_text, proto) if lo_text else 0
    hi = _port(hi_text, proto) if hi_text else 65535
    if lo > hi:
        raise ValueError(f"{text} (min > max)")
    return (lo, hi)


def _int(text: str) -> int:
    """A 32-bit value (marks) in base 0, as xtables' strtoul reads it (`010` is 8)."""
    return _strtoui(text, 0xFFFFFFFF)


def _value_mask(text: str, full: int = 0xFFFFFFFF) -> tuple:
    value_text, slash, mask_text = text.partition("/")
    return _int(value_text), (_int(mask_text) if slash else full)


def _tcp_flags(text: str) -> int:
    value = 0
    for name in text.upper().split(","):
        if name not in TCP_FLAGS:
            raise ValueError(name)
        value |= TCP_FLAGS[name]
    return value

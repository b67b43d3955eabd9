"""One module per firewall backend behind one interface (base.Backend): see base.py."""

from __future__ import annotations

from .base import IPTABLES_NFT, LEGACY, NFTABLES, TOOLS, Backend, Change, RuleMoved, TableRef, comparable
from .iptables_nft import IptablesNft
from .legacy import Legacy
from .nftables import Nftables

BACKENDS: dict[str, Backend] = {LEGACY: Legacy(), IPTABLES_NFT: IptablesNft(), NFTABLES: Nftables()}


def backend_of(ref: TableRef) -> Backend:
    """The Backend that owns ``ref``'s table."""
    return BACKENDS[ref.backend]


__all__ = [
    "BACKENDS",
    "IPTABLES_NFT",
    "LEGACY",
    "NFTABLES",
    "TOOLS",
    "Backend",
    "Change",
    "RuleMoved",
    "TableRef",
    "backend_of",
    "comparable",
]

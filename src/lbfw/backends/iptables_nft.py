"""iptables-nft: iptables rules kept in nf_tables, written with iptables-nft-restore.

The xtables lock means nothing here (iptables-nft never takes it), so nothing holds the dump and
the transaction together: the transaction itself checks the rule by content (`-D` by
specification) and the dump after it checks the place (see iptables.py); a rule that ended up
elsewhere is undone. The rule lbfw changes gets a new nft handle (iptables has no handles:
iptables-nft-save shows none); every other rule keeps its own.
"""

from __future__ import annotations

from .base import IPTABLES_NFT
from .iptables import IptablesBackend


class IptablesNft(IptablesBackend):
    name = IPTABLES_NFT
    sandbox_backend = "nft"

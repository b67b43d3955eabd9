"""NixOS: /etc/nixos/*.nix, where networking.firewall's extra rules name 127.0.0.1 alone.

The nixos-fw chains (or `table inet nixos-fw`) are generated from configuration.nix at every
`nixos-rebuild switch`; the firewall module already accepts everything on lo
(`-A nixos-fw -i lo -j nixos-fw-accept`, nft `iifname "lo" accept`). What a host adds by hand
lives in `networking.firewall.extraCommands` (iptables lines) or `extraInputRules` (nft), so a
narrow address there is changed in the .nix file. Pure: texts in, settings out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..model import ManagerSetting
from .addresses import located, narrow_in, numbered, widen

OWNER = "nixos"
FILES = ("/etc/nixos/*.nix",)
APPLY = "`nixos-rebuild switch`"

# a line of a firewall rule: iptables options or nft address matches
_RULE = re.compile(r"(?:ip6?tables|ip46tables|\s-[sd]\s|--source|--destination|\bsaddr\b|\bdaddr\b)")


def settings(files: Mapping[str, str]) -> tuple[ManagerSetting, ...]:
    """The narrow loopback addresses of firewall rule lines in the .nix files (comments skipped)."""
    found: list[ManagerSetting] = []
    for path in sorted(files):
        for number, line in numbered(files[path]):
            code = line.split("#", 1)[0]
            if not _RULE.search(code):
                continue
            for address in narrow_in(code):
                change = (
                    f"{widen(address)}, or drop the rule: nixos-fw already accepts all of lo "
                    '(or add "lo" to networking.firewall.trustedInterfaces)'
                )
                found.append(located(path, number, line, address, change))
    return tuple(found)

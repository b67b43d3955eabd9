"""What the kernel checks when it commits a ruleset, for tables lbfw's own reader built.

Pure. nf_tables validates every chain against the base chains that reach it (through jump,
goto and verdict maps): NAT statements only in nat chains and on their hooks (nft_nat_validate:
dnat and redirect on prerouting and output, snat on postrouting and input, masquerade on
postrouting), reject on prerouting, input, forward and output, no jump loop and no more than 16
chains on a path (its jump stack); measured on kernel 6.18 (notrack loads on any hook). A ruleset
that breaks one of these fails to load ("Operation not supported", "Too many links"), so lbfw's
reader must not read it as a model: it raises ``Unsupported`` and libnftables reads the file,
with nft's own message.
"""

from __future__ import annotations

from .textvalues import Unsupported

__all__ = ["check_tables", "RESTRICTED"]

_ALLOWED_HOOKS = {
    "dnat": frozenset(("prerouting", "output")),
    "redirect": frozenset(("prerouting", "output")),
    "snat": frozenset(("postrouting", "input")),
    "masquerade": frozenset(("postrouting",)),
    "reject": frozenset(("prerouting", "input", "forward", "output")),  # 6.18: prerouting loads
}
RESTRICTED = frozenset(_ALLOWED_HOOKS)  # the statements whose hooks the kernel restricts
_NAT = frozenset(("dnat", "redirect", "snat", "masquerade"))
_NAT_HOOKS = frozenset(("prerouting", "input", "output", "postrouting"))
_JUMP_STACK = 16


def check_tables(tables: list, uses: dict) -> None:
    """Raise Unsupported when the kernel would refuse one of ``tables`` (see the module).

    ``uses[(family, table, chain)]`` is (chains its rules jump or go to, the statement kinds of
    its rules), verdict maps' targets included."""
    for table in tables:
        key = (table.family, table.name)
        edges = {name: uses.get(key + (name,), ((), ()))[0] for name in table.chains}
        kinds = {name: uses.get(key + (name,), ((), ()))[1] for name in table.chains}
        for name, chain in table.chains.items():
            if not chain.is_base:
                continue
            if chain.type == "nat" and chain.hook not in _NAT_HOOKS:
                raise Unsupported(f"a nat chain on {chain.hook}")
            _walk(name, chain.hook, chain.type, edges, kinds, [], {})


def _walk(name: str, hook: str, chain_type: str, edges: dict, kinds: dict, stack: list, heights: dict) -> int:
    """The height of ``name``'s jump tree below it (each chain walked once per base chain)."""
    if name in heights:
        height: int = heights[name]
    else:
        if name in stack:
            raise Unsupported("a jump loop")
        for kind in kinds.get(name, ()):
            if hook not in _ALLOWED_HOOKS[kind] or (kind in _NAT and chain_type != "nat"):
                raise Unsupported(f"{kind} reached from a {chain_type} chain on {hook}")
        stack.append(name)
        height = 1 + max(
            (_walk(t, hook, chain_type, edges, kinds, stack, heights) for t in dict.fromkeys(edges.get(name, ()))),
            default=0,
        )
        stack.pop()
        heights[name] = height
    if len(stack) + height > _JUMP_STACK:  # measured: 16 chains on a path load, 17 do not
        raise Unsupported("jumps deeper than the kernel's jump stack")
    return height

"""nft JSON expressions and statements -> readable nft text.

The texts of opaque matches, unknown actions and of rules read without their source text
(live tables, nft JSON files) come from here: the rule as nft would roughly print it.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["render_expr", "render_stmt", "render_rule", "VERDICTS"]

VERDICTS = frozenset(("accept", "drop", "continue", "return", "jump", "goto"))
_IFACE_KEYS = frozenset(("iif", "iifname", "oif", "oifname"))


def render_expr(e: Any) -> str:
    """A readable nft spelling of a JSON expression (for texts of opaque matches and rules)."""
    if e is None:
        return ""
    if isinstance(e, bool):
        return "true" if e else "false"
    if isinstance(e, (int, float)):
        return str(e)
    if isinstance(e, str):
        return e
    if isinstance(e, list):
        return ",".join(render_expr(x) for x in e)
    if not isinstance(e, dict) or not e:
        return str(e)
    key, val = next(iter(e.items()))
    if key == "payload":
        if "protocol" in val:
            return f"{val['protocol']} {val.get('field', '')}".strip()
        return f"@{val.get('base', '?')},{val.get('offset', '?')},{val.get('len', '?')}"
    if key == "meta":
        k = val.get("key")
        return k if k in _IFACE_KEYS else f"meta {k}"
    if key == "ct":
        parts = ["ct"]
        if val.get("dir"):
            parts.append(val["dir"])
        if val.get("family"):
            parts.append(val["family"])
        parts.append(val.get("key", "?"))
        return " ".join(parts)
    if key == "fib":
        return f"fib {' . '.join(val.get('flags', []))} {val.get('result', '')}".strip()
    if key == "prefix":
        return f"{render_expr(val['addr'])}/{val['len']}"
    if key == "range":
        return f"{render_expr(val[0])}-{render_expr(val[1])}"
    if key == "set":
        items = val if isinstance(val, list) else [val]
        return "{ " + ", ".join(_render_elem(x) for x in items) + " }"
    if key == "concat":
        return " . ".join(render_expr(x) for x in val)
    if key == "elem":
        return render_expr(val.get("val"))
    if key in ("&", "|", "^", "<<", ">>"):
        return f" {key} ".join(render_expr(x) for x in val)
    if key in ("map", "vmap") and isinstance(val, dict) and "key" in val:
        word = "map" if key == "map" else "vmap"
        return f"{render_expr(val['key'])} {word} {render_expr(val['data'])}"
    if key in ("exthdr", "tcp option", "sctp chunk"):
        return f"{key} {val.get('name', '')} {val.get('field', '')}".strip()
    if key == "symhash" or key == "jhash" or key == "numgen":
        return key
    if key in VERDICTS:
        return f"{key} {val['target']}" if isinstance(val, dict) and "target" in val else key
    return f"{key} {render_expr(val) if not isinstance(val, dict) else _render_dict(val)}".strip()


def _render_dict(d: dict) -> str:
    return " ".join(f"{k} {render_expr(v)}" for k, v in d.items())


def _render_elem(x: Any) -> str:
    if isinstance(x, list) and len(x) == 2:
        return f"{render_expr(x[0])} : {render_expr(x[1])}"
    return render_expr(x)


_OPS_TEXT = {"==": "", "in": ""}


def render_stmt(s: dict) -> str:
    """One JSON statement (a match, a verdict, a NAT or other statement) as nft text."""
    key, val = next(iter(s.items()))
    if key == "match":
        op = val.get("op", "==")
        raw_left, raw_right = val.get("left"), val.get("right")
        op_text = _OPS_TEXT.get(op, op)
        if op == "==" and isinstance(raw_left, dict) and next(iter(raw_left), None) in ("&", "|", "^"):
            op_text = "=="
        left, right = render_expr(raw_left), render_expr(raw_right)
        if (
            isinstance(raw_left, dict)
            and raw_left.get("meta", {}).get("key") in _IFACE_KEYS
            and isinstance(raw_right, str)
            and not raw_right.startswith("@")
        ):
            right = f'"{right}"'
        return f"{left} {op_text} {right}".replace("  ", " ")
    if key == "quota" and isinstance(val, dict):
        return f"quota {val.get('val')} {val.get('val_unit', 'bytes')}"
    if key in VERDICTS:
        return render_expr(s)
    if key == "counter":
        return "counter"
    if key == "log":
        return "log" + (f' prefix "{val["prefix"]}"' if isinstance(val, dict) and "prefix" in val else "")
    if key == "limit" and isinstance(val, dict):
        return f"limit rate {val.get('rate')}/{val.get('per', 'second')}"
    if key == "mangle":
        return f"{render_expr(val.get('key'))} set {render_expr(val.get('value'))}"
    if key == "vmap":
        return f"{render_expr(val.get('key'))} vmap {render_expr(val.get('data'))}"
    if key in ("dnat", "snat"):
        if not isinstance(val, dict):
            return key
        to = render_expr(val.get("addr", ""))
        if "port" in val:
            to += f":{render_expr(val['port'])}"
        fam = f" {val['family']}" if val.get("family") else ""
        return f"{key}{fam} to {to}"
    if key in ("redirect", "masquerade"):
        if isinstance(val, dict) and "port" in val:
            return f"{key} to :{render_expr(val['port'])}"
        return key
    if key == "reject":
        if isinstance(val, dict) and val.get("type"):
            return f"reject with {val['type']}" + (f" {val['expr']}" if val.get("expr") else "")
        return "reject"
    if key == "xt":
        return f"xt {val.get('type', '')} {val.get('name', '')}".strip() if isinstance(val, dict) else "xt"
    if val is None:
        return key
    return f"{key} {render_expr(val) if not isinstance(val, dict) else _render_dict(val)}"


def render_rule(exprs: list, comment: Optional[str] = None) -> str:
    """The rule as nft would roughly print it (used when no source text is at hand)."""
    text = " ".join(render_stmt(s) for s in exprs if isinstance(s, dict) and s)
    if comment:
        text += f' comment "{comment}"'
    return text

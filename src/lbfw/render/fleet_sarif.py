"""`lbfw report --format sarif`: SARIF 2.1.0 with one run per host (`automationDetails.id` lbfw/HOST).

Each result carries the same `partialFingerprints` as `lbfw audit --format sarif` on that host, so
alerts uploaded from single hosts and from the fleet report are the same alerts. A host that was
not audited is a run with no results whose invocation failed, with the reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from .. import __version__ as _version
from ..fleet.merge import NOT_AUDITED
from .sarif import SARIF_SCHEMA, SARIF_VERSION, rule_descriptor

_LEVEL: dict[Any, str] = {"error": "error", "warning": "warning", "note": "note"}


def fingerprint(f: dict) -> str:
    """render.sarif's fingerprint, from a FINDING object instead of a Finding."""
    rule = f.get("rule") if f.get("rule") is not None else f"{f.get('table')} {f.get('chain')} policy"
    key = "\0".join(
        str(x) for x in (f.get("check"), f.get("source"), f.get("family"), f.get("table"), f.get("chain"), rule)
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _is_file(source) -> bool:
    return bool(source) and source != "-" and not str(source).startswith("live:")


def _uri(source: str) -> str:
    path = Path(source)
    return path.as_uri() if path.is_absolute() else PurePosixPath(*path.parts).as_posix()


def _result(host: str, f: dict, index: dict) -> dict:
    check = str(f.get("check"))
    data: dict[str, Any] = {
        "ruleId": check,
        "level": _LEVEL.get(f.get("severity"), "warning"),
        "message": {"text": str(f.get("message") or "")},
        "partialFingerprints": {"lbfwFinding/v1": fingerprint(f)},
    }
    if check in index:
        data["ruleIndex"] = index[check]
    parts = (f.get("source"), f.get("family"), f.get("table"), f.get("chain"))
    qualified = "/".join(str(x) for x in parts if x)
    if f.get("handle") is not None:
        qualified += f"/handle/{f['handle']}"
    elif f.get("index") is not None:
        qualified += f"/{f['index']}"
    name = " ".join(str(x) for x in parts[1:] if x) or str(f.get("source") or "host")
    logical = {"name": name, "fullyQualifiedName": f"{host}:{qualified or 'host'}", "kind": "object"}
    if _is_file(f.get("source")):
        physical = {"artifactLocation": {"uri": _uri(str(f["source"]))}, "region": {"startLine": f.get("line") or 1}}
        data["locations"] = [{"physicalLocation": physical, "logicalLocations": [logical]}]
    else:
        data["locations"] = [{"logicalLocations": [logical]}]
    props = {"host": host}
    for key in ("rule", "owner", "backend"):
        if f.get(key):
            props[key] = f[key]
    if f.get("flows"):
        props["flows"] = f["flows"]
    data["properties"] = props
    return data


def _run(h, rules: list, index: dict) -> dict:
    run = {
        "tool": {
            "driver": {
                "name": "lbfw",
                "version": h.lbfw_version or _version,
                "semanticVersion": h.lbfw_version or _version,
                "rules": rules,
            }
        },
        "automationDetails": {"id": f"lbfw/{h.host}"},
        "results": [_result(h.host, f, index) for f in h.findings],
        "columnKind": "utf16CodeUnits",
        "properties": {"host": h.host, "status": h.status, "backends": h.backends, "rules": h.rules},
    }
    notes = [
        {
            "level": _LEVEL.get(i.get("severity"), "note"),
            "message": {"text": f"doctor {i['id']} {i.get('name') or ''}: {i.get('message') or ''}"},
        }
        for i in h.doctor
        if i.get("severity") in _LEVEL
    ]
    if h.status == NOT_AUDITED:
        notes.insert(0, {"level": "error", "message": {"text": f"not audited: {h.reason}"}})
    run["invocations"] = [{"executionSuccessful": h.status != NOT_AUDITED, "toolExecutionNotifications": notes}]
    return run


def sarif_document(fleet, checks=None) -> dict:
    if checks is None:
        from ..checks import ALL as checks
    rules = [rule_descriptor(c) for c in checks]
    index = {c.ID: i for i, c in enumerate(checks)}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [_run(h, rules, index) for h in fleet.hosts]}


def render(fleet, checks=None) -> str:
    return json.dumps(sarif_document(fleet, checks), indent=2) + "\n"

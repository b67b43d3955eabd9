"""`lbfw report --format json`: the fleet report as a stable document (keys in docs/fleet.md)."""

from __future__ import annotations

import json
from dataclasses import asdict

from .. import __version__ as _version
from ..fleet.load import FLEET_KIND

SCHEMA_VERSION = 1


def _host(h) -> dict:
    return {
        "host": h.host,
        "status": h.status,
        "reason": h.reason,
        "lbfw_version": h.lbfw_version,
        "backends": h.backends,
        "tables": h.tables,
        "rules": h.rules,
        "summary": h.summary,
        "checks": h.checks,
        "blocked_flows": len(h.blocked),
        "doctor": h.doctor,
        "files": h.files,
    }


def fleet_document(fleet) -> dict:
    """The JSON object `lbfw report --format json` prints (``fleet`` from lbfw.fleet.merge.merge)."""
    return {
        "version": SCHEMA_VERSION,
        "kind": FLEET_KIND,
        "tool": {"name": "lbfw", "version": _version},
        "summary": fleet.summary,
        "hosts": [_host(h) for h in fleet.hosts],
        "checks": [asdict(c) for c in fleet.checks],
        "rules": [asdict(g) for g in fleet.rules],
        "owners": [asdict(o) for o in fleet.owners],
        "blocked_flows": [asdict(g) for g in fleet.flows],
        "doctor": [asdict(g) for g in fleet.doctor],
    }


def render(fleet) -> str:
    return json.dumps(fleet_document(fleet), indent=2) + "\n"

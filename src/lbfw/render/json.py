"""`--format json`: a stable document, described key by key in docs/output.md."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Optional

from .. import __version__ as _version
from .common import counts

SCHEMA_VERSION = 1


def source_json(info) -> dict:
    data = asdict(info)
    data["warnings"] = list(data.get("warnings") or ())
    return data


def finding_json(f) -> dict:
    """Finding.to_json() plus the table's family and backend (a live "filter" table exists per family)."""
    data = f.to_json()
    data["family"] = f.family
    data["backend"] = f.backend
    return data


def flow_json(result, verified: Optional[dict] = None) -> dict:
    data = result.to_json()
    if verified is not None:
        observed = verified.get(result.flow)
        data["observed"] = observed
        data["verified"] = observed is not None and observed == result.probed()
    return data


def audit_document(findings, results=(), sources=(), verified: Optional[dict] = None) -> dict:
    return {
        "version": SCHEMA_VERSION,
        "tool": {"name": "lbfw", "version": _version},
        "summary": counts(findings),
        "findings": [finding_json(f) for f in findings],
        "flows": [flow_json(r, verified) for r in results],
        "sources": [source_json(s) for s in sources],
    }


def render_audit(findings, results=(), sources=(), verified: Optional[dict] = None) -> str:
    return json.dumps(audit_document(findings, results, sources, verified), indent=2) + "\n"


def render_flows(results, explain: bool = False) -> str:
    """`lbfw check --format json`: {"flows": [...]} in plan order; with ``explain`` each has "steps"."""
    flows = []
    for r in results:
        data = r.to_json()
        if explain:
            data["steps"] = [
                {
                    "packet": s.packet,
                    "hook": s.hook,
                    "family": s.family,
                    "table": s.table,
                    "chain": s.chain,
                    "verdict": s.verdict,
                    "rule": s.rule.text if s.rule is not None else None,
                    "where": s.origin.where() if s.origin is not None else None,
                    "note": s.note or None,
                }
                for s in r.steps
            ]
        flows.append(data)
    return json.dumps({"flows": flows}, indent=2) + "\n"

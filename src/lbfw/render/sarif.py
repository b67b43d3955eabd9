"""`--format sarif`: SARIF 2.1.0 as GitHub code scanning takes it.

tool.driver.rules come from the checks' own docs; each result points at the file and line
(physicalLocation) for files, or names table/chain/handle (logicalLocations) for the live
kernel, which has no file to point at.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from .. import __version__ as _version

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

# GitHub shows security-severity as Critical/High/Medium/Low; loopback breakage is availability.
_SECURITY = {"LB003": "5.0", "LB005": "8.1"}


def _section(doc: str, title: str) -> str:
    lines, on = [], False
    for line in doc.splitlines():
        if line.startswith("## "):
            on = line[3:].strip() == title
            continue
        if on:
            lines.append(line)
    return " ".join(x.strip() for x in lines if x.strip())


def rule_descriptor(check) -> dict:
    tags = ["firewall", "loopback"]
    props = {"tags": tags, "precision": "high"}
    if check.ID in _SECURITY:
        tags.append("security")
        props["security-severity"] = _SECURITY[check.ID]
    return {
        "id": check.ID,
        "name": check.NAME,
        "shortDescription": {"text": check.SUMMARY},
        "fullDescription": {"text": _section(check.DOC, "What it does")},
        "help": {"text": check.DOC, "markdown": check.DOC},
        "defaultConfiguration": {"level": check.SEVERITY},
        "properties": props,
    }


def _uri(source: str) -> str:
    path = Path(source)
    if path.is_absolute():
        return path.as_uri()
    return PurePosixPath(*path.parts).as_posix()


def _is_file(source) -> bool:
    return bool(source) and source != "-" and not source.startswith("live:")


def _fingerprint(f) -> str:
    rule = f.rule.text if f.rule is not None else f"{f.table} {f.chain} policy"
    key = "\0".join(str(x) for x in (f.check, f.source, f.family, f.table, f.chain, rule))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def result(f, rule_index: dict) -> dict:
    data = {
        "ruleId": f.check,
        "ruleIndex": rule_index[f.check],
        "level": f.severity,
        "message": {"text": f.message},
        "partialFingerprints": {"lbfwFinding/v1": _fingerprint(f)},
    }
    logical_name = " ".join(x for x in (f.family, f.table, f.chain) if x) or (f.source or "host")
    qualified = "/".join(str(x) for x in (f.source, f.family, f.table, f.chain) if x)
    if f.handle is not None:
        qualified += f"/handle/{f.handle}"
    elif f.index is not None:
        qualified += f"/{f.index}"
    logical = {"name": logical_name, "fullyQualifiedName": qualified or "host", "kind": "object"}
    if _is_file(f.source):
        # GitHub needs region.startLine on every result (sarif-sdk rule GH1003); a finding with no
        # line of its own (a policy whose chain line is unknown) points at the file's first line.
        physical = {"artifactLocation": {"uri": _uri(f.source)}, "region": {"startLine": f.line or 1}}
        data["locations"] = [{"physicalLocation": physical, "logicalLocations": [logical]}]
    else:
        data["locations"] = [{"logicalLocations": [logical]}]
    props = {}
    if f.rule is not None:
        props["rule"] = f.rule.text
    if f.owner:
        props["owner"] = f.owner
    if f.flows:
        props["flows"] = [fl.to_json() for fl in f.flows]
    if props:
        data["properties"] = props
    return data


def sarif_document(findings, checks=None) -> dict:
    if checks is None:
        from ..checks import ALL as checks
    rules = [rule_descriptor(c) for c in checks]
    index = {c.ID: i for i, c in enumerate(checks)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {"driver": {"name": "lbfw", "version": _version, "semanticVersion": _version, "rules": rules}},
                "results": [result(f, index) for f in findings],
                "columnKind": "utf16CodeUnits",
            }
        ],
    }


def render(findings, checks=None) -> str:
    return json.dumps(sarif_document(findings, checks), indent=2) + "\n"

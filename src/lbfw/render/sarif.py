"""`--format sarif`: SARIF 2.1.0 as GitHub code scanning takes it.

tool.driver.rules come from the checks' own docs; each result points at the file and line
(physicalLocation) for files, relative URIs (against %SRCROOT%, the working directory) for
relative paths; for the live kernel, which has no file to point at, it names the host and the
table/chain/handle (logicalLocations) and the run's automationDetails.id names the host. Every
rule links to its documentation (helpUri).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Optional
from urllib.parse import quote

from .. import PROJECT_URL
from .. import __version__ as _version

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = PROJECT_URL
# docs/checks.md, one anchor per check (`## LB001 loopback-blocked` -> #lb001-loopback-blocked)
RULES_DOC = INFORMATION_URI + "/blob/main/docs/checks.md"
SRCROOT = "%SRCROOT%"

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
        "helpUri": f"{RULES_DOC}#{check.ID.lower()}-{check.NAME}",
        "properties": props,
    }


def _artifact(source: str) -> dict:
    """An artifactLocation: an absolute path as a file URI, a relative one as a relative URI
    against %SRCROOT% (the working directory: where code scanning expects the checkout)."""
    path = Path(source)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    return {"uri": quote(PurePosixPath(*path.parts).as_posix()), "uriBaseId": SRCROOT}


def _is_file(source) -> bool:
    return bool(source) and source != "-" and not source.startswith("live:")


def _fingerprint(f) -> str:
    rule = f.rule.text if f.rule is not None else f"{f.table} {f.chain} policy"
    key = "\0".join(str(x) for x in (f.check, f.source, f.family, f.table, f.chain, rule))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def result(f, rule_index: dict, host: Optional[str] = None) -> dict:
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
        physical = {"artifactLocation": _artifact(f.source), "region": {"startLine": f.line or 1}}
        data["locations"] = [{"physicalLocation": physical, "logicalLocations": [logical]}]
    else:
        where = [logical]
        if host:
            logical["fullyQualifiedName"] = f"{host}/{logical['fullyQualifiedName']}"
            where.insert(0, {"name": host, "fullyQualifiedName": host, "kind": "resource"})
        data["locations"] = [{"logicalLocations": where}]
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


def sarif_document(findings, checks=None, host: Optional[str] = None) -> dict:
    """The SARIF log of ``findings``; ``host`` names the machine for a live audit."""
    if checks is None:
        from ..checks import ALL as checks
    rules = [rule_descriptor(c) for c in checks]
    index = {c.ID: i for i, c in enumerate(checks)}
    run: dict = {
        "tool": {
            "driver": {
                "name": "lbfw",
                "version": _version,
                "semanticVersion": _version,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "automationDetails": {"id": f"lbfw/{host}/" if host else "lbfw/files/"},
        "results": [result(f, index, host) for f in findings],
        "columnKind": "utf16CodeUnits",
    }
    if any(_is_file(f.source) and not Path(f.source).is_absolute() for f in findings):
        run["originalUriBaseIds"] = {SRCROOT: {"uri": Path(os.getcwd()).as_uri() + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def render(findings, checks=None, host: Optional[str] = None) -> str:
    return json.dumps(sarif_document(findings, checks, host), indent=2) + "\n"

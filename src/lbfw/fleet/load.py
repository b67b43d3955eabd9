"""What each per-host file is, and reading them from files and directories.

A fleet directory holds one file per host, named after the host (`web1.json`), and may hold more:

- an audit: what `lbfw audit --format json` prints (docs/output.md);
- a doctor report: what `lbfw doctor --format json` prints (`{"version", "platform", "root", "plan",
  "flows", "user", "summary", "items"}`, each item with an `id` and a `severity`); `web1.doctor.json`
  names host web1;
- a "not audited" marker, written by the playbook for a host it could not reach or whose audit
  failed: `{"version": 1, "host": "web1", "not_audited": "unreachable: ..."}` (docs/fleet.md);
- the fleet report itself (`fleet.json`, `"kind": "lbfw-fleet"`): skipped, so the report can be
  written into the directory it reads.

Anything else (not JSON, another shape) makes its host "not audited" with the reason, never an
error: one bad file must not hide the other 999 hosts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import InputError

FLEET_KIND = "lbfw-fleet"
MARKER_KEY = "not_audited"
# A file named HOST.doctor.json (or HOST.audit.json) belongs to HOST.
_SUFFIXES = (".doctor", ".audit")
# doctor's severities (lbfw.doctor.items.SEVERITIES): an item with another one is not from lbfw doctor.
_DOCTOR_SEVERITIES = ("error", "warning", "note", "ok", "skipped")


@dataclass
class HostReport:
    """Everything the files say about one host."""

    host: str
    audit: Optional[dict] = None  # the audit document, as parsed
    audit_file: Optional[str] = None
    doctor: list = field(default_factory=list)  # doctor items (dicts with "severity")
    doctor_file: Optional[str] = None
    not_audited: Optional[str] = None  # why there is no audit (marker, unreadable or unrecognised file)
    files: list = field(default_factory=list)


def host_name(path: str, doc: object = None) -> str:
    """The host a file is about: its `"host"` key, else the file name without `.json` (and `.doctor`)."""
    if isinstance(doc, dict) and isinstance(doc.get("host"), str) and doc["host"].strip():
        return doc["host"].strip()
    name = os.path.basename(path)
    if name.endswith(".json"):
        name = name[:-5]
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def _is_audit(doc: dict) -> bool:
    tool = doc.get("tool")
    return (
        isinstance(tool, dict)
        and tool.get("name") == "lbfw"
        and isinstance(doc.get("findings"), list)
        and isinstance(doc.get("summary"), dict)
    )


def doctor_items(doc: dict) -> Optional[list]:
    """The items of an `lbfw doctor --format json` document, or None when ``doc`` is not one."""
    items, summary = doc.get("items"), doc.get("summary")
    if not isinstance(items, list) or not isinstance(summary, dict) or "platform" not in doc:
        return None
    if not all(
        isinstance(i, dict) and isinstance(i.get("id"), str) and i.get("severity") in _DOCTOR_SEVERITIES for i in items
    ):
        return None
    return items


def classify(doc: object) -> str:
    """ "audit" | "doctor" | "marker" | "fleet" | "unrecognised"."""
    if not isinstance(doc, dict):
        return "unrecognised"
    if doc.get("kind") == FLEET_KIND:
        return "fleet"
    if isinstance(doc.get(MARKER_KEY), str):
        return "marker"
    if _is_audit(doc):
        return "audit"
    if doctor_items(doc) is not None:
        return "doctor"
    return "unrecognised"


def add_document(hosts: dict, path: str, doc: Any, error: Optional[str] = None) -> None:
    """Add one parsed file (or one that could not be parsed: ``error`` says why) to ``hosts``."""
    kind = "unreadable" if error is not None else classify(doc)
    if kind == "fleet":
        return
    name = host_name(path, doc)
    report = hosts.setdefault(name, HostReport(host=name))
    report.files.append(path)
    if kind == "audit":
        if report.audit is not None:
            raise InputError(f"host {name} has two audit documents (the other is {report.audit_file})", path=path)
        report.audit, report.audit_file = doc, path
    elif kind == "doctor":
        if report.doctor_file is not None:
            raise InputError(f"host {name} has two doctor documents (the other is {report.doctor_file})", path=path)
        report.doctor, report.doctor_file = doctor_items(doc), path
    elif kind == "marker":
        # One line: SSH errors come with several, and each host is one line of the text report.
        report.not_audited = " ".join(doc[MARKER_KEY].split()) or "no reason given"
    elif kind == "unreadable":
        report.not_audited = f"unreadable file {path}: {error}"
    else:
        report.not_audited = f"unrecognised file {path}"
    if report.audit is not None and report.not_audited is not None:
        raise InputError(
            f"host {name} has an audit ({report.audit_file}) and also a file saying it was not "
            f"audited; remove the stale one",
            path=path,
        )


def expand(paths: list) -> list:
    """Directories become the `*.json` files directly inside them (sorted); files stay as given."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(".json") and not n.startswith("."))
            files.extend(os.path.join(path, n) for n in names)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise InputError("no such file or directory", path=path)
    return files


def read_reports(paths: list) -> list:
    """HostReports for the files and directories in ``paths``, sorted by host name."""
    hosts: dict = {}
    for path in expand(paths):
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as err:
            raise InputError(f"cannot read: {err.strerror or err}", path=path) from None
        except UnicodeDecodeError:
            add_document(hosts, path, None, "not UTF-8 text")
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            add_document(hosts, path, None, f"not JSON (line {err.lineno}: {err.msg})")
            continue
        add_document(hosts, path, doc)
    return [hosts[name] for name in sorted(hosts)]

#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT License (see the lbfw repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: audit
short_description: Audit a host's loopback firewall rules with lbfw (read-only)
description:
  - Runs C(lbfw audit --format json) on the host (the live rules of every backend, or the files in
    O(sources)) and returns lbfw's JSON document. Never changes anything, so it runs the same in
    check mode.
  - Findings are not failures; the task fails only when lbfw cannot audit (exit 2). Use
    RV(summary) or C(lbfw report) to decide what to do about them.
version_added: 0.1.0
author: lbfw developers
options:
  lbfw_bin:
    description: The lbfw program on the host (an absolute path, or a name looked up on PATH and /opt/lbfw/bin).
    type: str
    default: lbfw
  sources:
    description: Ruleset files on the host to audit instead of the live rules (as C(lbfw audit FILE...) takes them).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Auditing the live rules needs root (C(become)).
"""

EXAMPLES = r"""
- name: Audit the live rules
  lbfw.loopback.audit:
    lbfw_bin: /opt/lbfw/bin/lbfw
  register: audit

- name: Audit the boot-time files instead
  lbfw.loopback.audit:
    sources: [/etc/iptables/rules.v4, /etc/nftables.conf]
"""

RETURN = r"""
document:
  description: The whole C(lbfw audit --format json) document (docs/output.md); save it as HOST.json for C(lbfw report).
  returned: success
  type: dict
summary:
  description: Findings per severity.
  returned: success
  type: dict
  sample: {"error": 1, "warning": 1, "note": 0}
findings:
  description: The findings (check, severity, source, table, chain, rule, message, owner, flows ...).
  returned: success
  type: list
  elements: dict
flows:
  description: The default loopback flows with their verdicts.
  returned: success
  type: list
  elements: dict
sources:
  description: What each source (backend) contributed.
  returned: success
  type: list
  elements: dict
lbfw_version:
  description: The version of lbfw that audited.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lbfw.loopback.plugins.module_utils.lbfw import LBFW_ARGS, parse_json, run_lbfw


def main():
    module = AnsibleModule(
        argument_spec=dict(LBFW_ARGS, sources=dict(type="list", elements="str", default=[])),
        supports_check_mode=True,
    )
    # --live: the module's standard input is a pipe lbfw must not take for a ruleset
    argv = ["audit", "--format", "json", "--fail-on", "never"] + (list(module.params["sources"]) or ["--live"])
    rc, out, err = run_lbfw(module, argv)
    if rc != 0:
        module.fail_json(msg=f"lbfw audit exited {rc}: {(err or out).strip()}", rc=rc, stderr=err)
    doc = parse_json(module, argv, rc, out, err)
    module.exit_json(
        changed=False,
        document=doc,
        summary=doc.get("summary"),
        findings=doc.get("findings"),
        flows=doc.get("flows"),
        sources=doc.get("sources"),
        lbfw_version=(doc.get("tool") or {}).get("version"),
        warnings_text=err.strip() or None,
    )


if __name__ == "__main__":
    main()

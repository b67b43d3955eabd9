#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT License (see the lbfw repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: check
short_description: Will these loopback bindings work on this host? (lbfw check, lbfw doctor)
description:
  - With O(to) or O(plan), runs C(lbfw check --format json) for those flows against the host's live
    rules and returns each flow's verdict. Read-only.
  - With O(doctor=true), runs C(lbfw doctor --format json) instead (the host's readiness for
    multi-loopback, such as its addresses, routes and tools). lbfw releases without C(doctor) make the task fail
    and say so.
version_added: 0.1.0
author: lbfw developers
options:
  lbfw_bin:
    description: The lbfw program on the host.
    type: str
    default: lbfw
  to:
    description: Flows as C(ADDR:PORT[/tcp|/udp]), for example C(127.0.0.53:53/udp).
    type: list
    elements: str
    default: []
  from:
    description: The client address the flows bind (default the kernel's choice, 127.0.0.1).
    type: str
  plan:
    description: A PLAN.toml on the host with C([[flow]]) tables.
    type: path
  doctor:
    description: Run C(lbfw doctor) instead of checking flows.
    type: bool
    default: false
  fail_on_blocked:
    description: Fail the task when a flow is not delivered (otherwise only RV(all_delivered) says so).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Will the new resolver on 127.0.0.53 and the app on 127.10.0.1 be reachable?
  lbfw.loopback.check:
    to: [127.0.0.53:53/udp, 127.10.0.1:8001]
    from: 127.0.0.2
    fail_on_blocked: true

- name: Readiness
  lbfw.loopback.check:
    doctor: true
"""

RETURN = r"""
flows:
  description: Each flow as C(lbfw check --format json) prints it (proto, client, server, port, verdict, decided_by).
  returned: when O(to) or O(plan) is given
  type: list
  elements: dict
all_delivered:
  description: True when every flow is delivered.
  returned: when O(to) or O(plan) is given
  type: bool
doctor:
  description: The C(lbfw doctor --format json) document.
  returned: when O(doctor=true)
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lbfw.loopback.plugins.module_utils.lbfw import LBFW_ARGS, lbfw_command, parse_json, run_lbfw


def _doctor(module):
    rc, out, err = run_lbfw(module, ["doctor", "--help"])
    if rc != 0:
        module.fail_json(
            msg=f"this lbfw ({lbfw_command(module)}) has no `doctor` command (`lbfw doctor --help` "
            f"exited {rc}); install an lbfw that has it"
        )
    argv = ["doctor", "--format", "json"]
    rc, out, err = run_lbfw(module, argv)
    if rc == 2:
        module.fail_json(msg=f"lbfw doctor exited 2: {(err or out).strip()}", rc=rc, stderr=err)
    module.exit_json(changed=False, doctor=parse_json(module, argv, rc, out, err), lbfw_rc=rc)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            LBFW_ARGS,
            to=dict(type="list", elements="str", default=[]),
            plan=dict(type="path"),
            doctor=dict(type="bool", default=False),
            fail_on_blocked=dict(type="bool", default=False),
            **{"from": dict(type="str")},
        ),
        supports_check_mode=True,
        mutually_exclusive=[("doctor", "to"), ("doctor", "plan")],
    )
    p = module.params
    if p["doctor"]:
        _doctor(module)
    if not p["to"] and not p["plan"]:
        module.fail_json(msg="give `to` (ADDR:PORT flows), `plan` (a PLAN.toml on the host) or `doctor: true`")
    argv = ["check", "--live", "--format", "json"]
    for flow in p["to"]:
        argv += ["--to", flow]
    if p["from"]:
        argv += ["--from", p["from"]]
    if p["plan"]:
        argv += ["--plan", p["plan"]]
    rc, out, err = run_lbfw(module, argv)
    if rc == 2:
        module.fail_json(msg=f"lbfw check exited 2: {(err or out).strip()}", rc=rc, stderr=err)
    flows = parse_json(module, argv, rc, out, err).get("flows") or []
    delivered = all(f.get("verdict") == "delivered" for f in flows)
    result = dict(changed=False, flows=flows, all_delivered=delivered, lbfw_rc=rc)
    if p["fail_on_blocked"] and not delivered:
        bad = [
            f"{f.get('proto')} {f.get('client') or 'default'} -> {f.get('server')}:{f.get('port')} {f.get('verdict')}"
            for f in flows
            if f.get("verdict") != "delivered"
        ]
        module.fail_json(msg="not delivered: " + "; ".join(bad), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

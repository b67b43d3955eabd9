#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT License (see the lbfw repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fix
short_description: Fix narrow loopback rules on the live host with lbfw, confirmed from a new connection
description:
  - In check mode, runs lbfw's live dry run (C(lbfw fix)) and reports whether anything would change;
    with C(--diff) the diff is lbfw's fix diff. Nothing is changed.
  - Otherwise the fix is applied with a confirmation window
    (C(lbfw fix --apply --confirm-timeout SECONDS --detach --format json)); lbfw backs the rules up,
    proves the fix in a private namespace, applies it atomically and leaves a watchdog that restores
    the old rules at the deadline. The action plugin then connects to the host B(again), on a new
    connection, and runs C(lbfw confirm ID). If the fix cut the controller off, no confirmation
    arrives and the host rolls itself back. After the confirmation the host is audited again.
  - Idempotent: when the dry run has nothing to fix, nothing is applied and the task is not changed.
version_added: 0.1.0
author: lbfw developers
options:
  lbfw_bin:
    description: The lbfw program on the host.
    type: str
    default: lbfw
  style:
    description: C(interface) (C(-i lo) / C(iif "lo")) or C(range) (127.0.0.0/8).
    type: str
    choices: [interface, range]
    default: interface
  backup_dir:
    description:
      - Where lbfw keeps the live backups on the host (C(lbfw fix --backup-dir)); the confirmation
        and C(lbfw rollback) look there too. Unset, lbfw's own default (C($LBFW_BACKUP_DIR), else
        C(/var/lib/lbfw/backups)).
    type: path
  confirm_timeout:
    description:
      - Seconds the host waits for the confirmation before it restores the old rules. Keep it well
        above the time one SSH connection takes to open (and not equal to C(ansible_timeout)).
    type: int
    default: 30
  persist:
    description: Also fix the boot-time rules file the live rules came from (C(lbfw fix --apply --persist)).
    type: bool
    default: false
  phase:
    description: Set by the action plugin (plan, apply, confirm); do not set it.
    type: str
    choices: [plan, apply, confirm]
    default: plan
  transaction:
    description: Set by the action plugin for the confirm phase; do not set it.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  action:
    support: full
notes:
  - Needs root on the host (C(become)). The apply path needs an lbfw with C(fix --apply --detach) and
    C(confirm); older releases make the task fail and say so, having changed nothing.
"""

EXAMPLES = r"""
- name: What would lbfw change? (ansible-playbook --check --diff)
  lbfw.loopback.fix:
    lbfw_bin: /opt/lbfw/bin/lbfw
  check_mode: true

- name: Fix, confirmed from a second connection within 30 s or rolled back
  lbfw.loopback.fix:
    confirm_timeout: 30
"""

RETURN = r"""
diff:
  description: lbfw's fix diff (shown with C(--diff)).
  returned: when something is or would be fixed
  type: dict
transaction:
  description: The id of the applied transaction (C(lbfw confirm ID) makes it permanent).
  returned: when applied
  type: str
deadline:
  description: Unix time (host clock) at which the host restores its previous rules unless confirmed.
  returned: when applied
  type: int
confirmed:
  description: True when the confirmation from the new connection arrived in time.
  returned: after the confirm phase
  type: bool
remaining:
  description: LB002/LB003 findings left after the fix (the re-audit).
  returned: after the confirm phase
  type: list
  elements: dict
notes:
  description: What lbfw said about each edit, its fix safety and every refusal (lbfw's standard error).
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lbfw.loopback.plugins.module_utils.lbfw import LBFW_ARGS, parse_json, run_lbfw

FIXABLE = ("LB002", "LB003")


def _backup_dir(module):
    """``--backup-dir DIR`` when the task names one (else lbfw's default)."""
    path = module.params["backup_dir"]
    return ["--backup-dir", path] if path else []


def _plan(module):
    """(diff, notes) of lbfw's live dry run; fails on lbfw errors (exit 2)."""
    p = module.params
    argv = ["fix", "--live", "--style", p["style"]] + _backup_dir(module)
    rc, out, err = run_lbfw(module, argv)
    notes = [line for line in err.splitlines() if line.strip()]
    if rc == 2:
        module.fail_json(msg=f"lbfw fix (dry run) exited 2: {err.strip()}", rc=rc, notes=notes)
    return out, notes


def _diff(text):
    return {"before_header": "live rules", "after_header": "fixed by lbfw", "prepared": text}


def _apply(module, diff, notes):
    p = module.params
    argv = [
        "fix",
        "--live",
        "--apply",
        "--confirm-timeout",
        str(p["confirm_timeout"]),
        "--detach",
        "--format",
        "json",
        "--style",
        p["style"],
    ] + _backup_dir(module)
    if p["persist"]:
        argv.append("--persist")
    rc, out, err = run_lbfw(module, argv)
    notes = notes + [line for line in err.splitlines() if line.strip()]
    if rc != 0:
        if "--detach" in err and ("No such option" in err or "no such option" in err):
            module.fail_json(
                msg="this lbfw cannot apply with a confirmation from a second connection (it has no "
                "`lbfw fix --apply --detach`); nothing was changed. Install a newer lbfw.",
                rc=rc,
                notes=notes,
            )
        module.fail_json(
            msg=f"lbfw fix --apply exited {rc}: {(err or out).strip()}", rc=rc, notes=notes, diff=_diff(diff)
        )
    doc = parse_json(module, argv, rc, out, err)
    if not doc.get("transaction") or not isinstance(doc.get("deadline"), (int, float)):
        module.fail_json(
            msg=f"lbfw fix --apply --detach printed no transaction and deadline: {out.strip()}", notes=notes
        )
    module.exit_json(
        changed=True,
        transaction=str(doc["transaction"]),
        deadline=int(doc["deadline"]),
        host_now=time.time(),
        diff=_diff(diff),
        notes=notes,
    )


def _confirm(module):
    transaction = module.params["transaction"]
    if not transaction:
        module.fail_json(msg="phase=confirm needs transaction")
    rc, out, err = run_lbfw(module, ["confirm", transaction] + _backup_dir(module))
    if rc != 0:
        module.fail_json(
            msg=f"lbfw confirm {transaction} exited {rc}: {(err or out).strip()} (too late: the host "
            "has restored, or is restoring, its previous rules)",
            rc=rc,
            confirmed=False,
        )
    argv = ["audit", "--live", "--format", "json", "--fail-on", "never"]
    rc, out, err = run_lbfw(module, argv)
    doc = parse_json(module, argv, rc, out, err)
    remaining = [f for f in doc.get("findings") or () if f.get("check") in FIXABLE]
    module.exit_json(
        changed=True,
        confirmed=True,
        transaction=transaction,
        remaining=remaining,
        summary=doc.get("summary"),
        notes=[line for line in err.splitlines() if line.strip()],
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            LBFW_ARGS,
            style=dict(type="str", choices=["interface", "range"], default="interface"),
            backup_dir=dict(type="path"),
            confirm_timeout=dict(type="int", default=30),
            persist=dict(type="bool", default=False),
            phase=dict(type="str", choices=["plan", "apply", "confirm"], default="plan"),
            transaction=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["confirm_timeout"] < 5:
        module.fail_json(msg="confirm_timeout must be at least 5 seconds: the confirmation needs a new SSH connection")
    if p["phase"] == "confirm":
        _confirm(module)
    diff, notes = _plan(module)
    if not diff:
        module.exit_json(changed=False, notes=notes)
    if module.check_mode or p["phase"] == "plan":
        module.exit_json(changed=True, diff=_diff(diff), notes=notes)
    _apply(module, diff, notes)


if __name__ == "__main__":
    main()

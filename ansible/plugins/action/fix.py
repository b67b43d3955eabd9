# -*- coding: utf-8 -*-
# MIT License (see the lbfw repository)
"""Action plugin for lbfw.loopback.fix: apply on one connection, confirm on a new one.

A fix that cuts the controller off must not be confirmed by the connection that was already
open when it was applied (an established SSH session survives many rule changes that new
connections do not). So after the apply the plugin drops the connection (for ssh: stops the
ControlMaster) and confirms over a fresh one, retrying until shortly before the host's deadline.
If it never gets through, the host's watchdog restores the old rules at the deadline.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase

MODULE = "lbfw.loopback.fix"
RETRY_EVERY = 2.0  # seconds between attempts to reach the host again
MARGIN = 3.0  # stop trying this long before the deadline: a late confirm would race the rollback


class ActionModule(ActionBase):
    _supports_check_mode = True

    def _module(self, task_vars, **extra):
        args = dict(self._task.args)
        args.update(extra)
        return self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        if self._play_context.check_mode:
            result.update(self._module(task_vars, phase="plan"))
            return result
        applied = self._module(task_vars, phase="apply")
        if applied.get("failed") or not applied.get("transaction"):
            result.update(applied)
            return result
        # The host's deadline in the controller's clock (the two clocks need not agree).
        deadline = time.time() + (float(applied["deadline"]) - float(applied.get("host_now") or time.time()))
        attempts, last_error = 0, None
        while True:
            attempts += 1
            self._connection.reset()
            try:
                confirmed = self._module(task_vars, phase="confirm", transaction=applied["transaction"])
                break
            except AnsibleConnectionFailure as err:
                last_error = str(err)
            if time.time() + RETRY_EVERY > deadline - MARGIN:
                result.update(
                    failed=True,
                    changed=True,
                    confirmed=False,
                    transaction=applied["transaction"],
                    diff=applied.get("diff"),
                    attempts=attempts,
                    msg=(
                        f"applied transaction {applied['transaction']} but could not reach the host "
                        f"again to confirm it ({attempts} attempts; last: {last_error}); the host "
                        f"restores its previous rules at its deadline ({applied['deadline']})"
                    ),
                )
                return result
            time.sleep(RETRY_EVERY)
        result.update(confirmed)
        result.update(
            changed=True,
            diff=applied.get("diff"),
            deadline=applied["deadline"],
            attempts=attempts,
            notes=list(applied.get("notes") or ()) + list(confirmed.get("notes") or ()),
        )
        if not confirmed.get("failed") and confirmed.get("remaining"):
            result["msg"] = f"confirmed; {len(confirmed['remaining'])} LB002/LB003 finding(s) left after the fix"
        return result

"""The firewall managers that write rules lbfw finds: how each is recognised, where its own
configuration holds a rule, and the command that changes it (one module per manager).

``guidance(finding)`` is the entry point for the fixer: the exact command or configuration change
for a finding on a manager's rule, with the file and line when lbfw can find it, and the safe
commands `lbfw fix --apply` may run. Reading /etc happens here, never in the checks.
"""

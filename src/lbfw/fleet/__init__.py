"""Fleet reports: many hosts' `lbfw audit --format json` (and `lbfw doctor --format json`) documents,
plus the "not audited" markers a playbook writes for hosts it could not reach, merged into one report.

- ``lbfw.fleet.load``: a parsed JSON document -> ``HostReport`` (what kind of file it is), and the
  reading of files and directories (the only part that touches the disk).
- ``lbfw.fleet.merge``: pure: ``HostReport`` list -> ``Fleet`` (per host status, counts by check and
  severity, offending rules grouped across hosts, by owning manager, fleet-wide blocked flows).

The renderers are ``lbfw.render.fleet_text``, ``fleet_json``, ``fleet_sarif`` and ``fleet_html``.
"""

# -*- coding: utf-8 -*-
# MIT License (see the lbfw repository)
"""What the lbfw modules share: finding the lbfw program and running it with an argument list."""

from __future__ import annotations

import json
import os

LBFW_ARGS = dict(
    lbfw_bin=dict(type="str", default="lbfw"),
)


def lbfw_command(module):
    """The lbfw program to run: an absolute path as given, else looked up on PATH (and /opt/lbfw/bin)."""
    name = module.params["lbfw_bin"]
    if os.path.isabs(name):
        if not os.access(name, os.X_OK):
            module.fail_json(
                msg=f"lbfw_bin {name} is not an executable file on this host; install lbfw "
                f"(role lbfw.loopback.install) or point lbfw_bin at it"
            )
        return name
    found = module.get_bin_path(name, opt_dirs=["/opt/lbfw/bin"])
    if found is None:
        module.fail_json(
            msg=f"{name} not found on this host (PATH and /opt/lbfw/bin); install lbfw "
            f"(role lbfw.loopback.install) or set lbfw_bin"
        )
    return found


def run_lbfw(module, argv, check_rc=False):
    """(rc, stdout, stderr) of ``lbfw ARGV`` (a list: never a shell string)."""
    rc, out, err = module.run_command([lbfw_command(module)] + list(argv), environ_update={"NO_COLOR": "1"})
    if check_rc and rc != 0:
        module.fail_json(
            msg=f"lbfw {' '.join(argv)} exited {rc}: {(err or out).strip()}", rc=rc, stdout=out, stderr=err
        )
    return rc, out, err


def parse_json(module, argv, rc, out, err):
    """lbfw's JSON output, or fail saying which command printed what."""
    try:
        return json.loads(out)
    except ValueError:
        module.fail_json(
            msg=f"lbfw {' '.join(argv)} exited {rc} without JSON: {(err or out).strip()[:2000]}",
            rc=rc,
            stdout=out,
            stderr=err,
        )

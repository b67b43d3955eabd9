"""Observe loopback flows with real sockets, inside a sandbox namespace or on the live host.

`observe(ns, flows)` runs `probe.py` inside the namespace (nsenter, flows as JSON on
stdin); `observe_here(flows)` runs the same code in this process's namespace (the live
host: no rule is touched, busy ports are reported "not observed: port in use").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

from ..results import Flow
from . import probe
from .netns import Namespace, SandboxError

PROBE = Path(probe.__file__).resolve()
NOT_OBSERVED = "not observed"


def _as_dicts(flows: Iterable[Flow]) -> list:
    return [{"proto": f.proto, "server": f.server, "port": int(f.port), "client": f.client} for f in flows]


def _budget(count: int, timeout: float) -> float:
    """Wall-clock bound for the probe: each batch takes at most two timeouts plus slack."""
    batches = max(1, -(-count // probe.BATCH))
    return batches * (2 * timeout + 3) + 10


def observe_detailed(ns: Namespace, flows: Sequence[Flow], timeout: float = 1.0) -> list:
    """Like `observe`, with the reason: [{"observed": ..., "reason": ...}] per flow, in order."""
    flows = list(flows)
    if not flows:
        return []
    request = json.dumps({"flows": _as_dicts(flows), "timeout": timeout})
    proc = ns.run([sys.executable, str(PROBE)], input=request, check=False,
                  timeout=_budget(len(flows), timeout))
    if proc.returncode != 0:
        raise SandboxError(f"the traffic probe failed: {proc.stderr.strip()}", returncode=proc.returncode,
                           stderr=proc.stderr)
    results = json.loads(proc.stdout)
    if len(results) != len(flows):
        raise SandboxError("the traffic probe answered for the wrong number of flows")
    return results


def observe(ns: Namespace, flows: Sequence[Flow], timeout: float = 1.0) -> list:
    """Real traffic for each flow inside ``ns``: "delivered" or "blocked" per flow, in order
    ("not observed: ..." when the server address cannot be bound there)."""
    return [r["observed"] for r in observe_detailed(ns, flows, timeout)]


def observe_here_detailed(flows: Sequence[Flow], timeout: float = 1.0) -> list:
    """`observe_detailed` in this process's own network namespace (the live host)."""
    return probe.observe_flows(_as_dicts(flows), timeout)


def observe_here(flows: Sequence[Flow], timeout: float = 1.0) -> list:
    """Real traffic in this process's network namespace; busy ports give
    "not observed: port in use" and are never touched."""
    return [r["observed"] for r in observe_here_detailed(flows, timeout)]

"""Named crash points for fault-injection tests: a real ``kill -9`` at an exact moment.

Set ``IMAGENET21KP_CRASH_AT=POINT[:N]`` and the process that reaches ``POINT`` for the N-th time
(default 1) sends itself SIGKILL — no cleanup, no ``finally`` blocks, exactly like a node failure.
Unset (always, outside tests) it costs one dictionary lookup.

Points: ``convert_part`` (a part's data and tables written, its summary not yet),
``shard_temp`` (shard temp file complete, not yet renamed), ``shard_written`` (a shard renamed,
its task's summary not yet), ``tables`` (some output tables written, not all).
"""
from __future__ import annotations

import os
import signal

ENV_VAR = "IMAGENET21KP_CRASH_AT"
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process if ``IMAGENET21KP_CRASH_AT`` names this point and hit count."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

"""Progress for long tasks: Luigi's web UI (throttled RPCs) and tqdm on a terminal."""
from __future__ import annotations

import time

from tqdm import tqdm


class TaskProgress:
    """Report ``done / total`` to a Luigi task's UI at most every ``interval`` s, and to tqdm.

    Luigi's ``set_progress_percentage`` / ``set_status_message`` are synchronous RPCs to the
    scheduler, so they are throttled; outside a worker they are no-ops.
    """

    def __init__(self, task, total: int, what: str, interval: float = 2.0):
        self.task, self.total, self.what, self.interval = task, max(int(total), 0), what, interval
        self._last = 0.0
        self._bar = tqdm(total=self.total, desc=what, unit="it", disable=None, leave=False)
        self._done = 0

    def update(self, done: int, message: str | None = None) -> None:
        self._bar.update(done - self._done)
        self._done = done
        now = time.monotonic()
        if now - self._last >= self.interval or done >= self.total:
            self._last = now
            pct = 100 * done / self.total if self.total else 100
            self._send(pct, message or f"{self.what}: {done}/{self.total}")

    def _send(self, pct: float, message: str) -> None:
        try:
            self.task.set_progress_percentage(round(pct, 1))
            self.task.set_status_message(message)
        except Exception:  # no scheduler behind the task (run() called directly)
            pass

    def close(self, message: str | None = None) -> None:
        self._bar.close()
        self._send(100, message or f"{self.what}: done")

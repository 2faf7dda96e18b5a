"""One build at a time per output dir on a host: a lock file held by the command's process.

``OUTPUT_DIR/.build.lock`` carries a POSIX record lock (``fcntl.lockf``) of the process that runs
a local build, and says who holds it (host, pid, start). The kernel drops the lock when that
process ends in any way (``kill -9`` included), so a lock never outlives its holder; the file is
removed when the build ends, and a file left by a killed build is taken over. Record locks are
not inherited by forked processes, so Luigi's task processes never hold it. Builds that share a
central scheduler (a cluster's workers) take no lock: luigid already gives each task to one
worker.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from pipeline.errors import BuildInProgress

LOCK_FILE = ".build.lock"


class OutputDirLock:
    """``with OutputDirLock(output_dir):`` — raises :class:`BuildInProgress` naming the holder."""

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.pread(fd, 4096, 0)
                os.close(fd)
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                raise BuildInProgress(f"another build is writing {self.path.parent} ({holder_text(holder)}); "
                                      "wait for it to finish, or stop it: a rerun then resumes") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not removed by a build that ended between our open and our lock
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self._fd)  # releases the lock
            self._fd = None


def holder_text(content: bytes) -> str:
    """``host H, pid P, started T`` from a lock file's content (or a note that it is unreadable)."""
    try:
        holder = json.loads(content)
        return f"host {holder['host']}, pid {holder['pid']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "its host and pid are not recorded yet"

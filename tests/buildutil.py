"""Helpers for tests that run the build as real processes (luigi CLI, luigid, kill -9)."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--min-images", "31", "--val-per-class", "5", "--samples-per-shard", "64", "--shard-tasks", "3",
         "--convert-tasks", "4"]


def output_digest(root: Path) -> dict[str, str]:
    """sha256 of every output file (the work dir excluded)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and "_work" not in p.relative_to(root).parts}


def temp_files(root: Path) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob("*") if ".tmp-" in p.name or "-luigi-tmp-" in p.name)


def write_config(path: Path, **sections) -> Path:
    """The project's luigi.cfg plus overrides ``{section: {key: value}}``."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "luigi.cfg")
    for section, values in sections.items():
        if not cfg.has_section(section):
            cfg.add_section(section)
        for k, v in values.items():
            cfg.set(section, k, str(v))
    with open(path, "w") as f:
        cfg.write(f)
    return path


def luigi_cmd(archive: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "luigi", "--module", "pipeline", "BuildImageNet21KP",
            "--archive", str(archive), "--output-dir", str(output), *SMALL, *extra]


def run_build(archive: Path, output: Path, *extra: str, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(luigi_cmd(archive, output, "--local-scheduler", *extra), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Luigid:
    """A real ``luigid`` on 127.0.0.1 (``python -m pipeline scheduler``) with its own state file and log dir."""

    def __init__(self, tmp: Path, config: Path):
        self.port = free_port()
        (tmp / "luigid-logs").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, LUIGI_CONFIG_PATH=str(config))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "scheduler", "--port", str(self.port),
             "--address", "127.0.0.1", "--state-path", str(tmp / "luigid.state"), "--logdir", str(tmp / "luigid-logs")],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "luigid.err", "w"))
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/worker_list", timeout=2).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("luigid did not start: " + (tmp / "luigid.err").read_text())
                time.sleep(0.2)

    def api(self, method: str, **data):
        url = f"http://127.0.0.1:{self.port}/api/{method}?data=" + urllib.parse.quote(json.dumps(data))
        return json.loads(urllib.request.urlopen(url, timeout=10).read())["response"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


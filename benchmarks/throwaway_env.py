"""Packages a benchmark compares against (stock Pillow, OpenCV), installed once into ``.bench/``.

Never dependencies of the project: each lives in its own ``pip install --target`` folder that a
benchmark puts on the ``PYTHONPATH`` of a subprocess.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / ".bench"


def install_once(folder: str, requirement: str, package: str, *pip_args: str) -> Path:
    """``.bench/FOLDER`` holding ``requirement`` (importable as ``package``), installed there once,
    atomically, with the running interpreter's pip."""
    target = BENCH_DIR / folder
    if not (target / package).is_dir():
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              *pip_args, "--target", str(tmp), requirement])
        if pip.returncode:
            raise SystemExit(f"could not install {requirement} into {tmp} (pip exited with {pip.returncode})")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target

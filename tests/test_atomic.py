"""hierarchy.atomic, the one home of atomic writes: each kind of writer the project has, killed
(SIGKILL) at its last moment — data written, not yet renamed — leaves the old file untouched and
one ``.NAME.tmp-*`` that the cleanup removes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hierarchy.atomic import (atomic_dir, atomic_write_bytes, remove_stale_temp_files,
                              remove_stale_temp_files_in, temp_path)

ROOT = Path(__file__).resolve().parents[1]
KILL_AT_RENAME = "import os, signal; os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
WRITERS = {  # what each kind writes to the path given as sys.argv[1]
    "bytes": "from hierarchy.atomic import atomic_write_bytes; atomic_write_bytes(p, [b'x' * 1000] * 50)",
    "text": "from hierarchy.atomic import atomic_write_text; atomic_write_text(p, 'new')",
    "parquet": ("import pyarrow as pa; from pipeline.outputs import write_parquet; "
                "write_parquet(pa.table({'a': [1, 2]}), p)"),
    "shard": "from pipeline.shard_tar import write_shard; write_shard(p, [('k', {'jpg': b'x' * 600})])",
    "checkpoint": "from trainer.checkpoint import atomic_torch_save; atomic_torch_save({'w': [1]}, p)",
    "tree": ("from hierarchy import SemanticTree; SemanticTree.from_parents(['n01503061'], {}, "
             "{'n01503061': 'bird'}, 'wordnet').save(p)"),
    "folder": ("from hierarchy.atomic import atomic_dir\n"
               "with atomic_dir(p) as d:\n    (d / 'f').write_text('new')"),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_killed_writer_leaves_the_old_file_and_a_temp_the_cleanup_removes(kind, tmp_path):
    target = tmp_path / ("out.d" if kind == "folder" else "out")
    if kind == "folder":
        target.mkdir()
        (target / "f").write_text("old")
    else:
        target.write_text("old")
    script = KILL_AT_RENAME + "import sys; from pathlib import Path; p = Path(sys.argv[1])\n" + WRITERS[kind]
    proc = subprocess.run([sys.executable, "-c", script, str(target)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    old = (target / "f") if kind == "folder" else target
    assert old.read_text() == "old"  # never torn, never half-replaced
    leftovers = list(tmp_path.glob(f".{target.name}.tmp-*"))
    assert len(leftovers) == 1
    assert remove_stale_temp_files(target) == 1 and list(tmp_path.glob(".*.tmp-*")) == []


def test_a_failed_writer_removes_its_own_temp_file(tmp_path):
    def pieces():
        yield b"a" * 100
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(tmp_path / "out", pieces())
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "dir"):
            raise RuntimeError("while filling")
    assert list(tmp_path.iterdir()) == []


def test_writes_of_many_pieces_and_the_cleanup_of_a_folder(tmp_path):
    pieces = [os.urandom(n) for n in range(0, 3000, 7)] * 3  # > WRITEV_PIECES pieces
    assert atomic_write_bytes(tmp_path / "out", pieces) == sum(map(len, pieces))
    assert (tmp_path / "out").read_bytes() == b"".join(pieces)
    temp_path(tmp_path / "a").write_text("stale")
    temp_path(tmp_path / "b").mkdir()
    assert remove_stale_temp_files_in(tmp_path) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["out"]

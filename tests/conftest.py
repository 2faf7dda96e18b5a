"""Shared fixtures: the project's own synthetic ImageNet-21K-shaped archive and the dataset built from it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` (paper, reference is_a/words files, bench photos)."""
    return SHARED


@pytest.fixture(scope="session")
def timm_info_dir() -> Path:
    """timm's data/_info folder with the official ImageNet-21K-P class lists (found without importing torch)."""
    import importlib.util

    return Path(importlib.util.find_spec("timm").origin).parent / "data" / "_info"


@pytest.fixture(scope="session")
def trainer_dataset(tmp_path_factory) -> Path:
    """The demo dataset with deliberately uneven shards (37 samples, the last ones fewer)."""
    from tests.trainer_fixtures import make_dataset

    return make_dataset(tmp_path_factory.mktemp("trainer-data"), samples_per_shard=37)

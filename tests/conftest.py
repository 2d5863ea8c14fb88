"""Shared fixtures. Real data: ../shared/data when present (skipped with a reason otherwise), and
the bundled sample in streamfuse/data/sample always."""
from __future__ import annotations

from pathlib import Path

import pytest

from streamfuse import REPO_DIR, SAMPLE_DIR

SHARED_DATA = REPO_DIR.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not (path / "ir").is_dir():
        pytest.skip(f"real data {path} not present (../shared/data is the project's evaluation set)")
    return path


@pytest.fixture
def tno() -> Path:
    return shared_dataset("TNO")


@pytest.fixture
def sample_images() -> Path:
    """The bundled real image pair(s): streamfuse/data/sample/images/{ir,vis}."""
    return SAMPLE_DIR / "images"


def pytest_collection_modifyitems(config, items):
    from streamfuse.backends import cuda_available

    if cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)

"""Shared fixtures and the two test tiers.

Every test runs from a plain clone on the bundled sample (streamfuse/data/sample) or on scenes written
to tmp_path. The quality tests that need many real pairs take the ``shared_data`` fixture: the
project's evaluation set ../shared/data, skipped with a reason where it is absent; every test using it
is marked ``realdata`` (select with ``-m realdata`` / ``-m "not realdata"``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from streamfuse import REPO_DIR, SAMPLE_DIR
from tests.helpers.rtsp import RtspServer, rtsp_server_missing

SHARED_DATA = REPO_DIR.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (``<dataset>/{ir,vis}`` evaluation pairs and ``train/``), or a skip saying why."""
    if not SHARED_DATA.is_dir():
        pytest.skip("real data ../shared/data not present (the project's evaluation set)")
    return SHARED_DATA


@pytest.fixture
def train_data(shared_data) -> Path:
    """The training split ../shared/data/train (the trainers read it; TNO is the smallest set)."""
    path = shared_data / "train"
    if not (path / "TNO" / "ir").is_dir():
        pytest.skip(f"training pairs {path}/TNO not present (../shared/data/train is the project's training split)")
    return path


@pytest.fixture
def tno(shared_data) -> Path:
    path = shared_data / "TNO"
    if not (path / "ir").is_dir():
        pytest.skip(f"real data {path} not present (../shared/data is the project's evaluation set)")
    return path


@pytest.fixture
def sample_images() -> Path:
    """The bundled real image pair(s): streamfuse/data/sample/images/{ir,vis}."""
    return SAMPLE_DIR / "images"


def pytest_collection_modifyitems(config, items):
    from streamfuse.backends import cuda_available

    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)
    if cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def rtsp_server():
    """Factory: ``rtsp_server(play={...}, record={...})`` -> a started RtspServer; all killed at the end.
    Skips the test, saying why, when gst-rtsp-server is not installed or does not start."""
    missing = rtsp_server_missing()
    if missing:
        pytest.skip(missing)
    servers = []

    def start(play=None, record=None) -> RtspServer:
        server = RtspServer(play, record)
        servers.append(server)
        try:
            return server.start()
        except RuntimeError as e:
            pytest.skip(str(e))

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def untrained_res2netfuse(tmp_path_factory) -> Path:
    """Res2NetFuse's architecture with untrained weights, exported to ONNX (for the FP16 tests)."""
    pytest.importorskip("torch")
    from streamfuse.export.onnx import export_onnx
    from streamfuse.models import get_model

    spec = get_model("res2netfuse")
    return export_onnx(spec.name, out=tmp_path_factory.mktemp("fp16") / "res2netfuse.onnx",
                       module=spec.build(load_weights=False))

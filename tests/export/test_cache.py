"""Engine cache: key, sidecar, reuse, and rebuilds of stale or foreign engines (fake builder: no TensorRT here)."""
import json
import logging

import pytest

from streamfuse import StreamfuseError
from streamfuse.export.cache import cached_engine, engine_path, make_key, sidecar_path, stale_reason

TARGET = {"tensorrt": "10.3.0", "gpu": "Orin (nvgpu)", "compute_capability": "8.7"}
SHAPES = {"ir": (1, 1, 512, 640), "vis": (1, 1, 512, 640)}


class FakeBuilder:
    """Stands in for TensorRT's builder: records calls, returns bytes that depend on its inputs."""

    def __init__(self):
        self.calls = []

    def __call__(self, onnx_path, precision, shapes, **kwargs):
        self.calls.append((onnx_path, precision, shapes, kwargs))
        return f"engine:{onnx_path.read_bytes().hex()}:{precision}:{sorted(shapes.items())}:{len(self.calls)}".encode()


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "res2netfuse.onnx"
    path.write_bytes(b"graph v1")
    return path


def build(onnx_file, tmp_path, builder, target=TARGET, precision="fp16", shapes=SHAPES, **kw):
    return cached_engine(onnx_file, precision, shapes, target, build=builder, cache_dir=tmp_path / "engines", **kw)


def test_first_build_writes_plain_engine_and_sidecar(onnx_file, tmp_path):
    builder = FakeBuilder()
    path = build(onnx_file, tmp_path, builder, workspace=123)
    assert path.name == "res2netfuse-fp16-640x512.engine"
    assert len(builder.calls) == 1 and builder.calls[0][3] == {"workspace": 123}
    # the engine file is exactly what the builder serialized: nothing prepended
    assert path.read_bytes().startswith(b"engine:")
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["key"]["gpu"] == "Orin (nvgpu)" and meta["key"]["compute_capability"] == "8.7"
    assert meta["key"]["tensorrt"] == "10.3.0" and meta["key"]["precision"] == "fp16"
    assert meta["key"]["shapes"] == {"ir": [1, 1, 512, 640], "vis": [1, 1, 512, 640]}
    assert len(meta["key"]["onnx_sha256"]) == 64


def test_up_to_date_engine_is_reused(onnx_file, tmp_path, caplog):
    builder = FakeBuilder()
    first = build(onnx_file, tmp_path, builder)
    content = first.read_bytes()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="streamfuse"):
        again = build(onnx_file, tmp_path, builder)
    assert again == first and again.read_bytes() == content
    assert len(builder.calls) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


@pytest.mark.parametrize("change, reason", [
    ("onnx", "ONNX graph changed"),
    ("tensorrt", "TensorRT 10.3.0, this is TensorRT 8.5.2"),
    ("gpu", "built on Orin (nvgpu) (sm 8.7), this is NVIDIA GeForce RTX 3060 (sm 8.6)"),
])
def test_stale_or_foreign_engine_is_rebuilt_with_one_line(onnx_file, tmp_path, caplog, change, reason):
    builder = FakeBuilder()
    build(onnx_file, tmp_path, builder)
    target = dict(TARGET)
    if change == "onnx":
        onnx_file.write_bytes(b"graph v2")
    elif change == "tensorrt":
        target["tensorrt"] = "8.5.2"
    else:
        target.update(gpu="NVIDIA GeForce RTX 3060", compute_capability="8.6")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="streamfuse"):
        path = build(onnx_file, tmp_path, builder, target=target)
    assert len(builder.calls) == 2
    rebuild_lines = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(rebuild_lines) == 1 and reason in rebuild_lines[0]
    assert stale_reason(path, make_key(onnx_file, "fp16", SHAPES, target)) is None


def test_missing_sidecar_or_replaced_engine_is_not_trusted(onnx_file, tmp_path):
    builder = FakeBuilder()
    path = build(onnx_file, tmp_path, builder)
    key = make_key(onnx_file, "fp16", SHAPES, TARGET)
    path.write_bytes(b"someone else's engine")
    assert "replaced" in stale_reason(path, key)
    sidecar_path(path).unlink()
    assert "no sidecar" in stale_reason(path, key)
    build(onnx_file, tmp_path, builder)
    assert len(builder.calls) == 2 and stale_reason(path, key) is None
    sidecar_path(path).write_text("{not json")
    assert "unreadable" in stale_reason(path, key)


def test_precision_and_shapes_get_their_own_files(onnx_file, tmp_path):
    builder = FakeBuilder()
    a = build(onnx_file, tmp_path, builder)
    b = build(onnx_file, tmp_path, builder, precision="fp32")
    c = build(onnx_file, tmp_path, builder, shapes={"ir": (1, 1, 256, 320), "vis": (1, 1, 1024, 1280)})
    assert len({a, b, c}) == 3 and len(builder.calls) == 3
    assert c.name == "res2netfuse-fp16-1280x1024-ir320x256.engine"
    assert build(onnx_file, tmp_path, builder) == a and len(builder.calls) == 3


def test_dynamic_profile_name_and_key(tmp_path, onnx_file):
    shapes = {"ir": ((1, 1, 64, 64), (1, 1, 512, 640), (1, 1, 1088, 1920)),
              "vis": ((1, 1, 64, 64), (1, 1, 512, 640), (1, 1, 1088, 1920))}
    assert engine_path(onnx_file, "fp16", shapes, tmp_path).name == "res2netfuse-fp16-640x512-dyn.engine"
    key = make_key(onnx_file, "fp16", shapes, TARGET)
    assert key.to_json()["shapes"]["vis"] == [[1, 1, 64, 64], [1, 1, 512, 640], [1, 1, 1088, 1920]]


def test_force_rebuilds_and_bad_input_is_one_clear_error(onnx_file, tmp_path):
    builder = FakeBuilder()
    build(onnx_file, tmp_path, builder)
    build(onnx_file, tmp_path, builder, force=True)
    assert len(builder.calls) == 2
    with pytest.raises(StreamfuseError, match="fp16 or fp32"):
        build(onnx_file, tmp_path, builder, precision="int8")
    with pytest.raises(StreamfuseError, match="not found"):
        build(tmp_path / "missing.onnx", tmp_path, builder)

"""TensorRT backend: clear errors where TensorRT or CUDA is missing, backend="auto" falling back, and
(on a CUDA machine, marker gpu) FP16/FP32 engines of every shipped model against ONNX Runtime."""
import importlib.util
import logging

import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.backends import backend_usable, cuda_available, load_fuser
from streamfuse.models import get_model

from tests.helpers.shipped_models import shipped_graphs

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture
def engines(tmp_path, monkeypatch):
    """An engines/ folder holding an untrained Res2NetFuse (weights and, on request, its ONNX graph)."""
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("STREAMFUSE_ENGINES", str(tmp_path))
    spec = get_model("res2netfuse")
    module = spec.build(load_weights=False)
    torch.save(module.state_dict(), tmp_path / "res2netfuse.pt")
    return tmp_path, module


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_tensorrt_missing_is_one_line_naming_the_install():
    with pytest.raises(StreamfuseError) as err:
        load_fuser("res2netfuse", backend="tensorrt")
    message = str(err.value)
    assert "\n" not in message
    assert "pip install tensorrt" in message and "JetPack" in message


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA")
def test_tensorrt_without_cuda_names_the_cuda_build_of_torch(monkeypatch):
    import streamfuse.backends.tensorrt as trt_backend

    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: object())  # a TensorRT that imports; no GPU
    with pytest.raises(StreamfuseError) as err:
        load_fuser("res2netfuse", backend="tensorrt", device="auto")
    message = str(err.value)
    assert "\n" not in message and "CUDA build of torch" in message and "NVIDIA driver" in message


def test_usable_backends_per_device():
    assert not backend_usable("tensorrt", "cpu")
    assert backend_usable("onnxruntime", "cpu")
    assert not backend_usable("openvino", "cuda")
    import onnxruntime

    assert backend_usable("onnxruntime", "cuda") == ("CUDAExecutionProvider" in onnxruntime.get_available_providers())


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA")
def test_auto_on_cpu_keeps_the_cpu_order(engines):
    from streamfuse.export.onnx import export_onnx

    folder, module = engines
    export_onnx("res2netfuse", out=folder / "res2netfuse.onnx", module=module)
    fuser = load_fuser("res2netfuse", backend="auto")
    assert fuser.backend == "onnxruntime" and fuser.device == "cpu"


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA")
def test_auto_falls_back_when_a_backend_cannot_start(engines, caplog):
    # no ONNX graph in engines/: ONNX Runtime and OpenVINO cannot start, torch runs the weights
    with caplog.at_level(logging.WARNING, logger="streamfuse"):
        fuser = load_fuser("res2netfuse", backend="auto")
    assert fuser.backend == "torch"
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("backend onnxruntime not usable") and "trying" in line for line in lines)
    rng = np.random.default_rng(0)
    out = fuser.fuse(rng.random((32, 40), np.float32), rng.random((32, 40), np.float32))
    assert out.shape == (32, 40) and out.dtype == np.float32


# ---------------------------------------------------------------- on a CUDA machine
def _real_frames(shared_data, limit=3):
    from streamfuse.color import normalize_ir, split_luma
    from streamfuse.evaluation.fp16_report import load_pairs

    return [(normalize_ir(ir), split_luma(vis)[0]) for _, ir, vis in load_pairs(shared_data, limit=limit, max_side=640)]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
@pytest.mark.parametrize("model, variant", shipped_graphs())
def test_engine_matches_onnxruntime(model, variant, precision, tmp_path, shared_data):
    from streamfuse.backends.tensorrt import TensorRTFuser
    from streamfuse.evaluation.fp16_report import psnr

    spec = get_model(model)
    reference = load_fuser(model, backend="onnxruntime", device="cpu", variant=variant)
    trt = TensorRTFuser(spec, variant, device="cuda", precision=precision, cache_dir=tmp_path)
    for ir, vis in _real_frames(shared_data):
        ref, out = reference.fuse(ir, vis), trt.fuse(ir, vis)
        assert out.shape == ref.shape
        assert psnr(out, ref, peak=1.0) >= 40.0
    assert list(tmp_path.glob("*.engine")) and list(tmp_path.glob("*.engine.json"))


@pytest.mark.gpu
@pytest.mark.parametrize("model, variant", shipped_graphs())
def test_engine_is_reused_and_runs_on_gpu_tensors(model, variant, tmp_path, caplog, shared_data):
    import torch

    from streamfuse.backends.tensorrt import TensorRTFuser

    spec = get_model(model)
    first = TensorRTFuser(spec, variant, precision="fp16", cache_dir=tmp_path)
    ir, vis = _real_frames(shared_data, 1)[0]
    expected = first.fuse(ir, vis)
    with caplog.at_level(logging.INFO, logger="streamfuse"):
        second = TensorRTFuser(spec, variant, precision="fp16", cache_dir=tmp_path)
        got = second.fuse(ir, vis)
    assert not [r for r in caplog.records if "building" in r.getMessage()]
    np.testing.assert_array_equal(got, expected)
    ir_t = torch.from_numpy(second._fit_ir(ir[None], vis.shape))[:, None].cuda()
    out = second.fuse_tensor(ir_t, torch.from_numpy(vis)[None, None].cuda())
    assert out.is_cuda and tuple(out.shape) == (1, 1, *vis.shape)
    np.testing.assert_allclose(out[0, 0].cpu().numpy(), expected, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("model, variant", shipped_graphs())
def test_pipeline_end_to_end_on_tensorrt(model, variant, tmp_path):
    """Real H.264 clips through Pipeline with the FP16 engine: every pair fused and written."""
    from tests.helpers.clips import m3svd_frames, write_clip

    from streamfuse.backends.tensorrt import TensorRTFuser
    from streamfuse.config import RunConfig
    from streamfuse.pipeline import Pipeline

    irs, viss = m3svd_frames(10, size=(320, 256))
    ir_clip, vis_clip = write_clip(tmp_path / "ir.mp4", irs, 30), write_clip(tmp_path / "vis.mp4", viss, 30)
    fuser = TensorRTFuser(get_model(model), variant, precision="fp16", cache_dir=tmp_path / "engines")
    cfg = RunConfig(ir=str(ir_clip), vis=str(vis_clip), output=str(tmp_path / "out.mp4"), progress=False, mode="lossless")
    stats = Pipeline(cfg, fuser=fuser).run()
    assert stats.written == 10 and (tmp_path / "out.mp4").stat().st_size > 0

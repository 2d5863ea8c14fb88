"""FP16 numerics checked on the CPU: the FP16 graph (what TensorRT 11 builds, and what FP16 TensorRT
engines approximate) against the FP32 graph on real pairs, and every layer's activation range."""
import math
from pathlib import Path

import numpy as np
import pytest

from shipped_models import shipped_graphs
from streamfuse.export.flops import gflops
from streamfuse.export.fp16 import FP16_MAX, _tensor_types, convert_onnx_fp16, fp16_report, load_pairs, psnr, to_fp16
from streamfuse.models import get_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PAIRS = 3  # real pairs from three datasets of ../shared/data
GFLOP_BUDGET = 4.0  # per inference: frames are shrunk so each model's check takes a few seconds on one core
_reports = {}


def max_side_for(model, variant) -> int:
    """Longest frame side keeping one inference near GFLOP_BUDGET (at most 256; `run.py export --check-fp16`
    runs the same check at full size)."""
    g = gflops(get_model(model).onnx_path(variant))
    return 256 if g <= 0 else max(64, min(256, int(640 * math.sqrt(GFLOP_BUDGET / g))))


def report(model, variant):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data {SHARED_DATA} not present (../shared/data is the project's evaluation set)")
    if (model, variant) not in _reports:
        _reports[model, variant] = fp16_report(model, variant, SHARED_DATA, limit=PAIRS,
                                               max_side=max_side_for(model, variant))
    return _reports[model, variant]


@pytest.mark.parametrize("model, variant", shipped_graphs())
def test_fp16_fused_output_matches_fp32(model, variant):
    r = report(model, variant)
    assert len(r.psnr_db) == PAIRS
    assert r.min_psnr >= 40.0, r.text()


@pytest.mark.parametrize("model, variant", shipped_graphs())
def test_no_activation_beyond_fp16_range(model, variant):
    r = report(model, variant)
    assert "fused" in {layer.tensor for layer in r.layers}
    assert all(np.isfinite(layer.max_abs) for layer in r.layers), r.text()
    assert r.worst.max_abs < FP16_MAX, r.text()


@pytest.fixture(scope="module")
def untrained_res2netfuse(tmp_path_factory):
    pytest.importorskip("torch")
    from streamfuse.export.onnx import export_onnx

    spec = get_model("res2netfuse")
    return export_onnx(spec.name, out=tmp_path_factory.mktemp("fp16") / "res2netfuse.onnx",
                       module=spec.build(load_weights=False))


def test_fp16_graph_keeps_float32_io_and_halves_weights(untrained_res2netfuse, tmp_path):
    half_path = convert_onnx_fp16(untrained_res2netfuse, tmp_path / "half.onnx")
    model = onnx.load(str(half_path))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [f32, f32]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [f32]
    assert {t.data_type for t in model.graph.initializer} == {f16}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    assert convs and all(types[n.output[0]] == f16 for n in convs)

    rng = np.random.default_rng(0)
    ir, vis = (rng.random((1, 1, 48, 64), np.float32) for _ in range(2))
    ref = ort.InferenceSession(str(untrained_res2netfuse), providers=["CPUExecutionProvider"]).run(None, {"ir": ir, "vis": vis})[0]
    out = ort.InferenceSession(str(half_path), providers=["CPUExecutionProvider"]).run(None, {"ir": ir, "vis": vis})[0]
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert psnr(out, ref, peak=1.0) > 50


def test_shape_arithmetic_and_resize_scales_stay_float32(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    class Up(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)

        def forward(self, ir, vis):
            up = F.interpolate(ir, size=vis.shape[-2:], mode="bilinear", align_corners=False)  # sizes from Shape
            x = F.interpolate(F.avg_pool2d(self.conv(torch.cat([up, vis], 1)), 2), scale_factor=2.0, mode="nearest")
            return torch.tanh(x) / 2 + 0.5

    path = tmp_path / "up.onnx"
    torch.onnx.export(Up().eval(), (torch.rand(1, 1, 8, 10), torch.rand(1, 1, 32, 40)), str(path),
                      input_names=["ir", "vis"], output_names=["fused"], opset_version=17, dynamo=False,
                      dynamic_axes={"ir": {2: "a", 3: "b"}, "vis": {2: "h", 3: "w"}})
    half = to_fp16(onnx.load(str(path)))
    types = _tensor_types(half)
    resizes = [n for n in half.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 2
    assert all(types[n.input[0]] == onnx.TensorProto.FLOAT16 for n in resizes)  # the data is float16
    scales = [n.input[2] for n in resizes if len(n.input) > 2 and n.input[2]]
    assert scales and all(types[s] == onnx.TensorProto.FLOAT for s in scales)  # ONNX requires float32 scales
    rng = np.random.default_rng(1)
    ir, vis = rng.random((1, 1, 30, 40), np.float32), rng.random((1, 1, 120, 160), np.float32)
    ref = ort.InferenceSession(str(path)).run(None, {"ir": ir, "vis": vis})[0]
    out = ort.InferenceSession(half.SerializeToString()).run(None, {"ir": ir, "vis": vis})[0]
    assert out.shape == (1, 1, 120, 160) and psnr(out, ref, peak=1.0) > 50


def test_activation_report_finds_the_largest_layer(untrained_res2netfuse):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data {SHARED_DATA} not present")
    r = fp16_report("res2netfuse", "l1", SHARED_DATA, onnx_path=untrained_res2netfuse, limit=2, max_side=128)
    names = {layer.tensor for layer in r.layers}
    assert "fused" in names and sum("Conv" in n for n in names) >= 10
    # the l1 fusion layer sums |features| over 64 channels: it must out-range any single conv input
    conv1 = max(layer.max_abs for layer in r.layers if layer.tensor == "/encoder/encoder.0/encoder.0.0/Conv_output_0")
    reduce = max(layer.max_abs for layer in r.layers if layer.op == "ReduceSum")
    assert reduce > conv1 > 0
    assert "beyond the FP16 range" in r.text()


def test_load_pairs_takes_one_pair_per_dataset():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data {SHARED_DATA} not present")
    pairs = load_pairs(SHARED_DATA, limit=5, max_side=200)
    assert len({stem.split("/")[0] for stem, _, _ in pairs}) == 5
    for _, ir, vis in pairs:
        assert ir.ndim == 2 and ir.shape == vis.shape[:2] and max(vis.shape[:2]) <= 200

"""The FP16 report on the CPU: the FP16 graph (what TensorRT 11 builds, and what FP16 TensorRT engines
approximate) against the FP32 graph on real pairs, and every layer's activation range."""
import math

import numpy as np
import pytest

from streamfuse.evaluation.flops import gflops
from streamfuse.evaluation.fp16_report import fp16_report, load_pairs
from streamfuse.export.fp16 import FP16_MAX
from streamfuse.models import get_model
from tests.helpers.shipped_models import shipped_graphs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
PAIRS = 3  # real pairs from three datasets of ../shared/data
GFLOP_BUDGET = 4.0  # per inference: frames are shrunk so each model's check takes a few seconds on one core
_reports = {}


def max_side_for(model, variant) -> int:
    """Longest frame side keeping one inference near GFLOP_BUDGET (at most 256; `run.py export --check-fp16`
    runs the same check at full size)."""
    g = gflops(get_model(model).onnx_path(variant))
    return 256 if g <= 0 else max(64, min(256, int(640 * math.sqrt(GFLOP_BUDGET / g))))


def report(model, variant, shared_data):
    if (model, variant) not in _reports:
        _reports[model, variant] = fp16_report(model, variant, shared_data, limit=PAIRS,
                                               max_side=max_side_for(model, variant))
    return _reports[model, variant]


@pytest.mark.parametrize("model, variant", shipped_graphs(fp16=True))
def test_fp16_fused_output_matches_fp32(model, variant, shared_data):
    r = report(model, variant, shared_data)
    assert len(r.psnr_db) == PAIRS
    assert r.min_psnr >= 40.0, r.text()


@pytest.mark.parametrize("model, variant", shipped_graphs(fp16=True))
def test_no_activation_beyond_fp16_range(model, variant, shared_data):
    r = report(model, variant, shared_data)
    assert "fused" in {layer.tensor for layer in r.layers}
    assert all(np.isfinite(layer.max_abs) for layer in r.layers), r.text()
    assert r.worst.max_abs < FP16_MAX, r.text()


def test_activation_report_finds_the_largest_layer(untrained_res2netfuse, shared_data):
    r = fp16_report("res2netfuse", "l1", shared_data, onnx_path=untrained_res2netfuse, limit=2, max_side=128)
    names = {layer.tensor for layer in r.layers}
    assert "fused" in names and sum("Conv" in n for n in names) >= 10
    # the l1 fusion layer sums |features| over 64 channels: it must out-range any single conv input
    conv1 = max(layer.max_abs for layer in r.layers if layer.tensor == "/encoder/encoder.0/encoder.0.0/Conv_output_0")
    reduce = max(layer.max_abs for layer in r.layers if layer.op == "ReduceSum")
    assert reduce > conv1 > 0
    assert "beyond the FP16 range" in r.text()


def test_load_pairs_takes_one_pair_per_dataset(shared_data):
    pairs = load_pairs(shared_data, limit=5, max_side=200)
    assert len({stem.split("/")[0] for stem, _, _ in pairs}) == 5
    for _, ir, vis in pairs:
        assert ir.ndim == 2 and ir.shape == vis.shape[:2] and max(vis.shape[:2]) <= 200

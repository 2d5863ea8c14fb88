"""FP16 graphs: float16 compute with float32 inputs and output, checked on ONNX Runtime's CPU."""
import numpy as np
import pytest

from streamfuse.evaluation.fp16_report import psnr
from streamfuse.export.fp16 import convert_onnx_fp16, tensor_types, to_fp16

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


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
    types = tensor_types(half)
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

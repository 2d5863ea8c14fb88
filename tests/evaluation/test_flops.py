"""MAC counting on ONNX graphs against counts taken from the torch modules' own layer shapes."""
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from torch import nn  # noqa: E402

from streamfuse.evaluation.flops import gflops, macs  # noqa: E402


class Mixed(nn.Module):
    """Every counted op: grouped strided Conv, ConvTranspose, Linear (Gemm/MatMul) and a bare matmul."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, stride=2, padding=1)
        self.group = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.fc = nn.Linear(4, 6)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, ir, vis):
        x = self.up(self.group(self.conv(torch.cat([ir, vis], 1))))   # N x 4 x H x W
        t = self.fc(x.permute(0, 2, 3, 1))                             # N x H x W x 6 (MatMul over the last dim)
        attn = torch.matmul(t, t.transpose(-1, -2))                    # N x H x W x W
        return self.head(x) + attn.mean(-1).unsqueeze(1)


def hand_macs(h: int, w: int) -> int:
    m = 8 * (h // 2) * (w // 2) * 2 * 9          # conv: out elems x Cin x k x k
    m += 8 * (h // 2) * (w // 2) * 2 * 9         # grouped: 8 -> 8 in 4 groups (2 in-channels each)
    m += 8 * (h // 2) * (w // 2) * 4 * 16        # transpose: in elems x Cout x k x k
    m += h * w * 6 * 4                            # linear 4 -> 6 per pixel
    m += h * w * w * 6                            # t @ t^T per row
    m += h * w * 4                                # 1x1 head
    return m


def test_macs_match_hand_count(tmp_path):
    path = tmp_path / "mixed.onnx"
    torch.onnx.export(Mixed().eval(), (torch.rand(1, 1, 16, 20), torch.rand(1, 1, 16, 20)), str(path),
                      input_names=["ir", "vis"], output_names=["fused"], opset_version=17, dynamo=False,
                      dynamic_axes={"ir": {0: "n", 2: "h", 3: "w"}, "vis": {0: "n", 2: "h", 3: "w"}})
    assert macs(path, vis_hw=(32, 48)) == hand_macs(32, 48)
    assert gflops(path, vis_hw=(64, 80)) == pytest.approx(2 * hand_macs(64, 80) / 1e9)


def test_res2netfuse_gflops_from_its_layers(tmp_path):
    from streamfuse.export.onnx import export_onnx
    from streamfuse.models import get_model

    spec = get_model("res2netfuse")
    module = spec.build(load_weights=False)
    path = export_onnx("res2netfuse", out=tmp_path / "res2netfuse.onnx", module=module)
    enc = sum(math.prod(c.weight.shape) for c in module.autoencoder.encoder.modules() if isinstance(c, nn.Conv2d))
    dec = sum(math.prod(c.weight.shape) for c in module.autoencoder.decoder.modules() if isinstance(c, nn.Conv2d))
    per_pixel = 2 * enc + dec  # the encoder runs on IR and on visible, all convs keep the frame size
    assert macs(path, vis_hw=(512, 640)) == per_pixel * 512 * 640
    assert gflops(path) == pytest.approx(2 * per_pixel * 512 * 640 / 1e9)


def test_res2netfuse_fp16_traffic_and_estimate(tmp_path):
    from streamfuse.evaluation.flops import GPUS, estimate_ms, traffic_bytes
    from streamfuse.export.onnx import export_onnx
    from streamfuse.models import get_model

    spec = get_model("res2netfuse")
    module = spec.build(load_weights=False)
    path = export_onnx("res2netfuse", out=tmp_path / "res2netfuse.onnx", module=module)

    def per_pixel(seq):  # channels in + out of every conv (all keep the frame size)
        return sum(c.in_channels + c.out_channels for c in seq.modules() if isinstance(c, nn.Conv2d))

    elements = 2 * per_pixel(module.autoencoder.encoder) + per_pixel(module.autoencoder.decoder)
    assert traffic_bytes(path, (512, 640)) == 2 * elements * 512 * 640
    # the estimate is the slower of compute and memory: more bandwidth cannot beat the compute bound
    gflop, gbyte = gflops(path), traffic_bytes(path) / 1e9
    tflops, gbs = GPUS["AGX Orin 64GB"]
    assert estimate_ms(gflop, gbyte, tflops, gbs) >= estimate_ms(gflop, gbyte, tflops, gbs * 100) > 0
    assert estimate_ms(gflop, gbyte, tflops, gbs * 100) == pytest.approx(gflop / (tflops * 0.30))


def test_estimate_rows_and_table(tmp_path):
    from streamfuse.evaluation.flops import GPUS, estimate_rows, estimate_table
    from streamfuse.export.onnx import export_onnx
    from streamfuse.models import get_model

    spec = get_model("res2netfuse")
    path = export_onnx("res2netfuse", out=tmp_path / "res2netfuse.onnx", module=spec.build(load_weights=False))
    (row,) = estimate_rows([("res2netfuse/l1", path)])
    assert row["gflops_1280x1024"] == pytest.approx(4 * row["gflops_640x512"], rel=1e-3)
    fps = row["estimated_fps_640x512"]
    assert set(fps) == set(GPUS) and fps["RTX 4090"] > fps["AGX Orin 64GB"] > fps["Orin Nano 8GB"] > 0
    table = estimate_table([row])
    assert table.count("\n") == 2 and "| res2netfuse/l1 | " in table


def test_ir_size_comes_from_the_graph_metadata_not_its_name(tmp_path):
    import shutil

    from streamfuse.models import get_model

    copy = tmp_path / "renamed.onnx"  # no model name left in the file name
    shutil.copy(get_model("ddcgan").onnx_path("x4"), copy)
    vis_hw = (64, 80)
    # ir_scale 4 from the metadata (an IR at the visible size, the old guess for an unknown name, does
    # not even pass shape inference: the graph up-samples the IR x4 to meet the visible)
    assert macs(copy, vis_hw) == macs(copy, vis_hw, ir_hw=(16, 20)) > 0

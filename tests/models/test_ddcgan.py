import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamfuse.backends import available_backends, load_fuser  # noqa: E402
from streamfuse.models import get_model  # noqa: E402
from streamfuse.models.ddcgan import DDcGANGenerator, build  # noqa: E402


def test_architecture_follows_the_authors_code():
    g = DDcGANGenerator()
    convs = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10  # entry + 4 dense encoder convs + 5 decoder convs
    assert all(c.stride == (1, 1) for c in convs)  # everything at full resolution
    assert [c.in_channels for c in convs] == [2, 48, 96, 144, 192, 240, 240, 128, 64, 32]  # dense block: 48 per conv
    assert convs[-1].out_channels == 1
    assert all(c.padding_mode == "reflect" for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()) == 9  # every conv but the last
    assert 1_050_000 < sum(p.numel() for p in g.parameters()) < 1_150_000  # the authors' ~1.1M


def test_inference_normalises_each_image_by_its_own_statistics():
    from streamfuse.models.ddcgan import ImageStatsNorm

    norm = ImageStatsNorm(3).eval()
    norm.running_mean.fill_(5.0)  # running averages are ignored at inference
    x = torch.rand(2, 3, 8, 8) * 4 + 1
    y = norm(x)
    assert torch.allclose(y.mean((2, 3)), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(y[1:], norm(x[1:]))  # each image alone: the batch does not matter


def test_ir_is_nearest_upsampled_four_times():
    g = DDcGANGenerator(ratio=4)
    ir = torch.rand(1, 1, 3, 5)
    up = g.upsample_ir(ir)
    assert up.shape == (1, 1, 12, 20)
    assert torch.equal(up, ir.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3))
    assert DDcGANGenerator(ratio=1).upsample_ir(ir) is ir


@pytest.mark.parametrize("ratio", [4, 1])
def test_forward_shapes_and_range(ratio):
    g = DDcGANGenerator(ratio=ratio).eval()
    vis = torch.rand(2, 1, 48, 64)
    ir = torch.rand(2, 1, 48 // ratio, 64 // ratio) * 50  # far outside [0, 1]: output must stay in it
    with torch.no_grad():
        out = g(ir, vis)
    assert out.shape == (2, 1, 48, 64)
    assert out.min() >= 0 and out.max() <= 1


def test_bad_ratio_and_variant():
    with pytest.raises(ValueError, match="ratio"):
        DDcGANGenerator(ratio=2)
    assert build("x1").ratio == 1 and build("x4").ratio == 4


@pytest.mark.parametrize("variant, ir_hw", [("x4", (120, 161)), ("x1", (479, 641))])
def test_odd_size_through_the_fuser(variant, ir_hw):
    # 641x479 visible: the Fuser pads it to a multiple of 4 and the IR to a quarter of that (x4)
    fuser = load_fuser("ddcgan", backend="torch", variant=variant, module=build(variant).eval())
    assert fuser.ir_shape((479, 641)) == ir_hw
    rng = np.random.default_rng(0)
    out = fuser.fuse(rng.random(ir_hw, dtype=np.float32), rng.random((479, 641), dtype=np.float32))
    assert out.shape == (479, 641) and out.dtype == np.float32


def shipped(variant: str = "x4"):
    spec = get_model("ddcgan")
    if not spec.weights_path().exists() or not spec.onnx_path(variant).exists():
        pytest.skip("engines/ddcgan.pt / .onnx not trained yet (python -m train ddcgan)")
    return spec


def real_pair(sample_images, scale: int):
    import cv2

    from streamfuse.color import normalize_ir, split_luma
    from streamfuse.io.images import read_image

    ir = normalize_ir(read_image(sample_images / "ir" / "set08_V000_I02159.png"))
    vis = split_luma(read_image(sample_images / "vis" / "set08_V000_I02159.png"))[0]
    h, w = vis.shape
    if scale > 1:  # the registered low-resolution IR the x4 model is made for
        ir = cv2.resize(ir, (-(-w // scale), -(-h // scale)), interpolation=cv2.INTER_AREA)
    return ir, vis


@pytest.mark.parametrize("variant", ["x4", "x1"])
def test_shipped_onnx_matches_torch_on_every_cpu_backend(sample_images, variant):
    spec = shipped(variant)
    ir, vis = real_pair(sample_images, spec.ir_scale_for(variant))
    ref = load_fuser("ddcgan", backend="torch", variant=variant).fuse(ir, vis)
    for backend in ("onnxruntime", "openvino"):
        if backend not in available_backends():
            continue
        out = load_fuser("ddcgan", backend=backend, variant=variant).fuse(ir, vis)
        assert np.abs(out - ref).max() <= 1e-4, backend


def test_shipped_x4_keeps_thermal_targets_and_copies_neither_source(sample_images):
    shipped()
    ir_low, vis = real_pair(sample_images, 4)
    ir_full, _ = real_pair(sample_images, 1)
    fused = load_fuser("ddcgan", backend="onnxruntime").fuse(ir_low, vis)
    hot = ir_full >= np.quantile(ir_full, 0.95)

    def contrast(img):
        return img[hot].mean() - img[~hot].mean()

    assert contrast(fused) >= 0.5 * contrast(ir_full)
    for src in (ir_full, vis):
        assert np.corrcoef(fused.ravel(), src.ravel())[0, 1] < 0.98

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamfuse.models import get_model  # noqa: E402
from streamfuse.models.metafusion import FEB, VARIANT_SCALES, MetaFusion, MetaResample, abs_max  # noqa: E402


def small(**kw) -> MetaFusion:
    """The full structure at a test-friendly width (forward cost of the shipped width is ~1 s at VGA)."""
    torch.manual_seed(0)
    return MetaFusion(channels=4, blocks=1, **kw)


def test_structure_follows_the_paper():
    m = MetaFusion()
    assert m.features.entry[0].out_channels == 32 and m.features.exit[0].out_channels == 8
    assert len(m.features.blocks) == 3 and all(isinstance(b, FEB) for b in m.features.blocks)
    feb = m.features.blocks[0]
    dilations = [feb.branch1.body[2].dilation[0]] + [u.body[2].dilation[0] for u in feb.branch3] + [feb.branch5.body[2].dilation[0]]
    assert dilations == [1, 3, 3, 3, 3, 5]
    assert len(m.rcms) == 2
    assert m.upscale.mlp[0].in_features == 4 and m.upscale.mlp[2].out_features == 3 * 3 * 8 * 8
    assert m.head_fused.out_channels == 1 and m.head_sr.out_channels == 1


def test_odd_size_forward_at_visible_size():
    m = small().eval()
    with torch.no_grad():
        out = m(torch.rand(1, 1, 479, 641), torch.rand(1, 1, 479, 641))
    assert out.shape == (1, 1, 479, 641)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("ir_hw, vis_hw, out_hw", [
    ((12, 16), (24, 32), (21, 33)),
    pytest.param((120, 160), (240, 320), (211, 333), marks=pytest.mark.slow),  # ~70k distinct weight sets per meta call
])
def test_unequal_inputs_and_arbitrary_output_size(ir_hw, vis_hw, out_hw):
    m = small().eval()
    ir, vis = torch.rand(2, 1, *ir_hw), torch.rand(2, 1, *vis_hw)
    with torch.no_grad():
        fused, ir_sr, vis_sr = m.run(ir, vis, out_hw)
        assert fused.shape == ir_sr.shape == vis_sr.shape == (2, 1, *out_hw)
        assert torch.isfinite(fused).all()
        assert m(ir, vis).shape == (2, 1, *vis_hw)  # forward: the visible's size


def test_forward_without_an_integer_ratio():
    m = small().eval()
    with torch.no_grad():
        assert m(torch.rand(1, 1, 13, 17), torch.rand(1, 1, 29, 37)).shape == (1, 1, 29, 37)


@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_integer_upscale_conv_pixel_shuffle_equals_general_meta_upscale(r):
    torch.manual_seed(r)
    m = MetaResample()
    x = torch.randn(2, 8, 7, 9)
    fast = m(x, (7 * r, 9 * r))
    assert fast.shape == (2, 8, 7 * r, 9 * r)
    assert torch.allclose(fast, m.general(x, 7 * r, 9 * r), atol=1e-5)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_integer_downscale_strided_conv_equals_general_meta_downscale(r):
    torch.manual_seed(r)
    m = MetaResample()
    x = torch.randn(1, 8, 6 * r, 5 * r)
    fast = m(x, (6, 5))
    assert fast.shape == (1, 8, 6, 5)
    assert torch.allclose(fast, m.general(x, 6, 5), atol=1e-5)


def test_frozen_weights_follow_loaded_state_and_training():
    a, b = small().freeze(2), small()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.01 * torch.randn_like(p))
    a.load_state_dict(b.state_dict())  # the post-load hook recomputes the frozen meta-weights
    ir, vis = torch.rand(1, 1, 16, 20), torch.rand(1, 1, 32, 40)
    with torch.no_grad():
        frozen = a.eval()(ir, vis)
        live = a.train()(ir, vis)  # train mode drops frozen weights and computes them from the MLPs
    assert torch.allclose(frozen, live, atol=1e-6)
    assert not a.upscale.frozen
    assert a.eval().upscale.frozen  # back to eval: frozen again


def test_abs_max_picks_larger_magnitude():
    a = torch.tensor([1.0, -3.0, 0.5])
    b = torch.tensor([-2.0, 2.0, 0.5])
    assert abs_max(a, b).tolist() == [-2.0, -3.0, 0.5]


def test_registry_variants_and_ir_scales():
    spec = get_model("metafusion")
    assert spec.variants == ("x1", "x2", "x4")
    assert [spec.ir_scale_for(v) for v in spec.variants] == [1, 2, 4]
    assert {v: VARIANT_SCALES[v] for v in spec.variants} == {"x1": 1, "x2": 2, "x4": 4}
    assert spec.onnx_path("x2").name == "metafusion-x2.onnx" and spec.onnx_path("x1").name == "metafusion.onnx"


def _real_pair(sample_images, r: int):
    from streamfuse.color import normalize_ir, split_luma
    from streamfuse.io.images import read_image

    ir = normalize_ir(read_image(sample_images / "ir" / "set08_V000_I02159.png", "IR"))[100:228, 200:360]
    vis = split_luma(read_image(sample_images / "vis" / "set08_V000_I02159.png", "VIS"))[0][100:228, 200:360]
    import cv2

    ir_small = cv2.resize(ir, (vis.shape[1] // r, vis.shape[0] // r), interpolation=cv2.INTER_AREA)
    return ir_small, vis


@pytest.mark.parametrize("variant", ["x1", "x2", "x4"])
def test_shipped_weights_load_and_onnx_matches_torch(variant, sample_images):
    from streamfuse.backends import load_fuser

    spec = get_model("metafusion")
    if not spec.weights_path().exists() or not spec.onnx_path(variant).exists():
        pytest.fail(f"shipped {spec.weights_path()} / {spec.onnx_path(variant)} missing (python -m train metafusion)")
    ir, vis = _real_pair(sample_images, VARIANT_SCALES[variant])
    torch_fuser = load_fuser("metafusion", backend="torch", variant=variant)
    ort_fuser = load_fuser("metafusion", backend="onnxruntime", variant=variant)
    a, b = torch_fuser.fuse(ir, vis), ort_fuser.fuse(ir, vis)
    assert a.shape == vis.shape
    assert float(np.abs(a - b).max()) <= 1e-4
    # a fusion, not a copy of either source
    for src in (vis, ir if variant == "x1" else None):
        if src is not None:
            assert abs(np.corrcoef(a.ravel(), src.ravel())[0, 1]) < 0.999

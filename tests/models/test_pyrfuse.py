"""PyrFuse: the pyramid is exact, the expand is the binomial interpolation it claims, thermal
targets keep their sign, any frame size runs, and the ONNX graph matches the torch module."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamfuse.models.pyrfuse import PyrFuse  # noqa: E402


def test_fusing_an_image_with_itself_returns_it():
    x = torch.rand(2, 1, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = PyrFuse().eval()(x, x)
    assert torch.allclose(out, x, atol=1e-6)


def test_expand_is_zero_insertion_then_the_binomial_kernel():
    rng = np.random.default_rng(1)
    low = rng.random((5, 7)).astype(np.float32)
    # direct formula: insert zeros, edge-pad by one low-res sample, filter with 2 * [1 4 6 4 1] / 16 per axis
    padded = np.pad(low, 1, mode="edge")
    up = np.zeros((2 * padded.shape[0], 2 * padded.shape[1]), np.float64)
    up[::2, ::2] = padded
    k = 2 * np.array([1, 4, 6, 4, 1]) / 16
    rows = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, up)
    full = np.apply_along_axis(lambda c: np.convolve(c, k, mode="same"), 0, rows)
    want = full[2:2 + 10, 2:2 + 14]  # sample i of the low image lands on 2i
    got = PyrFuse().expand(torch.from_numpy(low)[None, None]).numpy()[0, 0]
    assert got.shape == (10, 14)
    np.testing.assert_allclose(got, want, atol=1e-6)


def _scene(target_ir: float, background_ir: float):
    """Textured visible frame with a dark patch; IR flat background with a target over the patch."""
    rng = np.random.default_rng(2)
    vis = np.clip(0.55 + 0.08 * rng.standard_normal((96, 128)), 0, 1).astype(np.float32)
    vis[32:64, 48:80] = 0.12  # the target is dark in the visible image
    ir = np.full((96, 128), background_ir, np.float32)
    ir[32:64, 48:80] = target_ir
    return ir, vis


@pytest.mark.parametrize("target_ir, background_ir, brighter", [(0.95, 0.2, True), (0.05, 0.8, False)])
def test_thermal_target_keeps_its_sign(target_ir, background_ir, brighter):
    from streamfuse.backends import load_fuser

    ir, vis = _scene(target_ir, background_ir)
    fused = load_fuser("pyrfuse", backend="onnxruntime", device="cpu").fuse(ir, vis)
    inside = fused[36:60, 52:76].mean()
    outside = np.concatenate([fused[:24].ravel(), fused[-24:].ravel()]).mean()
    if brighter:  # hot target, dark in the visible: bright on a darker surround
        assert inside > outside + 0.2
    else:  # cold target in a warm scene: stays darker than its surround
        assert inside < outside - 0.05


@pytest.mark.parametrize("h, w", [(77, 101), (16, 16), (33, 250)])
def test_any_frame_size(h, w):
    from streamfuse.backends import load_fuser

    rng = np.random.default_rng(3)
    ir, vis = rng.random((h, w), dtype=np.float32), rng.random((h, w), dtype=np.float32)
    fused = load_fuser("pyrfuse", backend="onnxruntime", device="cpu").fuse(ir, vis)
    assert fused.shape == (h, w) and fused.dtype == np.float32
    assert 0.0 <= fused.min() and fused.max() <= 1.0


def test_lower_resolution_ir_is_brought_to_the_visible_grid():
    from streamfuse.backends import load_fuser

    rng = np.random.default_rng(4)
    fused = load_fuser("pyrfuse", backend="onnxruntime", device="cpu").fuse(
        rng.random((60, 80), dtype=np.float32), rng.random((120, 160), dtype=np.float32))
    assert fused.shape == (120, 160)


def test_onnx_matches_torch_on_a_real_pair(sample_images):
    from streamfuse.backends import load_fuser
    from streamfuse.color import normalize_ir, split_luma, to_gray
    from streamfuse.io.images import read_image

    ir = normalize_ir(to_gray(read_image(next((sample_images / "ir").iterdir()), "IR")))
    vis = split_luma(read_image(next((sample_images / "vis").iterdir()), "visible"))[0]
    onnx_out = load_fuser("pyrfuse", backend="onnxruntime", device="cpu").fuse(ir, vis)
    torch_out = load_fuser("pyrfuse", backend="torch", device="cpu").fuse(ir, vis)
    assert np.abs(onnx_out - torch_out).max() <= 1e-4

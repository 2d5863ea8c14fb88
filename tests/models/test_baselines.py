"""Baselines: exact small cases in torch, and the shipped ONNX graphs on a real ONNX Runtime session."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from streamfuse.backends import load_fuser
from streamfuse.models import get_model
from streamfuse.models.baselines import AverageFusion, LaplacianPyramidFusion, MaxFusion

BASELINES = ["average", "max", "laplacian"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pair(h=64, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
    ir = (0.3 + 0.4 * torch.sin(6 * x) * torch.cos(4 * y) + 0.05 * torch.rand(h, w, generator=g)).clamp(0, 1)
    vis = (0.5 + 0.3 * torch.cos(9 * x + 3 * y) + 0.05 * torch.rand(h, w, generator=g)).clamp(0, 1)
    return ir[None, None], vis[None, None]


def test_average_and_max_are_exact():
    ir = torch.tensor([[[[0.0, 0.2], [1.0, 0.5]]]])
    vis = torch.tensor([[[[1.0, 0.6], [0.0, 0.5]]]])
    assert torch.equal(AverageFusion()(ir, vis), torch.tensor([[[[0.5, 0.4], [0.5, 0.5]]]]))
    assert torch.equal(MaxFusion()(ir, vis), torch.tensor([[[[1.0, 0.6], [1.0, 0.5]]]]))


def test_laplacian_pyramid_reconstructs_and_keeps_the_sharper_detail():
    model = LaplacianPyramidFusion(levels=4)
    ir, vis = pair()
    assert torch.allclose(model(ir, ir), ir, atol=1e-6)  # fusing an image with itself changes nothing
    flat = torch.full_like(vis, 0.5)
    fused = model(ir, flat)
    # Next to a flat visible image the fused image keeps the IR's fine detail: what it changes is
    # low-pass (the averaged base), so its finest band is small; the average halves that detail.
    fine = lambda x: model.pyramid(x)[0].norm() / model.pyramid(ir)[0].norm()  # noqa: E731
    assert fine(fused - ir) < 0.05
    assert fine(0.5 * (ir + flat)) == pytest.approx(0.5, abs=1e-4)
    assert torch.allclose(fused.mean(), 0.5 * (ir.mean() + 0.5), atol=2e-3)


@pytest.mark.parametrize("name", BASELINES)
def test_shipped_onnx_matches_torch_on_onnxruntime(name):
    spec = get_model(name)
    assert not spec.trained and spec.onnx_path().is_file()
    fuser = load_fuser(name, backend="onnxruntime", device="cpu")
    ir, vis = pair(61, 75, seed=1)  # odd size: padded to the model's multiple and cropped back
    out = fuser.fuse(ir[0, 0].numpy(), vis[0, 0].numpy())
    assert out.shape == (61, 75) and out.dtype == np.float32
    with torch.inference_mode():
        h, w = 64, 80  # the Fuser reflect-pads to a multiple of pad_multiple (16 for the pyramid)
        m = spec.pad_multiple
        hp, wp = -(-61 // m) * m, -(-75 // m) * m
        pad = (0, wp - 75, 0, hp - 61)
        want = spec.build()(torch.nn.functional.pad(ir, pad, mode="reflect"),
                            torch.nn.functional.pad(vis, pad, mode="reflect"))[0, 0, :61, :75].clamp(0, 1)
    np.testing.assert_allclose(out, want.numpy(), atol=1e-5)

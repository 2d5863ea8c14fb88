"""streamfuse/models/tlgan.py: the TLGAN generators and the shipped G3(G1(.)) fusion network."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamfuse.backends import load_fuser  # noqa: E402
from streamfuse.models import get_model  # noqa: E402
from streamfuse.models.tlgan import TLGAN, Generator  # noqa: E402


def test_generator_is_five_layers_without_downsampling():
    g = Generator()
    convs = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4 + [(1, 1)]
    assert all(c.stride == (1, 1) for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()) == 4
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in g.modules()) == 4
    assert isinstance(list(g.modules())[-1], torch.nn.Tanh)
    assert convs[0].in_channels == 2  # anchor + the other source


def test_odd_size_forward_in_range():
    m = TLGAN().eval()
    ir, vis = torch.rand(2, 1, 479, 641), torch.rand(2, 1, 479, 641)
    with torch.no_grad():
        out = m(ir, vis)
    assert out.shape == (2, 1, 479, 641)
    assert 0.0 <= out.min().item() and out.max().item() <= 1.0


def test_inference_uses_both_sources():
    torch.manual_seed(0)
    m = TLGAN().eval()
    ir = torch.rand(1, 1, 33, 35, requires_grad=True)
    vis = torch.rand(1, 1, 33, 35, requires_grad=True)
    m(ir, vis).sum().backward()
    # G3(G1(ir, vis), vis): the output depends on every input pixel of both sources' neighbourhoods
    assert (ir.grad.abs() > 0).float().mean() > 0.9
    assert (vis.grad.abs() > 0).float().mean() > 0.9


def shipped(name):
    spec = get_model(name)
    if not (spec.weights_path().exists() and spec.onnx_path().exists()):
        pytest.skip(f"engines/{name}.pt / .onnx not trained yet (python -m train {name})")
    return spec


def real_pair(sample_images, size=(160, 200)):
    from streamfuse.color import normalize_ir, split_luma
    from streamfuse.io.images import read_image

    h, w = size
    ir = normalize_ir(read_image(sample_images / "ir" / "set08_V000_I02159.png"))[100:100 + h, 200:200 + w]
    vis = split_luma(read_image(sample_images / "vis" / "set08_V000_I02159.png"))[0][100:100 + h, 200:200 + w]
    return np.ascontiguousarray(ir, np.float32), np.ascontiguousarray(vis, np.float32)


def test_shipped_weights_load_and_onnx_matches_torch(sample_images):
    shipped("tlgan")
    ir, vis = real_pair(sample_images, (161, 203))  # odd size on purpose
    a = load_fuser("tlgan", backend="torch").fuse(ir, vis)
    b = load_fuser("tlgan", backend="onnxruntime").fuse(ir, vis)
    assert a.shape == ir.shape
    assert np.abs(a - b).max() <= 1e-4
    # trained: the fused image is neither source
    for src in (ir, vis):
        assert np.corrcoef(a.ravel(), src.ravel())[0, 1] < 0.98

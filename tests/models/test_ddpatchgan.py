"""streamfuse/models/ddpatchgan.py: the DDPatchGAN U-Net generator."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamfuse.backends import load_fuser  # noqa: E402
from streamfuse.models import get_model  # noqa: E402
from streamfuse.models.ddpatchgan import DEPTH, UNetGenerator  # noqa: E402


def test_registry_pads_to_the_unet_multiple():
    assert get_model("ddpatchgan").pad_multiple == 2 ** DEPTH


def test_unet_structure():
    m = UNetGenerator()
    assert len(m.down) == len(m.up) == DEPTH
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs[0].in_channels == 2 and convs[-1].out_channels == 1
    # conv-BN-ReLU everywhere but the 1x1 head
    assert sum(isinstance(b, torch.nn.BatchNorm2d) for b in m.modules()) == len(convs) - 1


def test_odd_size_through_the_fuser_padding():
    m = UNetGenerator().eval()
    fuser = load_fuser("ddpatchgan", backend="torch", module=m)
    rng = np.random.default_rng(0)
    ir, vis = rng.random((479, 641), dtype=np.float32), rng.random((479, 641), dtype=np.float32)
    out = fuser.fuse(ir, vis)
    assert out.shape == (479, 641) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    with torch.no_grad():  # the module itself needs multiples of 8
        assert m(torch.rand(1, 1, 480, 648), torch.rand(1, 1, 480, 648)).shape == (1, 1, 480, 648)


def test_shipped_weights_load_and_onnx_matches_torch(sample_images):
    from streamfuse.color import normalize_ir, split_luma
    from streamfuse.io.images import read_image

    spec = get_model("ddpatchgan")
    if not (spec.weights_path().exists() and spec.onnx_path().exists()):
        pytest.skip("engines/ddpatchgan.pt / .onnx not trained yet (python -m train ddpatchgan)")
    crop = (slice(100, 261), slice(200, 403))  # an odd-sized piece of a real pair
    ir = np.ascontiguousarray(normalize_ir(read_image(sample_images / "ir" / "set08_V000_I02159.png"))[crop], np.float32)
    vis = np.ascontiguousarray(split_luma(read_image(sample_images / "vis" / "set08_V000_I02159.png"))[0][crop], np.float32)
    a = load_fuser("ddpatchgan", backend="torch").fuse(ir, vis)
    b = load_fuser("ddpatchgan", backend="onnxruntime").fuse(ir, vis)
    assert a.shape == ir.shape
    assert np.abs(a - b).max() <= 1e-4
    for src in (ir, vis):
        assert np.corrcoef(a.ravel(), src.ravel())[0, 1] < 0.98

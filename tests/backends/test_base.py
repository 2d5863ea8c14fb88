"""The Fuser base: ``fuse_tensor`` on torch tensors gives what ``fuse`` gives on numpy arrays, for
a device backend (torch) and a host-only one (ONNX Runtime, one round trip), with padding."""
import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.backends import load_fuser
from streamfuse.backends.base import pad_bottom_right
from streamfuse.color import normalize_ir, split_luma
from tests.helpers.clips import kaist_images

torch = pytest.importorskip("torch")


def sample_luma(h: int, w: int, ir_scale: int = 1):
    """The bundled still pair, cropped to h x w (odd sizes exercise the padding), as model inputs."""
    import cv2

    ir, vis = kaist_images()
    ir = normalize_ir(ir[:h, :w])
    if ir_scale > 1:
        ir = cv2.resize(ir, (-(-w // ir_scale), -(-h // ir_scale)), interpolation=cv2.INTER_AREA)
    return ir, split_luma(vis[:h, :w])[0]


@pytest.mark.parametrize("model, variant, backend", [
    ("laplacian", None, "torch"), ("laplacian", None, "onnxruntime"), ("ddcgan", "x4", "onnxruntime")])
def test_fuse_tensor_equals_fuse(model, variant, backend):
    fuser = load_fuser(model, backend=backend, device="cpu", variant=variant)
    ir, vis = sample_luma(203, 317, fuser.ir_scale)  # laplacian pads to 16, ddcgan x4 to 4 with a 1/4 IR
    want = fuser.fuse(ir, vis)
    got = fuser.fuse_tensor(torch.from_numpy(ir)[None, None], torch.from_numpy(vis)[None, None])
    assert got.dtype == torch.float32 and tuple(got.shape) == (1, 1, 203, 317)
    np.testing.assert_allclose(got[0, 0].numpy(), want, atol=1e-6)


def test_fuse_tensor_wants_the_ir_on_the_model_grid():
    fuser = load_fuser("ddcgan", backend="onnxruntime", device="cpu", variant="x4")
    vis = torch.zeros(1, 1, 64, 80)
    with pytest.raises(StreamfuseError, match=r"takes the IR at \(16, 20\).*got \(64, 80\)"):
        fuser.fuse_tensor(torch.zeros(1, 1, 64, 80), vis)
    with pytest.raises(StreamfuseError, match="N x 1 x H x W"):
        fuser.fuse_tensor(torch.zeros(16, 20), vis)


@pytest.mark.parametrize("shape, to", [((2, 5, 7), (8, 16)), ((1, 1, 3, 2), (16, 16))])  # reflect; too small: edge
def test_one_padding_for_numpy_and_torch(shape, to):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    want = pad_bottom_right(x, *to)
    assert want.shape[-2:] == to and np.array_equal(want[..., :shape[-2], :shape[-1]], x)
    t = torch.from_numpy(x if x.ndim == 4 else x[:, None])
    got = pad_bottom_right(t, *to).numpy()
    np.testing.assert_array_equal(got.reshape(want.shape), want)

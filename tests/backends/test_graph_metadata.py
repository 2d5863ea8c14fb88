"""A graph file alone is enough: the backends read its metadata_props (model, variant, IR scale, pad
multiple) and feed it accordingly, whatever the file is called and whatever model was asked for."""
import shutil

import cv2
import numpy as np
import pytest

from streamfuse import SAMPLE_DIR
from streamfuse.backends import available_backends, load_fuser
from streamfuse.color import normalize_ir, split_luma
from streamfuse.io.images import read_image
from streamfuse.models import get_model


def sample_pair(vis_hw=(250, 321), ir_scale=4):
    """The bundled still pair shrunk to an odd size (so padding matters), the IR at 1/ir_scale."""
    ir = read_image(SAMPLE_DIR / "images/ir/set08_V000_I02159.png")
    vis = read_image(SAMPLE_DIR / "images/vis/set08_V000_I02159.png")
    vis_y = split_luma(cv2.resize(vis, vis_hw[::-1], interpolation=cv2.INTER_AREA))[0]
    ir_small = cv2.resize(ir, (-(-vis_hw[1] // ir_scale), -(-vis_hw[0] // ir_scale)), interpolation=cv2.INTER_AREA)
    return normalize_ir(ir_small), vis_y


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_renamed_graph_runs_as_what_its_metadata_says(backend, tmp_path):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed")
    copy = tmp_path / "any-name.onnx"
    shutil.copy(get_model("ddcgan").onnx_path("x4"), copy)
    ir, vis = sample_pair()
    # asked for the default model (res2netfuse), given DDcGAN's graph: it runs as DDcGAN x4
    fuser = load_fuser("res2netfuse", backend=backend, device="cpu", onnx_path=copy)
    assert (fuser.spec.name, fuser.variant, fuser.ir_scale, fuser.spec.pad_multiple) == ("ddcgan", "x4", 4, 4)
    assert fuser.ir_shape(vis.shape) == ir.shape
    shipped = load_fuser("ddcgan", backend=backend, device="cpu")
    out = fuser.fuse(ir, vis)
    assert out.shape == vis.shape
    np.testing.assert_array_equal(out, shipped.fuse(ir, vis))


def test_onnxruntime_runs_the_wide_full_resolution_graphs_without_its_cpu_arena(tmp_path):
    """The arena keeps its doubling chunks: DDcGAN at 1280x1024 peaks at 11.3 GB with it, 3.8 GB without."""
    if "onnxruntime" not in available_backends():
        pytest.skip("onnxruntime is not installed")
    assert get_model("ddcgan").cpu_arena is False and get_model("pyrfuse").cpu_arena is True
    arena = lambda fuser: fuser.session.get_session_options().enable_cpu_mem_arena  # noqa: E731
    assert arena(load_fuser("pyrfuse", backend="onnxruntime", device="cpu")) is True
    assert arena(load_fuser("ddcgan", backend="onnxruntime", device="cpu")) is False
    copy = tmp_path / "any-name.onnx"
    shutil.copy(get_model("ddcgan").onnx_path("x4"), copy)
    assert arena(load_fuser("pyrfuse", backend="onnxruntime", device="cpu", onnx_path=copy)) is False

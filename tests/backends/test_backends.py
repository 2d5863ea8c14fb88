"""Every CPU backend runs the shipped Res2NetFuse and agrees with the others on the bundled real pairs."""
import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.backends import available_backends, load_fuser
from streamfuse.color import normalize_ir, split_luma
from tests.helpers.clips import kaist_images, m3svd_frames

STEMS = ["kaist", "kaist_odd", "m3svd"]  # the bundled pairs: 640x512, an odd 472x371 crop, 320x240


def real_pair(stem):
    if stem == "m3svd":
        irs, viss = m3svd_frames(1, size=(320, 240))
        ir, vis = irs[0], viss[0]
    else:
        ir, vis = kaist_images()
        if stem == "kaist_odd":
            ir, vis = ir[50:421, 60:532], vis[50:421, 60:532]
    return normalize_ir(ir), split_luma(vis)[0]


@pytest.mark.parametrize("variant", ["l1", "mean"])
def test_onnxruntime_torch_openvino_agree(variant):
    pytest.importorskip("torch")
    backends = [b for b in ("onnxruntime", "torch", "openvino") if b in available_backends()]
    fusers = {b: load_fuser("res2netfuse", backend=b, device="cpu", variant=variant) for b in backends}
    for stem in STEMS:
        ir, vis = real_pair(stem)
        outs = {b: f.fuse(ir, vis) for b, f in fusers.items()}
        ref = outs["onnxruntime"]
        assert ref.shape == vis.shape and ref.dtype == np.float32
        for b, out in outs.items():
            assert np.abs(out - ref).max() <= 1e-4, f"{b} vs onnxruntime on {stem}: {np.abs(out - ref).max():.2e}"


def test_batch_equals_single():
    f = load_fuser("res2netfuse", backend="onnxruntime", device="cpu")
    ir, vis = real_pair("kaist")
    batch = f.fuse(np.stack([ir, ir[::-1]]), np.stack([vis, vis[::-1]]))
    assert np.abs(batch[0] - f.fuse(ir, vis)).max() <= 1e-5
    assert np.abs(batch[1] - f.fuse(ir[::-1], vis[::-1])).max() <= 1e-5


def test_auto_picks_an_available_cpu_backend():
    f = load_fuser("res2netfuse", backend="auto", device="cpu")
    assert f.backend in available_backends() and f.device == "cpu"


def test_ir_of_another_size_is_resized_with_a_warning(caplog):
    f = load_fuser("res2netfuse", backend="onnxruntime", device="cpu")
    out = f.fuse(np.random.rand(30, 40).astype(np.float32), np.random.rand(60, 80).astype(np.float32))
    assert out.shape == (60, 80)
    assert "resized to 80x60" in caplog.text


def test_unknown_backend_suggests():
    with pytest.raises(StreamfuseError, match="did you mean 'onnxruntime'"):
        load_fuser("res2netfuse", backend="onnxruntim")


def test_unknown_device():
    with pytest.raises(StreamfuseError, match="unknown device 'tpu'"):
        load_fuser("res2netfuse", backend="onnxruntime", device="tpu")


def test_an_option_the_backend_does_not_take_is_one_line(tmp_path):
    with pytest.raises(StreamfuseError, match="backend 'torch' does not take the option 'onnx_path' .--onnx.; "
                                              "backends that do: onnxruntime, openvino, tensorrt"):
        load_fuser("res2netfuse", backend="torch", device="cpu", onnx_path=tmp_path / "g.onnx")
    with pytest.raises(StreamfuseError, match="backend 'onnxruntime' does not take the option 'module'"):
        load_fuser("res2netfuse", backend="onnxruntime", device="cpu", module=None)


def test_run_with_onnx_on_the_torch_backend_is_one_line(tmp_path):
    import subprocess
    import sys

    from streamfuse import REPO_DIR, SAMPLE_DIR
    from streamfuse.models import get_model

    graph = get_model("average").onnx_path()
    r = subprocess.run([sys.executable, str(REPO_DIR / "run.py"), "run", "--ir", str(SAMPLE_DIR / "ir.mp4"), "--vis",
                        str(SAMPLE_DIR / "vis.mp4"), "-o", str(tmp_path / "o.mp4"), "--onnx", str(graph),
                        "--backend", "torch"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: backend 'torch' does not take the option 'onnx_path' (--onnx); "
                                "backends that do: onnxruntime, openvino, tensorrt")


def test_auto_picks_a_backend_that_takes_the_options():
    from streamfuse.models import get_model

    fuser = load_fuser("average", backend="auto", device="cpu", onnx_path=get_model("average").onnx_path())
    assert fuser.backend in ("onnxruntime", "openvino")

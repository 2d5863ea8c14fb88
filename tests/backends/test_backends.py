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


@pytest.mark.parametrize("backend", ["auto", "onnxruntime", "openvino", "torch", "tensorrt"])
def test_fp8_and_int8_are_refused_by_every_backend_before_loading(backend):
    with pytest.raises(StreamfuseError, match=r"^precision 'fp8': expected one of fp32, fp16, int8 \(onnxruntime fp32; "):
        load_fuser("max", backend=backend, device="cpu", precision="fp8")
    with pytest.raises(StreamfuseError, match=r"^precision 'int8': (no backend|backend '\w+' runs fp32( or fp16)?), not int8"):
        load_fuser("max", backend=backend, device="cpu", precision="int8")


def test_fp16_where_each_cpu_backend_runs_it():
    from streamfuse.backends import PRECISIONS

    with pytest.raises(StreamfuseError, match="precision 'fp16': backend 'onnxruntime' runs fp32, not fp16"):
        load_fuser("pyrfuse", backend="onnxruntime", device="cpu", precision="fp16")
    assert PRECISIONS["torch"] == ("fp32", "fp16")
    ir, vis = real_pair("m3svd")
    if "torch" in available_backends():  # torch runs its module in half precision on the CPU
        import torch

        half = load_fuser("pyrfuse", backend="torch", device="cpu", precision="fp16")
        full = load_fuser("pyrfuse", backend="torch", device="cpu", precision="fp32")
        assert next(half.module.parameters()).dtype == torch.float16
        mse = np.mean((half.fuse(ir, vis) - full.fuse(ir, vis)) ** 2)
        assert 10 * np.log10(1 / mse) > 40  # fp16 rounding (the export FP16 check's bar), not another result
    auto = load_fuser("pyrfuse", backend="auto", device="cpu", precision="fp16")
    assert auto.backend in ("openvino", "torch") and auto.precision == "fp16"  # never onnxruntime quietly in fp32


def test_openvino_fp16_runs_only_on_a_cpu_with_fp16_arithmetic():
    ov = pytest.importorskip("openvino", reason="OpenVINO not installed")
    has_fp16 = "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if has_fp16:
        fuser = load_fuser("pyrfuse", backend="openvino", device="cpu", precision="fp16")
        assert fuser.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f16"
    else:
        with pytest.raises(StreamfuseError, match="this CPU has no FP16 arithmetic for OpenVINO"):
            load_fuser("pyrfuse", backend="openvino", device="cpu", precision="fp16")

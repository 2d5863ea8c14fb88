"""The GPU-resident stage against the CPU path (cv2.remap / cv2.resize + streamfuse.color + Fuser.fuse),
on the bundled real frames (streamfuse/data/sample). It runs on the CPU with torch here; the same tests run on CUDA where there is a GPU."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamfuse.backends.pytorch import TorchFuser  # noqa: E402
from streamfuse.color import merge_luma, normalize_ir, split_luma, to_gray  # noqa: E402
from streamfuse.geometry import Registration  # noqa: E402
from streamfuse.gpu import GpuFusion  # noqa: E402
from streamfuse.models import get_model  # noqa: E402
from tests.helpers.clips import kaist_images, m3svd_frames  # noqa: E402

def shrunk(ir, vis, shrink: int = 1):
    """Every ``shrink``-th pixel, to keep the torch-on-CPU runs short."""
    return np.ascontiguousarray(ir[::shrink, ::shrink]), np.ascontiguousarray(vis[::shrink, ::shrink])


def m3svd_pair(index: int, shrink: int = 1):
    """Frame ``index`` of the bundled M3SVD sample: 640x480, colour visible."""
    irs, viss = m3svd_frames(index + 1, size=(640, 480))
    return shrunk(irs[index], viss[index], shrink)


@pytest.fixture(scope="module")
def fuser():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    spec = get_model("res2netfuse")
    return TorchFuser(spec, "l1", module=spec.build("l1", load_weights=False))


def rig(w: int, h: int, output_size=None) -> dict:
    """A real-looking IR -> VIS homography: 2 degrees of roll, 4 % scale, a shift and a little perspective."""
    a = np.deg2rad(2.0)
    hom = [[1.04 * np.cos(a), -1.04 * np.sin(a), 12.0], [1.04 * np.sin(a), 1.04 * np.cos(a), -7.0], [1e-5, 0.0, 1.0]]
    return {"homography": hom, "ir_size": [w, h], "vis_size": [w, h], "output_size": output_size}


def cpu_path(fuser, calib: dict, ir, vis, agc=(1.0, 99.0)):
    """What streamfuse.pipeline does per pair on the CPU."""
    reg = Registration.from_dict(calib) if calib else Registration.identity()
    out_w, out_h = reg.output_wh((vis.shape[1], vis.shape[0]))
    reg.prepare(ir.shape[:2], vis.shape[:2], ir_out_hw=fuser.ir_shape((out_h, out_w)))
    vis_y, crcb = split_luma(reg.warp_vis(vis))
    return merge_luma(fuser.fuse(normalize_ir(reg.warp_ir(ir), agc), vis_y), crcb)


def assert_close(out, ref, mean_max: float, abs_max: int):
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() <= mean_max and diff.max() <= abs_max, (diff.mean(), diff.max())


def test_homography_and_resize_match_the_cv2_path(fuser):
    ir, vis = m3svd_pair(0)  # 640x480 colour
    calib = rig(640, 480, output_size=[320, 240])
    ref = cpu_path(fuser, calib, ir, vis)
    out = GpuFusion(fuser, Registration.from_dict(calib), device="cpu").process(ir, vis)
    assert out.shape == (240, 320, 3)
    assert_close(out, ref, mean_max=0.1, abs_max=3)
    assert np.abs(out.astype(int) - 128).mean() > 10  # a real picture, not a flat frame


def test_gray_visible_and_16_bit_ir(fuser):
    ir8, vis = shrunk(*kaist_images(), shrink=2)
    vis = to_gray(vis)  # 320x256, gray visible
    rng = np.random.default_rng(0)
    ir16 = (ir8.astype(np.uint16) * 257 + rng.integers(0, 200, ir8.shape)).astype(np.uint16)  # radiometric-like
    assert vis.ndim == 2
    ref = cpu_path(fuser, None, ir16, vis)
    out = GpuFusion(fuser, device="cpu").process(ir16, vis)
    assert out.ndim == 2
    assert_close(out, ref, mean_max=0.05, abs_max=2)


def test_run_overlaps_in_order_and_follows_size_changes(fuser):
    small = [m3svd_pair(i, shrink=4) for i in range(2)]
    larger = m3svd_pair(2, shrink=2)
    stage = GpuFusion(fuser, device="cpu")
    singles = [stage.process(ir, vis) for ir, vis in small + [larger]]
    streamed = list(GpuFusion(fuser, device="cpu").run(small + [larger]))
    assert [s.shape for s in streamed] == [(120, 160, 3), (120, 160, 3), (240, 320, 3)]
    for a, b in zip(streamed, singles):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(streamed[0], streamed[1])  # consecutive frames differ: no stale buffer reuse


def test_host_only_backend_round_trip(tmp_path, fuser):
    from streamfuse.backends.onnxruntime import OnnxRuntimeFuser
    from streamfuse.export.onnx import export_onnx

    spec = get_model("res2netfuse")
    path = export_onnx("res2netfuse", "l1", out=tmp_path / "r.onnx", module=fuser.module)
    ort_fuser = OnnxRuntimeFuser(spec, "l1", threads=1, onnx_path=path)
    ir, vis = shrunk(*kaist_images(), shrink=3)  # 214x171: odd size
    ref = cpu_path(ort_fuser, None, ir, vis)
    assert_close(GpuFusion(ort_fuser, device="cpu").process(ir, vis), ref, mean_max=0.02, abs_max=1)


@pytest.mark.gpu
def test_on_cuda_matches_the_cpu_path(fuser):
    spec = get_model("res2netfuse")
    cuda_fuser = TorchFuser(spec, "l1", device="cuda", module=fuser.module)
    ir, vis = m3svd_pair(0)
    calib = rig(640, 480)
    ref = cpu_path(fuser, calib, ir, vis)
    stage = GpuFusion(cuda_fuser, Registration.from_dict(calib))
    assert stage.device.type == "cuda"
    assert_close(stage.process(ir, vis), ref, mean_max=0.1, abs_max=3)
    outs = list(stage.run([(ir, vis)] * 4))
    assert all(np.array_equal(o, outs[0]) for o in outs)


@pytest.mark.gpu
def test_tensorrt_pipeline_end_to_end_on_gpu(tmp_path):
    pytest.importorskip("tensorrt")
    from streamfuse.backends.tensorrt import TensorRTFuser

    spec = get_model("res2netfuse")
    if not spec.onnx_path().exists():
        pytest.skip("engines/res2netfuse.onnx not shipped yet")
    reference = TorchFuser(spec, "l1")
    trt = TensorRTFuser(spec, "l1", precision="fp16", cache_dir=tmp_path)
    ir, vis = m3svd_pair(0)
    ref = cpu_path(reference, None, ir, vis)
    outs = list(GpuFusion(trt).run([(ir, vis)] * 3))
    for out in outs:
        assert_close(out, ref, mean_max=1.0, abs_max=12)

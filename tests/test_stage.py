"""The per-pair stage: GpuStage (torch, run on the CPU here; on CUDA where there is a GPU) against
CpuStage (cv2 + streamfuse.color + Fuser.fuse) on the bundled real sample, for identity, resize and
homography registration, 8- and 16-bit IR, colour and gray visible frames."""
import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.geometry import Registration
from streamfuse.models import get_model
from streamfuse.stage import CpuStage, GpuStage, make_stage
from tests.helpers.clips import kaist_images, m3svd_frames

torch = pytest.importorskip("torch")

from streamfuse.backends.pytorch import TorchFuser  # noqa: E402

def still_pair():
    """The bundled KAIST still (640x512, colour visible)."""
    return kaist_images()


def video_pairs(n: int):
    """The first ``n`` frames of the bundled M3SVD clips (640x480, IR gray, visible colour)."""
    return list(zip(*m3svd_frames(n, size=(640, 480))))


@pytest.fixture(scope="module")
def average():
    """The pixel-average baseline as a torch module: every output pixel moves with both inputs, and
    smoothly (a max-selection model would turn a one-level warp rounding into a large jump)."""
    torch.set_num_threads(1)
    return TorchFuser(get_model("average"), "default")


def untrained(model: str, variant: str) -> TorchFuser:
    torch.manual_seed(0)
    spec = get_model(model)
    return TorchFuser(spec, variant, module=spec.build(variant, load_weights=False))


@pytest.fixture(scope="module")
def res2netfuse():
    return untrained("res2netfuse", "l1")


def rig(w: int, h: int, output_size=None) -> Registration:
    """A real-looking IR -> VIS homography: 2 degrees of roll, 4 % scale, a shift and a little perspective."""
    a = np.deg2rad(2.0)
    hom = [[1.04 * np.cos(a), -1.04 * np.sin(a), 12.0], [1.04 * np.sin(a), 1.04 * np.cos(a), -7.0], [1e-5, 0.0, 1.0]]
    return Registration.from_dict({"homography": hom, "ir_size": [w, h], "vis_size": [w, h], "output_size": output_size})


def to_16bit(ir8: np.ndarray) -> np.ndarray:
    """A radiometric-like 16-bit frame from a real 8-bit one."""
    noise = np.random.default_rng(0).integers(0, 200, ir8.shape)
    return (ir8.astype(np.uint16) * 257 + noise).astype(np.uint16)


def assert_close(out, ref, mean_max: float, abs_max: int):
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() <= mean_max and diff.max() <= abs_max, (diff.mean(), diff.max())


def compare(fuser, registration_factory, ir, vis, mean_max, abs_max):
    ref = CpuStage(fuser, registration_factory()).process(ir, vis).fused
    out = GpuStage(fuser, registration_factory(), device="cpu").process(ir, vis).fused
    assert_close(out, ref, mean_max, abs_max)
    assert np.abs(out.astype(int) - 128).mean() > 10 and out.std() > 10  # a real picture, not a flat frame
    return out


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("colour", [True, False])
def test_identity_registration(average, depth, colour):
    ir, vis = still_pair()
    ir = to_16bit(ir) if depth == 16 else ir
    vis = vis if colour else vis[..., 1].copy()
    out = compare(average, Registration.identity, ir, vis, mean_max=0, abs_max=0)  # no warp: the same pixels
    assert out.shape == vis.shape


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("colour", [True, False])
def test_resize_registration(average, depth, colour):
    """A 320x240 IR core next to the 640x480 camera, no calibration file: the IR is resized onto the grid."""
    import cv2

    ir, vis = video_pairs(1)[0]
    ir = cv2.resize(ir, (320, 240), interpolation=cv2.INTER_AREA)
    ir = to_16bit(ir) if depth == 16 else ir
    vis = vis if colour else vis[..., 1].copy()
    stage = CpuStage(average)
    stage.process(ir, vis)
    assert stage.registration.ir_mode == "resize"
    compare(average, Registration.identity, ir, vis, mean_max=0.05, abs_max=2)


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("colour", [True, False])
def test_homography_registration_with_output_size(average, depth, colour):
    ir, vis = video_pairs(1)[0]
    ir = to_16bit(ir) if depth == 16 else ir
    vis = vis if colour else vis[..., 1].copy()
    out = compare(average, lambda: rig(640, 480, output_size=[320, 240]), ir, vis, mean_max=0.1, abs_max=3)
    assert out.shape[:2] == (240, 320)


@pytest.mark.parametrize("model, variant", [("res2netfuse", "l1"), ("ddcgan", "x4"), ("ddpatchgan", "default")])
def test_models_with_padding_and_a_smaller_ir_grid(model, variant):
    """Real networks on an odd-sized crop with a real homography: padding to the model's multiple
    (DDcGAN 4, DDPatchGAN 8) and the 1/4 IR grid of DDcGAN x4. Untrained weights, except DDcGAN's:
    its generator normalises each image by its own statistics, which on random weights amplifies
    the last-bit differences of the two stages' warps into noise (mean 0.76 levels; trained: 0.08)."""
    ir, vis = still_pair()
    ir, vis = np.ascontiguousarray(ir[::4, ::4][:101, :141]), np.ascontiguousarray(vis[::4, ::4][:101, :141])
    spec = get_model(model)
    fuser = TorchFuser(spec, variant) if model == "ddcgan" else untrained(model, variant)
    ref = CpuStage(fuser, rig(141, 101)).process(ir, vis).fused
    out = GpuStage(fuser, rig(141, 101), device="cpu").process(ir, vis).fused
    assert_close(out, ref, mean_max=0.1, abs_max=3)
    assert out.std() > 5  # untrained weights, but still a picture


def test_host_only_backend_round_trip(tmp_path, average):
    """ONNX Runtime has no device tensors: fuse_tensor makes one round trip, with the same result."""
    from streamfuse.backends.onnxruntime import OnnxRuntimeFuser

    ort = OnnxRuntimeFuser(get_model("average"), "default", threads=1)
    ir, vis = still_pair()
    ir, vis = np.ascontiguousarray(ir[1::2, 1::2][:211, :301]), np.ascontiguousarray(vis[1::2, 1::2][:211, :301])
    ref = CpuStage(ort).process(ir, vis).fused
    assert_close(GpuStage(ort, device="cpu").process(ir, vis).fused, ref, mean_max=0.02, abs_max=1)


def test_kept_inputs_match_the_cpu_stage(average):
    ir, vis = video_pairs(1)[0]
    cpu = CpuStage(average, rig(640, 480)).process(ir, vis)
    gpu = GpuStage(average, rig(640, 480), keep_inputs=True, device="cpu").process(ir, vis)
    assert GpuStage(average, device="cpu").process(ir, vis).ir is None  # not downloaded unless asked
    assert gpu.ir.shape == cpu.ir.shape and gpu.ir.dtype == np.float32
    assert np.abs(gpu.ir - cpu.ir).mean() <= 0.1 / 255 and np.abs(gpu.ir - cpu.ir).max() <= 3 / 255
    np.testing.assert_array_equal(gpu.vis, cpu.vis)
    assert set(cpu.seconds) == {"prepare", "model", "colour"} and set(gpu.seconds) == {"model"}


def test_frame_sizes_may_change_between_pairs(average):
    (ir, vis), (ir2, vis2) = video_pairs(2)
    small = (np.ascontiguousarray(ir[::4, ::4]), np.ascontiguousarray(vis[::4, ::4]))
    stage = GpuStage(average, device="cpu")
    outs = [stage.process(*p).fused for p in (small, (ir, vis), (ir2, vis2), small)]
    assert [o.shape for o in outs] == [(120, 160, 3), (480, 640, 3), (480, 640, 3), (120, 160, 3)]
    np.testing.assert_array_equal(outs[0], outs[3])
    assert not np.array_equal(outs[1], outs[2])  # consecutive frames differ: no stale buffer reuse
    assert stage.frames == 4


def test_model_inputs_are_what_the_model_takes():
    from streamfuse.backends import load_fuser

    ddcgan = load_fuser("ddcgan", backend="onnxruntime", variant="x4")
    ir, vis = still_pair()
    ir_f, vis_y = CpuStage(ddcgan).model_inputs(ir, vis)
    assert ir_f.shape == (128, 160) and vis_y.shape == (512, 640)
    assert ir_f.dtype == vis_y.dtype == np.float32 and 0 <= ir_f.min() and ir_f.max() <= 1


def test_make_stage_picks_by_device(average):
    assert isinstance(make_stage(average), CpuStage)
    forced = make_stage(average, kind="gpu")
    assert isinstance(forced, GpuStage) and forced.device.type == "cpu"
    with pytest.raises(StreamfuseError, match="stage 'tpu'"):
        make_stage(average, kind="tpu")


def test_bad_frames_are_one_line(average):
    ir, vis = still_pair()
    with pytest.raises(StreamfuseError, match="visible frame must be"):
        CpuStage(average).process(ir, vis.astype(np.float32))
    with pytest.raises(StreamfuseError, match="IR frame must be"):
        GpuStage(average, device="cpu").process(ir.astype(np.int32), vis)


@pytest.mark.gpu
def test_on_cuda_matches_the_cpu_stage(res2netfuse):
    cuda = TorchFuser(get_model("res2netfuse"), "l1", device="cuda", module=res2netfuse.module)
    ir, vis = video_pairs(1)[0]
    ref = CpuStage(res2netfuse, rig(640, 480)).process(ir, vis).fused
    stage = make_stage(cuda, rig(640, 480))
    assert isinstance(stage, GpuStage) and stage.device.type == "cuda"
    outs = [stage.process(ir, vis).fused for _ in range(4)]
    assert_close(outs[0], ref, mean_max=0.1, abs_max=3)
    assert all(np.array_equal(o, outs[0]) for o in outs)


@pytest.mark.gpu
def test_tensorrt_through_the_gpu_stage(tmp_path):
    pytest.importorskip("tensorrt")
    from streamfuse.backends.tensorrt import TensorRTFuser

    spec = get_model("res2netfuse")
    if not spec.onnx_path().exists():
        pytest.skip("engines/res2netfuse.onnx not shipped")
    reference = TorchFuser(spec, "l1")
    trt = TensorRTFuser(spec, "l1", precision="fp16", cache_dir=tmp_path)
    ir, vis = video_pairs(1)[0]
    ref = CpuStage(reference).process(ir, vis).fused
    stage = make_stage(trt)
    for _ in range(3):
        assert_close(stage.process(ir, vis).fused, ref, mean_max=1.0, abs_max=12)

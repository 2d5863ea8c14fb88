"""Registration: the calibration file (format, bad input) and the per-frame warps."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamfuse import REPO_DIR, SAMPLE_DIR, StreamfuseError
from streamfuse.geometry import Registration, apply_homography, scale_matrix

H = np.array([[1.9, 0.05, 10.0], [-0.03, 2.05, -7.0], [1e-5, 0.0, 1.0]])  # 640x512 IR -> 1280x1024 visible


def real_ir() -> np.ndarray:
    path = SAMPLE_DIR / "images" / "ir" / "set08_V000_I02159.png"  # the bundled KAIST still
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def write(tmp_path, data, name="rig.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def valid() -> dict:
    return {"homography": H.tolist(), "ir_size": [640, 512], "vis_size": [1280, 1024], "time_offset_ms": -33.3}


def test_identity_same_size_is_a_no_op_and_other_sizes_a_plain_resize():
    ir = real_ir()
    reg = Registration.identity().prepare(ir.shape, (512, 640))
    assert reg.ir_mode == "identity" and reg.warp_ir(ir) is ir
    reg = Registration.identity().prepare(ir.shape, (1024, 1280))
    assert reg.ir_mode == "resize"
    assert np.array_equal(reg.warp_ir(ir), cv2.resize(ir, (1280, 1024), interpolation=cv2.INTER_LINEAR))


def test_shipped_identity_example_loads():
    reg = Registration.from_file(REPO_DIR / "calibration" / "identity.yaml").prepare((256, 320), (480, 640))
    assert reg.ir_mode == "resize" and reg.time_offset_ms == 0


def test_homography_remap_matches_warp_perspective_on_a_real_frame(tmp_path):
    ir = real_ir()
    reg = Registration.from_file(write(tmp_path, valid())).prepare(ir.shape, (1024, 1280))
    assert reg.ir_mode == "remap" and reg.time_offset_ms == pytest.approx(-33.3)
    got = reg.warp_ir(ir).astype(np.float32)
    want = cv2.warpPerspective(ir, H, (1280, 1024)).astype(np.float32)
    inner = (slice(60, -60), slice(60, -60))
    assert np.abs(got - want)[inner].mean() < 0.5  # fixed-point maps: sub-grey-level differences only


def test_crop_output_size_and_model_grid_put_a_point_where_the_matrices_say(tmp_path):
    data = {**valid(), "crop": [100, 50, 1000, 800], "output_size": [500, 400]}
    reg = Registration.from_file(write(tmp_path, data)).prepare((512, 640), (1024, 1280), ir_out_hw=(100, 125))
    ir = np.zeros((512, 640), np.float32)
    p_ir = np.array([300.0, 200.0])
    ir[200, 300] = 1.0
    ir = cv2.GaussianBlur(ir, (0, 0), 3)  # a blob, so interpolation keeps its centre
    warped = reg.warp_ir(ir)
    assert warped.shape == (100, 125)
    # expected: IR -> visible (H) -> crop -> output 500x400 -> model grid 125x100
    p_vis = apply_homography(H, [p_ir])[0]
    p_out = apply_homography(scale_matrix((1000, 800), (500, 400)), [p_vis - [100, 50]])[0]
    p_model = apply_homography(scale_matrix((500, 400), (125, 100)), [p_out])[0]
    y, x = np.unravel_index(np.argmax(warped), warped.shape)
    assert abs(x - p_model[0]) <= 1 and abs(y - p_model[1]) <= 1
    vis = np.random.default_rng(0).integers(0, 255, (1024, 1280, 3), np.uint8)
    assert np.array_equal(reg.warp_vis(vis), cv2.resize(vis[50:850, 100:1100], (500, 400), interpolation=cv2.INTER_AREA))


def test_sampling_grid_reproduces_the_remap_with_torch_grid_sample(tmp_path):
    torch = pytest.importorskip("torch")
    ir = real_ir().astype(np.float32)
    reg = Registration.from_file(write(tmp_path, valid())).prepare(ir.shape, (1024, 1280))
    grid = torch.from_numpy(reg.sampling_grid())[None]
    got = torch.nn.functional.grid_sample(torch.from_numpy(ir)[None, None], grid, align_corners=False)[0, 0].numpy()
    mx, my = reg.float_maps()
    want = cv2.remap(ir, mx, my, cv2.INTER_LINEAR)
    assert np.abs(got - want)[60:-60, 60:-60].max() < 0.05


def test_save_and_load_round_trip(tmp_path):
    reg = Registration(H, (640, 512), (1280, 1024), (640, 512), (0, 0, 1280, 1000), 12.5, {"method": "points"})
    back = Registration.from_file(reg.save(tmp_path / "out" / "rig.yaml"))
    assert np.allclose(back.homography, H) and back.crop == (0, 0, 1280, 1000) and back.output_size == (640, 512)
    assert back.metadata["method"] == "points" and "date" in back.metadata and back.time_offset_ms == 12.5


@pytest.mark.parametrize("change, message", [
    ({"homograpy": H.tolist()}, "unknown key 'homograpy'; did you mean 'homography'?"),
    ({"homography": [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}, "key 'homography' is not invertible"),
    ({"homography": [[1, 0], [0, 1]]}, "key 'homography' must be a 3x3 list"),
    ({"ir_size": [640]}, "key 'ir_size' must be [width, height]"),
    ({"crop": [1200, 0, 200, 100]}, "key 'crop' [1200, 0, 200, 100] reaches outside vis_size"),
    ({"time_offset_ms": "soon"}, "key 'time_offset_ms' must be a finite number"),
    ({"ir_size": None, "vis_size": None}, "'ir_size' and 'vis_size' are required"),
    ({"homography": [["1", "0", "0"], ["0", "1", "0"], ["0", "0", "1"]]},
     "key 'homography' must be a 3x3 list of finite numbers, got [['1', '0', '0']"),
    ({"homography": [[1, 0, float("nan")], [0, 1, 0], [0, 0, 1]]}, "key 'homography' must be a 3x3 list of finite numbers"),
    ({"homography": [[1, 0, float("inf")], [0, 1, 0], [0, 0, 1]]}, "key 'homography' must be a 3x3 list of finite numbers"),
    ({"homography": [[True, 0, 0], [0, 1, 0], [0, 0, 1]]}, "key 'homography' must be a 3x3 list of finite numbers"),
    ({"homography": [1, 0, 0, 0, 1, 0, 0, 0, 1]}, "key 'homography' must be a 3x3 list of finite numbers"),
    ({"homography": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]}, "key 'homography' must be a 3x3 list"),
    ({"time_offset_ms": float("nan")}, "key 'time_offset_ms' must be a finite number"),
    ({"vis_size": [1280, 10**30]}, "key 'vis_size' must be [width, height] (two integers from 1 to 65536)"),
])
def test_bad_calibration_files_name_the_file_and_key(tmp_path, change, message):
    data = {**valid(), **change}
    if "homograpy" in change:
        del data["homography"]
    path = write(tmp_path, data)
    with pytest.raises(StreamfuseError) as err:
        Registration.from_file(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_sizes_that_contradict_the_frames_are_one_clear_line(tmp_path):
    path = write(tmp_path, valid())
    with pytest.raises(StreamfuseError, match=r"calibrated for IR frames of 640x512, but the IR stream is 320x256"):
        Registration.from_file(path).prepare((256, 320), (1024, 1280))


def test_empty_and_unreadable_calibration_files_are_one_line(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(StreamfuseError, match=rf"^{empty}: empty calibration file \(expected the keys homography, "):
        Registration.from_file(empty)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("homography: caf\xe9".encode("latin-1"))
    with pytest.raises(StreamfuseError, match=rf"^{latin}: cannot read the calibration file \(not UTF-8 text\)$"):
        Registration.from_file(latin)
    with pytest.raises(StreamfuseError, match=rf"^{tmp_path}/list.yaml: expected a mapping of keys .*, got list$"):
        Registration.from_file(write(tmp_path, [1, 2], name="list.yaml"))


def test_ir_coverage_is_measured_and_a_registration_mostly_off_the_frame_warned(tmp_path, caplog):
    same = {"ir_size": [640, 512], "vis_size": [640, 512]}
    shift = lambda dx: [[1, 0, dx], [0, 1, 0], [0, 0, 1]]  # noqa: E731
    assert Registration.from_dict({"homography": shift(0), **same}).ir_coverage((640, 512), (640, 512)) == 1.0
    half = Registration.from_dict({"homography": shift(320), **same}).ir_coverage((640, 512), (640, 512))
    assert half == pytest.approx(0.5, abs=1 / 64)  # the sample grid's resolution
    assert Registration.from_dict({"homography": shift(5000), **same}).ir_coverage((640, 512), (640, 512)) == 0.0
    caplog.clear()
    Registration.from_file(write(tmp_path, valid()))  # H: the 640x512 IR onto most of a 1280x1024 frame
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    path = write(tmp_path, {"homography": shift(480), **same}, name="off.yaml")
    Registration.from_file(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{path}: the IR image covers only 25% of the output frame (the homography maps most of it "
                        "outside the visible frame; check the calibration)"]


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("homography: [1, 2\n  x: :")
    with pytest.raises(StreamfuseError, match="not valid YAML"):
        Registration.from_file(bad)
    with pytest.raises(StreamfuseError, match="calibration file not found"):
        Registration.from_file(tmp_path / "none.yaml")


def test_much_smaller_model_grid_is_area_averaged_not_aliased(tmp_path):
    """DDcGAN-style 1/4 IR grid: a fine stripe pattern must average to grey, not alias into stripes."""
    stripes = np.tile(np.array([0, 255], np.uint8), (512, 320))  # 1-px vertical stripes, 640x512
    reg = Registration.from_file(write(tmp_path, valid())).prepare((512, 640), (1024, 1280), ir_out_hw=(128, 160))
    small = reg.warp_ir(stripes).astype(np.float32)[10:-10, 10:-10]
    assert small.shape == (108, 140) and abs(small.mean() - 127.5) < 10 and small.std() < 20


# ---------------------------------------------------------------- property-based: any bad file is one line
NUMBERS = st.integers() | st.floats() | st.booleans() | st.text(max_size=6) | st.none()
SIZES = st.lists(st.integers(-5, 1 << 17) | NUMBERS, max_size=3)
CALIBRATIONS = st.fixed_dictionaries({}, optional={
    "homography": st.lists(st.lists(NUMBERS, min_size=0, max_size=4), max_size=4) | NUMBERS
                  | st.just(H.tolist()) | st.just(np.eye(3).tolist()),
    "ir_size": SIZES | st.just([640, 512]), "vis_size": SIZES | st.just([1280, 1024]),
    "output_size": SIZES, "crop": st.lists(st.integers(-5, 2000) | NUMBERS, max_size=5),
    "time_offset_ms": NUMBERS, "metadata": NUMBERS | st.dictionaries(st.text(max_size=5), NUMBERS, max_size=2),
    "homograpy": NUMBERS})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(CALIBRATIONS | st.text(max_size=100) | st.lists(NUMBERS, max_size=3))
def test_any_calibration_file_loads_or_is_one_line_naming_it(tmp_path, data):
    path = write(tmp_path, data, name="gen.yaml")
    try:
        reg = Registration.from_file(path)
    except StreamfuseError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), str(exc)
    else:
        assert np.isfinite(reg.homography).all() and reg.homography[2, 2] == 1.0

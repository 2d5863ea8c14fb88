"""run.py calibrate end to end on the bundled real sample: files written, and one-line refusals with no file."""
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamfuse import SAMPLE_DIR
from streamfuse.calibration.bench import corner_error, make_case
from streamfuse.cli import main
from streamfuse.geometry import Registration, apply_homography
from tests.helpers.clips import write_m3svd_folders

@pytest.fixture
def m3svd(tmp_path):
    """The bundled 20-frame M3SVD sample as PNG folders (the dataset's layout): sorted IR and visible paths."""
    return write_m3svd_folders(tmp_path / "M3SVD")


def write_mp4(path: Path, images, fps=30):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for img in images:
            frame = av.VideoFrame.from_ndarray(img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR),
                                               format="bgr24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def run(capsys, *args):
    code = main(["calibrate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_auto_and_sync_from_two_videos(tmp_path, capsys, m3svd):
    """Two MP4s from the real M3SVD sequence: the IR warped by a known homography and at half size,
    the visible clip starting 7 frames later. One command finds both."""
    irs, viss = m3svd
    ir_imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in irs]
    vis_imgs = [cv2.imread(str(p)) for p in viss]
    warped0, truth = make_case(ir_imgs[0], np.random.default_rng(3))
    g = np.linalg.inv(truth)  # original grid -> warped IR grid
    size = (warped0.shape[1], warped0.shape[0])
    warped = [cv2.warpPerspective(im, g, size, flags=cv2.INTER_LINEAR) for im in ir_imgs]
    ir_mp4 = write_mp4(tmp_path / "ir.mp4", warped)
    vis_mp4 = write_mp4(tmp_path / "vis.mp4", vis_imgs[7:])
    out = tmp_path / "calib" / "rig.yaml"
    code, text, err = run(capsys, "--ir", ir_mp4, "--vis", vis_mp4, "--auto", "--sync", "-o", out)
    assert code == 0, err
    reg = Registration.from_file(out)
    assert reg.ir_size == size and reg.vis_size == (640, 480)
    assert reg.time_offset_ms == pytest.approx(-7 * 1000 / 30, abs=1000 / 60)
    assert corner_error(reg.homography, truth, (size[1], size[0])) <= 3
    meta = reg.metadata
    assert meta["method"] == "auto" and meta["score"] > 0.18 and "date" in meta and meta["sync"]["correlation"] > 0.3
    assert (tmp_path / "calib" / "rig_overlay.png").is_file() and "time offset: -2" in text


def test_points_command_and_sync_only_update(tmp_path, capsys, m3svd):
    irs, viss = m3svd
    h_true = np.array([[1.01, 0.02, -6.0], [-0.015, 0.99, 4.0], [0, 0, 1.0]])
    pts = np.array([[30, 40], [600, 35], [610, 450], [25, 440], [320, 240]], float)
    csv = tmp_path / "pts.csv"
    csv.write_text("ir_x,ir_y,vis_x,vis_y\n" + "".join(
        f"{a},{b},{c},{d}\n" for (a, b), (c, d) in zip(pts, apply_homography(h_true, pts))))
    out = tmp_path / "rig.yaml"
    code, text, err = run(capsys, "--ir", irs[0], "--vis", viss[0], "--points", csv, "-o", out, "--overlay", "")
    assert code == 0, err
    reg = Registration.from_file(out)
    assert np.allclose(reg.homography, h_true, atol=1e-6) and reg.metadata["max_error_px"] < 1e-3
    assert not (tmp_path / "rig_overlay.png").exists() and "point 5: 0.00 px" in text
    # --sync alone keeps the homography and sets the offset (the same sequence: 0 frames apart)
    folder_ir, folder_vis = irs[0].parent, viss[0].parent
    code, text, err = run(capsys, "--ir", folder_ir, "--vis", folder_vis, "--sync", "-o", out, "--overlay", "")
    assert code == 0, err
    again = Registration.from_file(out)
    assert np.allclose(again.homography, h_true, atol=1e-6) and abs(again.time_offset_ms) < 1000 / 60


def refused(capsys, tmp_path, args, message):
    out = tmp_path / "never.yaml"
    code, _, err = run(capsys, *args, "-o", out)
    lines = [line for line in err.splitlines() if not line.startswith("INFO:")]  # progress lines aside
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not out.exists() and not list(tmp_path.glob("*overlay*"))


def test_bad_inputs_one_line_and_no_file(tmp_path, capsys, m3svd):
    irs, viss = m3svd
    kaist_vis = SAMPLE_DIR / "images" / "vis" / "set08_V000_I02159.png"  # another scene
    pair = ["--ir", irs[0], "--vis", viss[0]]
    three = tmp_path / "three.csv"
    three.write_text("1,1,2,2\n100,5,101,6\n50,90,51,91\n")
    line = tmp_path / "line.csv"
    line.write_text("".join(f"{10 * i},{5 * i},{10 * i + 3},{5 * i + 1}\n" for i in range(1, 6)))
    outside = tmp_path / "outside.csv"
    outside.write_text("10,10,10,10\n600,10,600,10\n600,470,600,470\n10,900,10,470\n")
    refused(capsys, tmp_path, pair + ["--points", three], "3 point pair(s); a homography needs at least 4")
    refused(capsys, tmp_path, pair + ["--points", line], "IR points are collinear")
    refused(capsys, tmp_path, pair + ["--points", outside], "point 4 (10, 900) lies outside the IR frame (640x480)")
    refused(capsys, tmp_path, pair + ["--checkerboard", "9x6"],
            "no 9x6 checkerboard found in both cameras in 1 frame pair(s) (frame 0: no board in IR and no board in visible)")
    refused(capsys, tmp_path, ["--ir", irs[0], "--vis", kaist_vis, "--auto"], "--auto did not converge")
    refused(capsys, tmp_path, pair, "nothing to do")
    refused(capsys, tmp_path, pair + ["--auto", "--points", three], "choose one of --points, --checkerboard, --auto")
    code, _, err = run(capsys, *pair, "--auto", "-o", tmp_path / "rig.txt")
    assert code == 2 and "must end in .yaml" in err


def test_sync_only_against_a_file_for_other_sizes(tmp_path, capsys, m3svd):
    irs, viss = m3svd
    path = tmp_path / "rig.yaml"
    Registration(np.eye(3), (320, 256), (640, 480), metadata={"method": "points"}).save(path)
    before = path.read_text()
    code, _, err = run(capsys, "--ir", irs[0].parent, "--vis", viss[0].parent, "--sync", "-o", path)
    assert code == 2 and "calibrated for IR frames of 320x256, but the IR stream is 640x480" in err
    assert path.read_text() == before

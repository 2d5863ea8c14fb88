"""Bad and odd inputs through a real `python run.py run`, on real files made here: for each, the exit
code, the one line that explains it, no traceback, and no half-written output (an output is either
absent or plays with exactly the frames the run says it wrote)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from tests.helpers.clips import m3svd_frames, write_clip
from streamfuse import REPO_DIR, SAMPLE_DIR

FRAMES = 30


def run(tmp_path, ir, vis, out_name="fused.mp4", extra=()):
    """(exit code, stdout, stderr, output path) of a run with the cheap `average` model."""
    out = tmp_path / out_name
    proc = subprocess.run([sys.executable, str(REPO_DIR / "run.py"), "run", "--ir", str(ir), "--vis", str(vis),
                           "--model", "average", "--no-progress", "-o", str(out), *map(str, extra)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr, out


def error_line(stderr: str) -> str:
    """The run's one error line (log lines aside)."""
    lines = [line for line in stderr.splitlines() if not line.startswith(("INFO:", "WARNING:", "ERROR:"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def written(stdout: str) -> int:
    return int(re.search(r"wrote (\d+) fused frame", stdout).group(1))


def frames_in(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def encode(path, images, fps=30, codec="libx264", pix_fmt="yuv420p", options=None, pts=None):
    """A video written with plain PyAV (not the project's sink); ``pts`` in 1/1000 s when given."""
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], pix_fmt
        if pts is not None:
            stream.time_base = Fraction(1, 1000)
        for i, img in enumerate(images):
            fmt = "bgr24" if img.ndim == 3 else ("gray16le" if img.dtype == np.uint16 else "gray")
            frame = av.VideoFrame.from_ndarray(img, format=fmt)
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    irs, viss = m3svd_frames(FRAMES)
    return {"ir": write_clip(folder / "ir.mp4", irs, 30), "vis": write_clip(folder / "vis.mp4", viss, 30),
            "irs": irs, "viss": viss, "folder": folder}


def test_mp4_cut_in_half_is_one_line(clips, tmp_path):
    data = clips["vis"].read_bytes()  # x264 MP4 with its index (moov) at the end
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    code, _, stderr, out = run(tmp_path, clips["ir"], tmp_path / "half.mp4")
    assert code == 2
    assert "half.mp4: cannot open as a video" in error_line(stderr)
    assert not out.exists()


def test_faststart_mp4_cut_in_half_fuses_what_is_there_and_says_so(clips, tmp_path):
    encode(tmp_path / "fs.mp4", clips["viss"], options={"movflags": "faststart"})
    data = (tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "fs_half.mp4").write_bytes(data[: len(data) // 2])
    code, stdout, stderr, out = run(tmp_path, clips["ir"], tmp_path / "fs_half.mp4")
    assert code == 0
    fused = written(stdout)
    assert 0 < fused < FRAMES
    assert f"fs_half.mp4: ended after {fused} of the {FRAMES} frames the file declares" in stderr
    assert frames_in(out) == fused


def test_mkv_with_garbage_in_the_middle_goes_on(clips, tmp_path):
    encode(tmp_path / "vis.mkv", clips["viss"])
    data = bytearray((tmp_path / "vis.mkv").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "garbage.mkv").write_bytes(bytes(data))
    code, stdout, _, out = run(tmp_path, clips["ir"], tmp_path / "garbage.mkv")
    assert code == 0
    assert 0 < written(stdout) < FRAMES  # the damaged frames are gone, the others are fused
    assert frames_in(out) == written(stdout)


def test_a_file_that_is_not_an_image_or_video_is_one_line(clips, tmp_path):
    (tmp_path / "notes.png").write_bytes(b"this is not a picture")
    code, _, stderr, out = run(tmp_path, clips["ir"], tmp_path / "notes.png")
    assert code == 2
    assert "notes.png: no frame could be decoded" in error_line(stderr)
    assert not out.exists()


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    folder = tmp_path / "rig 1 – Ñandú 熱"
    folder.mkdir()
    for name in ("ir", "vis"):
        shutil.copy(SAMPLE_DIR / f"{name}.mp4", folder / f"{name} ç.mp4")
    code, stdout, _, out = run(tmp_path, folder / "ir ç.mp4", folder / "vis ç.mp4", "sortie fusionnée é.mp4")
    assert code == 0 and written(stdout) == 20
    assert frames_in(out) == 20


def test_16_bit_ir_ffv1_video(clips, tmp_path):
    ir16 = [img.astype(np.uint16) * 257 for img in clips["irs"]]
    encode(tmp_path / "ir16.mkv", ir16, codec="ffv1", pix_fmt="gray16le")
    code, stdout, _, out = run(tmp_path, tmp_path / "ir16.mkv", clips["vis"])
    assert code == 0 and written(stdout) == FRAMES
    assert frames_in(out) == FRAMES


def test_visible_resolution_change_mid_stream(clips, tmp_path):
    """Two H.264 segments of different sizes in one MPEG-TS, as a camera reconfigured mid-stream."""
    half = FRAMES // 2
    parts = [encode(tmp_path / "a.ts", clips["viss"][:half]),
             encode(tmp_path / "b.ts", [cv2.resize(v, (320, 240)) for v in clips["viss"][half:]])]
    (tmp_path / "switch.ts").write_bytes(b"".join(p.read_bytes() for p in parts))
    code, stdout, stderr, out = run(tmp_path, clips["ir"], tmp_path / "switch.ts")
    assert code == 0
    assert stderr.count("skipped frame at") == 1 and "(frame is 320x240, the stream is 160x120)" in stderr
    assert 0 < written(stdout) <= half
    assert re.search(r"corrupt packets ir 0, vis \d+", stdout)
    assert frames_in(out) == written(stdout)


def test_visible_resolution_change_for_good_is_one_error(clips, tmp_path):
    """More than max_bad_frames (30) frames of the new size: the stream is an error, not silence."""
    parts = [encode(tmp_path / "a.ts", clips["viss"][:5]),
             encode(tmp_path / "b.ts", [cv2.resize(v, (320, 240)) for v in clips["viss"] + clips["viss"]])]
    (tmp_path / "switch.ts").write_bytes(b"".join(p.read_bytes() for p in parts))
    code, stdout, stderr, out = run(tmp_path, clips["ir"], tmp_path / "switch.ts")
    assert code == 2
    assert "switch.ts: 30 frames in a row could not be used" in error_line(stderr)
    assert not out.exists() or frames_in(out) == int(re.search(r"after writing (\d+)", stderr).group(1))


def test_variable_frame_rate_input(clips, tmp_path):
    """Visible frames at uneven intervals (20-50 ms): each is paired with the IR frame nearest in time."""
    gaps = np.random.default_rng(2).integers(20, 51, FRAMES)
    pts = np.concatenate([[0], np.cumsum(gaps)[:-1]]).tolist()
    encode(tmp_path / "vfr.mkv", clips["viss"], pts=pts)
    code, stdout, _, out = run(tmp_path, clips["ir"], tmp_path / "vfr.mkv")
    assert code == 0
    assert written(stdout) > FRAMES // 2
    with av.open(str(out)) as container:
        times = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert len(times) == written(stdout) and times == sorted(times)
    assert max(np.diff(times)) > 1.5 * min(np.diff(times))  # the output keeps the uneven timing


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING:")]


def test_a_calibration_that_maps_the_ir_mostly_off_the_frame_is_warned_with_the_figure(clips, tmp_path):
    calib = tmp_path / "off.yaml"  # the 160x120 IR moved 120 px right: a quarter of it lands on the frame
    calib.write_text("homography: [[1, 0, 120], [0, 1, 0], [0, 0, 1]]\nir_size: [160, 120]\nvis_size: [160, 120]\n")
    code, stdout, stderr, out = run(tmp_path, clips["ir"], clips["vis"], extra=["--calib", calib])
    assert code == 0 and written(stdout) == FRAMES
    assert warnings_in(stderr) == [f"WARNING: {calib}: the IR image covers only 25% of the output frame (the homography "
                                   "maps most of it outside the visible frame; check the calibration)"]


def test_the_same_file_as_ir_and_visible_is_warned_and_fused(clips, tmp_path):
    code, stdout, stderr, out = run(tmp_path, clips["vis"], clips["vis"])
    assert code == 0 and written(stdout) == FRAMES
    assert warnings_in(stderr) == [f"WARNING: --ir and --vis are the same source ({clips['vis']}): the output is that "
                                   "input fused with itself"]


@pytest.mark.parametrize("text, expect", [
    ("", "empty calibration file (expected the keys homography, "),
    ("homography: [['1', '0', '0'], ['0', '1', '0'], ['0', '0', '1']]\n",
     "key 'homography' must be a 3x3 list of finite numbers, got [['1', '0', '0']"),
    ("homography: [[1, 0, .nan], [0, 1, 0], [0, 0, 1]]\nir_size: [160, 120]\nvis_size: [160, 120]\n",
     "key 'homography' must be a 3x3 list of finite numbers, got [[1, 0, nan]"),
    ("homography: [[1, 0], [0, 1]]\n", "key 'homography' must be a 3x3 list of finite numbers, got [[1, 0], [0, 1]]"),
])
def test_bad_calibration_files_stop_the_run_in_one_line(clips, tmp_path, text, expect):
    calib = tmp_path / "rig.yaml"
    calib.write_text(text)
    code, _, stderr, out = run(tmp_path, clips["ir"], clips["vis"], extra=["--calib", calib])
    assert code == 2
    assert error_line(stderr).startswith(f"error: {calib}: {expect}")
    assert not out.exists()

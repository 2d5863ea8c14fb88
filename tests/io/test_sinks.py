"""Sinks: H.264 files round trip (frame count, timestamps, duration), a file closed by an exception is
playable, image folders, early path checks, display and option errors, mosaic."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import av
import cv2
import numpy as np
import pytest

from tests.helpers.clips import m3svd_frames
from streamfuse import REPO_DIR, SAMPLE_DIR, StreamfuseError
from streamfuse.io.sinks import check_writable, mosaic, open_sink
from streamfuse.io.sources import open_source


def decoded(path):
    """(frame count, pts in seconds, container duration in seconds) via plain PyAV."""
    with av.open(str(path)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
        return len(times), times, c.duration / 1e6


@pytest.mark.parametrize("fps, suffix", [(30, "mp4"), (25, "mp4"), (25, "mkv")])
def test_video_round_trip(tmp_path, fps, suffix):
    _, viss = m3svd_frames(20)
    path = tmp_path / f"out.{suffix}"
    start_ns = 7_000_000_000  # live-clock style pts: the file still starts at 0
    with open_sink(str(path), fps=fps) as sink:
        for i, img in enumerate(viss):
            sink.write(img, start_ns + round(i * 1e9 / fps))
        assert sink.frames_written == 20
    count, times, duration = decoded(path)
    assert count == 20
    assert times == pytest.approx([i / fps for i in range(20)], abs=1e-3)  # mkv keeps ms
    assert abs(duration - 20 / fps) <= 1 / fps
    frames = list(open_source(str(path)))
    assert np.abs(frames[10].image.astype(int) - viss[10]).mean() < 4


def test_timestamps_follow_the_frames_not_a_rate(tmp_path):
    """Irregular pts (a 25 fps stream with a gap, written with a nominal 30 fps) survive as written."""
    _, viss = m3svd_frames(8)
    pts_s = [0.0, 0.04, 0.08, 0.12, 0.40, 0.44, 0.48, 0.52]
    path = tmp_path / "gappy.mp4"
    with open_sink(str(path), fps=30) as sink:
        for img, t in zip(viss, pts_s):
            sink.write(img, round(t * 1e9))
    count, times, duration = decoded(path)
    assert count == 8 and times == pytest.approx(pts_s, abs=1e-4)
    assert duration == pytest.approx(0.56, abs=0.04)


def test_gray_round_trip_and_standard_range(tmp_path):
    """IR written as luma reads back through open_source and through FFmpeg's own conversion."""
    irs, _ = m3svd_frames(5)
    path = tmp_path / "ir.mp4"
    with open_sink(str(path), crf=10) as sink:
        for i, img in enumerate(irs):
            sink.write(img, i * 33_333_333)
    ours = list(open_source(str(path), kind="ir"))
    assert len(ours) == 5 and ours[2].image.shape == irs[2].shape
    assert np.abs(ours[2].image.astype(int) - irs[2]).mean() < 2
    with av.open(str(path)) as c:
        gray = next(c.decode(video=0)).to_ndarray(format="bgr24")[..., 1]
    assert np.abs(gray.astype(int) - irs[0]).mean() < 3  # players see the right levels


def test_file_closed_by_an_exception_is_playable(tmp_path):
    _, viss = m3svd_frames(12)
    path = tmp_path / "interrupted.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with open_sink(str(path), fps=30) as sink:
            for i, img in enumerate(viss):
                sink.write(img, round(i * 1e9 / 30))
                if i == 9:
                    raise RuntimeError("boom")
    count, times, duration = decoded(path)
    assert count == 10 and abs(duration - 10 / 30) <= 1 / 30


def _progress_reader(stream, seen: list) -> threading.Thread:
    """Collect the fused counts of the run's status lines ("INFO: status 0:00:05 fused 147, ...")."""
    def read():
        buffer = ""
        while chunk := stream.read1(4096):
            buffer += chunk.decode(errors="replace")
            *lines, buffer = re.split(r"[\r\n]", buffer)
            for line in lines:
                if match := re.search(r"^INFO: status \S+ fused (\d+),", line):
                    seen.append(int(match.group(1)))
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_sigkill_leaves_a_playable_file(tmp_path, suffix):
    """A `run` killed with SIGKILL (no flush, no close) keeps all but about the last second."""
    out = tmp_path / f"killed.{suffix}"
    loop = "?loop=true"
    cmd = [sys.executable, str(REPO_DIR / "run.py"), "run", "--ir", f"file://{SAMPLE_DIR / 'ir.mp4'}{loop}",
           "--vis", f"file://{SAMPLE_DIR / 'vis.mp4'}{loop}", "--model", "average", "-o", str(out), "--status-every", "0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    seen: list[int] = []
    reader = _progress_reader(proc.stderr, seen)
    try:
        deadline = time.monotonic() + 180
        while not seen or seen[-1] < 150:  # 5 s of 30 fps video, several fragments
            assert proc.poll() is None, "run ended before it was killed"
            assert time.monotonic() < deadline, "fewer than 150 fused frames after 180 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    last_count = seen[-1]  # the status may lag the true count, never lead it
    with av.open(str(out)) as container:  # raises if the file does not decode
        times = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    count = len(times)
    print(f"{suffix}: {last_count} fused when killed, {count} decoded")
    # lost at most the open fragment (one GOP: 30 frames = 1 s of the sample's 30 fps video), the
    # frames inside x264 (its lookahead) and those queued for the sink; counted in frames, not wall
    # time, since a busy machine fuses slower than real time
    assert count >= last_count - 60, (count, last_count)
    assert count >= 90  # several whole fragments survived
    assert times == sorted(times) and times[0] == 0


def test_odd_size_is_cropped_to_even(tmp_path):
    img = np.full((241, 321, 3), 120, np.uint8)
    path = tmp_path / "odd.mp4"
    with open_sink(str(path)) as sink:
        sink.write(img, 0)
        with pytest.raises(StreamfuseError, match="frame is 100x100, the video is 320x240"):
            sink.write(np.zeros((100, 100, 3), np.uint8), 1)
    assert open_source(str(path)).size == (320, 240)


def test_bitrate_option(tmp_path):
    path = tmp_path / "b.mkv"
    _, viss = m3svd_frames(4)
    with open_sink(str(path), bitrate="300k", preset="ultrafast") as sink:
        for i, img in enumerate(viss):
            sink.write(img, i * 40_000_000)
    assert decoded(path)[0] == 4
    with pytest.raises(StreamfuseError, match="bitrate must be like 4M"):
        open_sink(str(tmp_path / "c.mp4"), bitrate="fast")


def test_bad_encoder_options_are_named(tmp_path):
    with pytest.raises(StreamfuseError, match="crf must be a number from 0 .lossless. to 51, got '60'"):
        open_sink(str(tmp_path / "a.mp4"), crf=60)
    with pytest.raises(StreamfuseError, match="fps must be a positive number, got 'fast'"):
        open_sink(str(tmp_path / "a.mp4"), fps="fast")
    sink = open_sink(str(tmp_path / "b.mp4"), preset="warp9")
    with pytest.raises(StreamfuseError, match=r"b\.mp4: cannot start the H.264 encoder with preset=warp9, crf=20"):
        sink.write(np.zeros((64, 64, 3), np.uint8), 0)
    sink.close()  # closing after the failure is clean


def test_image_folder_sink(tmp_path):
    irs, viss = m3svd_frames(3)
    with open_sink(f"images://{tmp_path}/frames") as sink:
        for i, img in enumerate(viss):
            sink.write(img, i)
        sink.write(irs[0], 3)
    files = sorted((tmp_path / "frames").iterdir())
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png", "000003.png"]
    np.testing.assert_array_equal(cv2.imread(str(files[1]), cv2.IMREAD_UNCHANGED), viss[1])
    np.testing.assert_array_equal(cv2.imread(str(files[3]), cv2.IMREAD_UNCHANGED), irs[0])
    with open_sink(str(tmp_path / "jpgs") + "/", ext="jpg") as sink:
        sink.write(viss[0], 0)
    assert (tmp_path / "jpgs" / "000000.jpg").is_file()


def test_unwritable_output_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(StreamfuseError, match=r"file\.txt/out\.mp4: cannot write to folder .*file\.txt"):
        check_writable(str(blocker / "out.mp4"))
    with pytest.raises(StreamfuseError, match="is a folder, expected a video file path"):
        (tmp_path / "dir.mp4").mkdir()
        check_writable(str(tmp_path / "dir.mp4"))
    with pytest.raises(StreamfuseError, match="exists and is not a folder"):
        check_writable(f"images://{blocker}")
    with pytest.raises(StreamfuseError, match="cannot write to folder"):
        open_sink(str(blocker / "sub" / "out.mkv"))
    before = sorted(tmp_path.iterdir())
    check_writable(str(tmp_path / "new" / "deeper" / "out.mp4"))  # missing folders are fine (made when writing)
    assert sorted(tmp_path.iterdir()) == before  # the probe is gone, nothing made


def test_rtsp_output_without_a_server_fails_early():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StreamfuseError, match=rf"cannot reach the RTSP server at 127.0.0.1:{port} \(.+\)"):
        check_writable(f"rtsp://127.0.0.1:{port}/fused")


def test_display_without_window_support_is_clear():
    from streamfuse.io.sinks import display_unavailable_reason

    reason = display_unavailable_reason()
    if reason is None:
        pytest.skip("this machine can open an OpenCV window")
    with pytest.raises(StreamfuseError) as err:
        open_sink("display://")
    assert str(err.value) == f"display://: {reason}"


def test_null_sink_counts_and_options_are_checked():
    with open_sink("null://") as sink:
        for i in range(5):
            sink.write(np.zeros((4, 4), np.uint8), i)
    assert sink.frames_written == 5
    with pytest.raises(StreamfuseError, match="write after close"):
        sink.write(np.zeros((4, 4), np.uint8), 6)
    with pytest.raises(StreamfuseError, match="unknown option 'pre_set'.*did you mean 'preset'"):
        open_sink("out.mp4", pre_set="fast")


def test_mosaic_side_by_side():
    ir = np.full((120, 160), 50, np.uint8)
    vis = np.full((240, 320, 3), 100, np.uint8)
    fused = np.full((240, 320, 3), 200, np.uint8)
    out = mosaic(ir, vis, fused)
    assert out.shape == (240, 960, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 50 and out[0, 320, 0] == 100 and out[0, 959, 0] == 200
    assert mosaic(np.zeros((240, 320), np.uint16) + 256 * 80, vis, fused)[0, 0, 0] == 80

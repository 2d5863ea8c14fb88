"""Sources on real media: M3SVD frames encoded with PyAV (30 and 25 fps), image sequences, bad input,
V4L2 option handling (no camera can exist here)."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import av
import cv2
import numpy as np
import pytest

from tests.helpers.clips import m3svd_frames, write_clip, write_m3svd_folders
from streamfuse import REPO_DIR, SAMPLE_DIR, StreamfuseError
from streamfuse.io.frame import EndOfStream, SourceError
from streamfuse.io.sources import V4L2_PIXEL_FORMATS, open_source, v4l2_av_options


@pytest.mark.parametrize("fps", [30, 25])
def test_video_file_pts_and_content(tmp_path, fps):
    irs, viss = m3svd_frames(20)
    path = write_clip(tmp_path / f"vis{fps}.mp4", viss, fps)
    with open_source(str(path), kind="vis") as src:
        assert (src.fps, src.size, src.frame_count, src.is_live) == (fps, (160, 120), 20, False)
        frames = list(src)
        with pytest.raises(EndOfStream):  # and again: the end is stable
            src.read()
    with pytest.raises(SourceError, match="read after close"):
        src.read()
    assert [f.seq for f in frames] == list(range(20))
    # PTS x time_base in ns: frame i at i / fps (to the tick)
    assert [f.pts_ns for f in frames] == [round(i * 1e9 / fps) for i in range(20)]
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    for frame, original in zip(frames, viss):
        assert np.abs(frame.image.astype(int) - original).mean() < 4  # crf 12: close to the source


def test_ir_kind_reads_luma_plane(tmp_path):
    irs, _ = m3svd_frames(10)
    path = write_clip(tmp_path / "ir.mkv", irs, 30)
    frames = list(open_source(str(path), kind="ir"))
    assert len(frames) == 10
    assert frames[3].image.shape == (120, 160) and frames[3].image.dtype == np.uint8
    assert np.abs(frames[3].image.astype(int) - irs[3]).mean() < 3


def test_ir_16bit_file_gives_uint16(tmp_path):
    """A lossless 16-bit gray clip (FFV1, as a radiometric recording would be) reads back bit-exact."""
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 65536, (48, 64), dtype=np.uint16) for _ in range(3)]
    path = tmp_path / "y16.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "gray16le"
        for i, img in enumerate(images):
            frame = av.VideoFrame.from_ndarray(img, format="gray16le")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    frames = list(open_source(str(path), kind="ir"))
    assert len(frames) == 3 and frames[0].image.dtype == np.uint16
    for frame, img in zip(frames, images):
        np.testing.assert_array_equal(frame.image, img)


def test_pts_count_from_the_stream_start(tmp_path):
    """A stream whose clock starts at 1 s (MPEG-TS does so): the source reports time since the start."""
    _, viss = m3svd_frames(5)
    path = write_clip(tmp_path / "clip.ts", viss, 25, start_s=1.0)
    with av.open(str(path)) as c:
        assert c.streams.video[0].start_time == 90000
    assert [f.pts_ns for f in open_source(str(path))] == [i * 40_000_000 for i in range(5)]


def test_bundled_sample_pair():
    ir = list(open_source(str(SAMPLE_DIR / "ir.mp4"), kind="ir"))
    vis = list(open_source(str(SAMPLE_DIR / "vis.mp4"), kind="vis"))
    assert len(ir) == len(vis) == 20
    assert [f.pts_ns for f in ir] == [f.pts_ns for f in vis]
    assert ir[0].image.shape == (480, 640) and vis[0].image.shape == (480, 640, 3)


def test_loop_plays_a_file_again_with_time_running_on():
    with open_source(f"file://{SAMPLE_DIR / 'vis.mp4'}?loop=true", kind="vis") as src:
        assert src.frame_count is None  # endless
        frames = [src.read() for _ in range(45)]  # the sample has 20 frames: two passes and a bit
    assert [f.seq for f in frames] == list(range(45))
    # evenly spaced across the passes (to the ns: each pass starts one rounded period after the last frame)
    np.testing.assert_allclose([f.pts_ns for f in frames], [i * 1e9 / 30 for i in range(45)], rtol=0, atol=2)
    np.testing.assert_array_equal(frames[20].image, frames[0].image)
    np.testing.assert_array_equal(frames[41].image, frames[1].image)


def test_loop_plays_an_image_sequence_again(sample_images):
    src = open_source(f"images://{sample_images / 'ir'}?fps=10&loop=true", kind="ir")
    frames = [src.read() for _ in range(3)]  # one image, shown again and again
    assert [f.pts_ns for f in frames] == [0, 100_000_000, 200_000_000]
    np.testing.assert_array_equal(frames[2].image, frames[0].image)
    with pytest.raises(StreamfuseError, match=r"loop must be true or false, got '2'"):
        open_source(str(SAMPLE_DIR / "ir.mp4"), loop=2)


def test_image_sequence_m3svd_layout(tmp_path):
    write_m3svd_folders(tmp_path / "M3SVD")
    folder = tmp_path / "M3SVD" / "ir"
    src = open_source(f"images://{folder}?fps=30", kind="ir")
    assert (src.fps, src.size, src.frame_count) == (30.0, (640, 480), 20)
    frames = list(src)
    assert [f.pts_ns for f in frames] == [round(i * 1e9 / 30) for i in range(20)]
    # the IR PNGs are gray stored in 3 equal channels: kind="ir" gives the one channel
    np.testing.assert_array_equal(frames[7].image, cv2.imread(str(sorted(folder.glob("*.png"))[7]), 0))
    vis = list(open_source(str(tmp_path / "M3SVD" / "vis" / "*_001?.png"), kind="vis", fps=25))
    assert len(vis) == 10 and vis[1].pts_ns == 40_000_000 and vis[0].image.shape == (480, 640, 3)


def test_image_sequence_kaist_style_folder(tmp_path):
    """set00/V000/lwir/I00000.jpg ... read in natural order at the given fps."""
    irs, _ = m3svd_frames(12)
    folder = tmp_path / "set00" / "V000" / "lwir"
    folder.mkdir(parents=True)
    for i, img in enumerate(irs):
        cv2.imwrite(str(folder / f"I{i:05d}.png"), img)
    frames = list(open_source(str(folder), kind="ir", fps=20))
    assert len(frames) == 12 and frames[11].pts_ns == 550_000_000
    np.testing.assert_array_equal(frames[11].image, irs[11])


def bad_frame_folder(folder, frames):
    """Frames 0..n-1 as PNG, then 2 = a truncated PNG, 4 = an empty JPEG, 6 = a frame of another size."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    png = (folder / "002.png").read_bytes()
    (folder / "002.png").write_bytes(png[: len(png) // 3])
    (folder / "004.png").unlink()
    (folder / "004.jpg").write_bytes(b"")
    cv2.imwrite(str(folder / "006.png"), cv2.resize(frames[6], None, fx=0.5, fy=0.5))
    return folder


def test_image_sequence_skips_bad_frames_and_counts_them(tmp_path, caplog):
    irs, _ = m3svd_frames(10)
    folder = bad_frame_folder(tmp_path / "ir", irs)
    with caplog.at_level("WARNING", logger="streamfuse"):
        with open_source(str(folder), kind="ir", fps=10) as src:
            frames = list(src)
            assert src.corrupt_packets == 3
    assert [f.pts_ns // 100_000_000 for f in frames] == [0, 1, 3, 5, 7, 8, 9]  # good frames keep their time
    np.testing.assert_array_equal(frames[2].image, irs[3])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert "skipped frame 002.png (cannot decode" in warnings[0] and "skipped frame 004.jpg" in warnings[1]
    assert "skipped frame 006.png (frame is 80x60, the stream is 160x120)" in warnings[2]


def test_image_sequence_with_nothing_decodable_is_one_error(tmp_path):
    cv2.imwrite(str(tmp_path / "000.png"), np.zeros((10, 10), np.uint8))
    for i in range(1, 6):
        (tmp_path / f"{i:03d}.png").write_bytes(b"not an image")
    src = open_source(f"images://{tmp_path}?max_bad_frames=3", kind="ir")
    src.read()
    with pytest.raises(SourceError, match=r"3 frames in a row could not be used \(last: frame 003.png: cannot decode"):
        src.read()
    with pytest.raises(SourceError, match=r"5 frames in a row could not be used"):
        open_source(str(tmp_path / "00[1-5].png"), kind="ir", max_bad_frames=5)
    with pytest.raises(SourceError, match=r"none of the 5 image files could be read"):
        open_source(str(tmp_path / "00[1-5].png"), kind="ir")


def test_run_over_image_folders_with_bad_frames_goes_on(tmp_path):
    """A real `run`: the bad frames are skipped on their stream, every other pair is fused."""
    irs, viss = m3svd_frames(10)
    bad_frame_folder(tmp_path / "ir", irs)
    (tmp_path / "vis").mkdir()
    for i, img in enumerate(viss):
        cv2.imwrite(str(tmp_path / "vis" / f"{i:03d}.png"), img)
    out = tmp_path / "fused.mp4"
    proc = subprocess.run([sys.executable, str(REPO_DIR / "run.py"), "run", "--ir", str(tmp_path / "ir"),
                           "--vis", str(tmp_path / "vis"), "--model", "average", "--no-progress", "-o", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 7 fused frame(s)" in proc.stdout
    assert "corrupt packets ir 3, vis 0" in proc.stdout
    assert proc.stderr.count("skipped frame") == 3 and "Traceback" not in proc.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 7


def test_corrupt_packet_skipped_and_counted(tmp_path):
    _, viss = m3svd_frames(20)
    path = write_clip(tmp_path / "clip.mp4", viss, 30)
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size, p.is_keyframe) for p in c.demux(video=0) if p.size]
    pos, size, key = packets[7]
    assert not key
    data = bytearray(path.read_bytes())
    data[pos + 4:pos + size] = np.random.default_rng(0).integers(0, 256, size - 4, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    src = open_source(str(bad))
    frames = list(src)
    assert src.corrupt_packets == 1
    assert len(frames) == 19  # the damaged frame is skipped, the rest decode
    assert frames[-1].pts_ns == round(19 * 1e9 / 30)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.mp4: no such video file"):
        open_source(str(tmp_path / "nope.mp4"))


def test_not_a_video_names_it(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n" * 100)
    with pytest.raises(SourceError, match=r"notes\.mp4: cannot open as a video \(.+\)"):
        open_source(str(path))


def test_source_options_checked(tmp_path):
    with pytest.raises(StreamfuseError, match="unknown option 'fsp'.*did you mean 'fps'"):
        open_source(str(SAMPLE_DIR / "images" / "ir"), fsp=10)
    with pytest.raises(StreamfuseError, match="kind must be one of ir, vis"):
        open_source(str(SAMPLE_DIR / "ir.mp4"), kind="thermal")
    with pytest.raises(StreamfuseError, match="fps must be a positive number"):
        open_source(str(SAMPLE_DIR / "images" / "ir"), fps=0)


def test_rtsp_refused_names_url_and_reason():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as err:
        open_source(f"rtsp://127.0.0.1:{port}/cam", open_timeout=2)
    message = str(err.value)
    assert f"rtsp://127.0.0.1:{port}/cam: cannot open RTSP stream (" in message and "\n" not in message


def test_rtsp_silent_server_times_out():
    """A server that accepts the connection and never answers: SourceError after open_timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(SourceError, match=r"cannot open RTSP stream .*open timeout 1 s"):
            open_source(f"rtsp://127.0.0.1:{port}/cam", open_timeout=1, read_timeout=1)
        assert time.monotonic() - started < 20  # it gave up instead of hanging
    finally:
        for conn, _ in accepted:
            conn.close()
        server.close()


def test_v4l2_options_to_ffmpeg():
    assert v4l2_av_options("640x512", 30, "y16") == {
        "video_size": "640x512", "framerate": "30", "input_format": "gray16le"}
    assert v4l2_av_options((160, 120), None, "YUYV") == {"video_size": "160x120", "input_format": "yuyv422"}
    assert v4l2_av_options() == {}
    assert V4L2_PIXEL_FORMATS["mjpg"] == "mjpeg"
    with pytest.raises(StreamfuseError, match="size must be WIDTHxHEIGHT like 640x512, got '640'"):
        v4l2_av_options("640")
    with pytest.raises(StreamfuseError, match="unknown pixel_format 'y42'"):
        v4l2_av_options(pixel_format="y42")
    with pytest.raises(StreamfuseError, match="fps must be a positive number"):
        v4l2_av_options(fps=-1)


def test_v4l2_missing_device_is_clear():
    with pytest.raises(SourceError, match=r"^/dev/video97: no such V4L2 device"):
        open_source("v4l2:///dev/video97?size=640x512&pixel_format=y16", kind="ir")
    with pytest.raises(SourceError, match=r"^/dev/video98: no such V4L2 device"):
        open_source("/dev/video98")


def test_v4l2_not_a_camera(tmp_path):
    with pytest.raises(SourceError, match="not a V4L2 device"):
        open_source(f"v4l2://{tmp_path}")
    # /dev/null is a character device but no camera: FFmpeg's reason is passed on, with what was asked
    with pytest.raises(SourceError, match=r"^/dev/null: cannot open the camera with video_size=64x48 \(.+\)"):
        open_source("v4l2:///dev/null?size=64x48")


def test_v4l2_bad_option_before_touching_device():
    with pytest.raises(StreamfuseError, match="unknown option 'pixfmt'"):
        open_source("/dev/video0", pixfmt="y16")


def test_probe_reports_what_it_read():
    from streamfuse.io.sources import probe

    info = probe(str(SAMPLE_DIR / "ir.mp4"), max_frames=50, kind="ir")
    assert info["type"] == "VideoFileSource" and info["ended"] and info["frames_read"] == 20
    assert info["frame_shape"] == (480, 640) and info["pts_fps"] == pytest.approx(30.0)


def test_probe_command(capsys):
    from streamfuse.cli import main

    assert main(["probe", str(SAMPLE_DIR / "vis.mp4"), "--frames", "5", "-O", "kind=vis"]) == 0
    out = capsys.readouterr().out
    assert "frames_read      5" in out and "size             (640, 480)" in out
    assert main(["probe", "/dev/video97", "-O", "pixel_format=y16", "-O", "size=640x512"]) == 2
    assert "error: /dev/video97: no such V4L2 device" in capsys.readouterr().err


def test_v4l2_timestamps_join_the_monotonic_clock():
    from streamfuse.io.sources import monotonic_offset

    now = 5_000 * 10**9
    assert monotonic_offset(now - 30_000_000, now) == 0  # a capture 30 ms ago on CLOCK_MONOTONIC: kept
    wall = 1_763_800_000 * 10**9  # a driver stamping wall-clock time: moved onto the monotonic clock
    assert wall + monotonic_offset(wall, now) == now


def test_rtsp_option_values_are_checked_before_connecting():
    with pytest.raises(StreamfuseError, match="max_retries must be a whole number or none, got 'often'"):
        open_source("rtsp://127.0.0.1:9/cam", max_retries="often")
    with pytest.raises(StreamfuseError, match="transport must be tcp or udp, got 'http'"):
        open_source("rtsp://127.0.0.1:9/cam", transport="http")
    with pytest.raises(StreamfuseError, match="read_timeout must be a positive number of seconds, got '0'"):
        open_source("rtsp://127.0.0.1:9/cam", read_timeout=0)
    with pytest.raises(StreamfuseError, match="open_timeout must be a positive number of seconds, got 'soon'"):
        open_source("/dev/video0", open_timeout="soon")

"""RTSP against a real server on 127.0.0.1 (gst-rtsp-server, tests/helpers/rtsp_server.py): read the bundled
sample, survive the server being killed mid-stream and restarted, give up cleanly when it stays
away, and publish with the RTSP sink."""
from __future__ import annotations

import time

import av
import numpy as np
import pytest

from tests.helpers.clips import m3svd_frames, write_clip
from streamfuse import SAMPLE_DIR
from streamfuse.io.frame import EndOfStream, SourceError
from streamfuse.io.sinks import open_sink
from streamfuse.io.sources import open_source

pytestmark = pytest.mark.rtsp


@pytest.fixture
def long_clip(tmp_path):
    """3 s at 30 fps (the M3SVD sequence back and forth), small so the server starts it fast."""
    _, viss = m3svd_frames(20)
    loop = viss + viss[::-1]
    return write_clip(tmp_path / "long.mp4", [loop[i % 40] for i in range(90)], 30)


def read_all(src, on_frame=None):
    frames = []
    while True:
        try:
            frame = src.read(timeout=1.0)
        except EndOfStream:
            return frames
        if frame is not None:
            frames.append(frame)
            if on_frame:
                on_frame(len(frames))


def read_together(*sources):
    """Read live sources side by side, as the pipeline's readers do (one left unread would fill its
    socket buffer, and over UDP the kernel then drops packets)."""
    frames = {src: [] for src in sources}
    running = list(sources)
    while running:
        for src in list(running):
            try:
                frame = src.read(timeout=0.02)
            except EndOfStream:
                running.remove(src)
                continue
            if frame is not None:
                frames[src].append(frame)
    return [frames[src] for src in sources]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_read_the_sample_over_rtsp(rtsp_server, transport):
    server = rtsp_server(play={"ir": SAMPLE_DIR / "ir.mp4", "vis": SAMPLE_DIR / "vis.mp4"})
    with open_source(server.url("ir"), kind="ir", transport=transport) as ir, \
            open_source(server.url("vis"), kind="vis", transport=transport) as vis:
        assert ir.is_live and ir.size == (640, 480) and ir.frame_count is None and ir.fps == vis.fps == 30
        ir_frames, vis_frames = read_together(ir, vis)
    if transport == "tcp":
        assert len(ir_frames) == len(vis_frames) == 20  # a recording played to its end: EndOfStream
    else:  # UDP may lose packets, and FFmpeg can act on the server's goodbye before the last ones
        assert 10 <= len(ir_frames) <= 20 and 10 <= len(vis_frames) <= 20
    assert ir.reconnects == vis.reconnects == 0  # the end of a recording is not a lost connection
    assert ir_frames[0].image.shape == (480, 640) and vis_frames[0].image.shape == (480, 640, 3)
    file_frames = list(open_source(str(SAMPLE_DIR / "vis.mp4")))
    assert np.abs(vis_frames[5].image.astype(int) - file_frames[5].image).mean() < 1  # same bitstream
    if transport == "tcp":
        assert np.abs(vis_frames[-1].image.astype(int) - file_frames[-1].image).mean() < 1
    pts = [f.pts_ns for f in vis_frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert ir.corrupt_packets == 0


def test_stream_clock_follows_rtp_time_without_jitter(rtsp_server, long_clip):
    """pts = RTP time + the smallest delay seen: never later than the frame's arrival, and, after the
    frames buffered while the stream was probed (0.3 s), spaced by the camera's own clock (1/30 s)
    rather than by when packets happened to arrive."""
    server = rtsp_server(play={"cam": long_clip})
    pts, arrivals = [], []
    with open_source(server.url("cam")) as src:
        while len(pts) < 60:
            frame = src.read(timeout=5)
            arrivals.append(time.monotonic_ns())
            pts.append(frame.pts_ns)
    assert all(p <= a for p, a in zip(pts, arrivals))
    steps_ms = np.diff(pts)[15:] / 1e6
    assert np.mean(np.abs(steps_ms - 1000 / 30) < 0.05) >= 0.8, np.round(steps_ms, 2)


def test_reconnects_after_server_restart(rtsp_server, long_clip):
    server = rtsp_server(play={"cam": long_clip})
    src = open_source(server.url("cam"), kind="vis", backoff=0.2, read_timeout=2)

    def restart_once(count):
        if count == 30:
            server.stop()  # killed mid-stream, as a crashed camera server would be
            time.sleep(0.5)
            server.start()  # back on the same port

    frames = read_all(src, restart_once)
    src.close()
    assert src.reconnects == 1
    # the frames before the cut, then the whole recording again (the server restarts it)
    assert 90 + 30 <= len(frames) < 180
    pts = [f.pts_ns for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))  # time runs on across the reconnect
    assert [f.seq for f in frames] == list(range(len(frames)))


def test_gives_up_when_the_server_stays_away(rtsp_server, long_clip):
    server = rtsp_server(play={"cam": long_clip})
    src = open_source(server.url("cam"), backoff=0.1, max_backoff=0.2, max_retries=3, read_timeout=2)
    assert src.read(timeout=5) is not None
    server.stop()
    with pytest.raises(SourceError, match=r"connection lost .* 3 reconnect tries failed"):
        read_all(src)
    assert src.reconnects == 0


def test_read_returns_none_while_waiting_to_reconnect(rtsp_server, long_clip):
    server = rtsp_server(play={"cam": long_clip})
    src = open_source(server.url("cam"), backoff=1.0, max_retries=None, read_timeout=2)
    assert src.read(timeout=5) is not None
    server.stop()
    timed_out = False
    for _ in range(200):  # the buffered frames, then the lost connection, then a timeout
        if src.read(timeout=0.2) is None:
            timed_out = True
            break
    assert timed_out
    src.close()


def test_publish_with_the_rtsp_sink(rtsp_server, tmp_path):
    received = tmp_path / "received.h264"
    server = rtsp_server(record={"fused": received})
    _, viss = m3svd_frames(20)
    with open_sink(server.url("fused"), fps=30) as sink:
        for i, img in enumerate(viss):
            sink.write(img, round(i * 1e9 / 30))
    time.sleep(0.5)  # let the server write what it got
    with av.open(str(received), format="h264") as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(frames) == 20
    assert np.abs(frames[10].astype(int) - viss[10]).mean() < 6

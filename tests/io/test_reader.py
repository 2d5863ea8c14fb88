"""ReaderThread: lossless back-pressure, live read-latest with drops counted, end/error forwarding, stop."""
from __future__ import annotations

import queue
import time

import cv2
import pytest

from tests.helpers.clips import m3svd_frames, write_clip
from streamfuse import StreamfuseError
from streamfuse.io.frame import SourceError
from streamfuse.io.reader import ReaderDone, ReaderThread
from streamfuse.io.sources import open_source


@pytest.fixture
def clip(tmp_path):
    _, viss = m3svd_frames(20)
    return str(write_clip(tmp_path / "clip.mp4", viss, 30))


def drain(frames: queue.Queue, delay: float = 0.0) -> tuple[list, ReaderDone]:
    items = []
    while True:
        item = frames.get(timeout=10)
        if isinstance(item, ReaderDone):
            return items, item
        items.append(item)
        time.sleep(delay)


def wait_until(condition, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_lossless_back_pressure_keeps_every_frame(clip):
    frames = queue.Queue(maxsize=2)
    reader = ReaderThread(open_source(clip), frames, mode="lossless")
    reader.start()
    wait_until(frames.full)
    time.sleep(0.3)  # nobody consumes: the reader waits instead of reading on
    assert reader.frames_read == 3  # two queued, one waiting to be put
    got, done = drain(frames, delay=0.005)
    reader.join(5)
    assert [f.seq for f in got] == list(range(20))
    assert done.error is None and reader.dropped == 0 and not reader.is_alive()
    assert reader.source._closed  # the thread closed its source


def test_live_keeps_newest_and_counts_drops(clip):
    frames = queue.Queue(maxsize=3)
    reader = ReaderThread(open_source(clip), frames, mode="live")
    reader.start()
    reader.join(10)  # consumer asleep the whole time: only the newest frames stay
    got, done = drain(frames)
    assert done.error is None
    assert [f.seq for f in got] == [18, 19]  # + the ReaderDone fills the third slot
    assert reader.frames_read == 20 and reader.dropped == 18


def test_error_reaches_the_consumer(tmp_path):
    irs, _ = m3svd_frames(3)
    for i, img in enumerate(irs):
        cv2.imwrite(str(tmp_path / f"{i}.png"), img if i < 2 else img[:60])  # frame 2 has another size
    frames = queue.Queue(maxsize=4)
    # one unusable frame is already too many: the source fails on it
    reader = ReaderThread(open_source(str(tmp_path), kind="ir", max_bad_frames=1), frames)
    reader.start()
    got, done = drain(frames)
    assert len(got) == 2
    assert isinstance(done.error, SourceError) and "2.png" in str(done.error)
    assert reader.error is done.error


def test_stop_while_blocked(clip):
    frames = queue.Queue(maxsize=1)
    reader = ReaderThread(open_source(clip), frames, mode="lossless", poll=0.05)
    reader.start()
    wait_until(frames.full)
    reader.stop()
    reader.join(5)
    assert not reader.is_alive() and reader.frames_read < 20


def test_bad_mode(clip):
    with open_source(clip) as src:
        with pytest.raises(StreamfuseError, match="reader mode must be one of lossless, live, got 'fast'"):
            ReaderThread(src, queue.Queue(), mode="fast")

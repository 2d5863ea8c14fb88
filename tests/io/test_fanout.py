"""Several outputs from the same frames (streamfuse/io/fanout.py): real video files and browser views;
a held-up output is a NullSink whose write waits on a gate (a stalled network or window, which cannot
be made to stall on cue here)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.io.fanout import Fanout, OutputFrame, open_outputs
from streamfuse.io.sinks import NullSink
from streamfuse.io.sources import open_source


class GatedSink(NullSink):
    """Writes only while ``gate`` is open; ``uri`` decides whether the fan-out treats it as a file or live output."""

    def __init__(self, uri: str):
        super().__init__(uri=uri)
        self.gate = threading.Event()

    def write(self, image, pts_ns):
        self.gate.wait()
        super().write(image, pts_ns)


def frames(n: int):
    for i in range(n):
        image = np.full((64, 80, 3), (i * 5) % 256, np.uint8)
        yield OutputFrame(image, round(i * 1e9 / 30), time.perf_counter())


def put_all(fanout: Fanout, n: int) -> threading.Thread:
    thread = threading.Thread(target=lambda: [fanout.put(f) for f in frames(n)], daemon=True)
    thread.start()
    return thread


def test_a_stalled_live_output_drops_its_own_frames_and_the_file_gets_every_one(tmp_path):
    out = tmp_path / "out.mp4"
    sinks = open_outputs([str(out)], {})
    stalled = GatedSink("display://stalled")  # a live kind: drops instead of waiting
    fanout = Fanout(sinks + [stalled], lossless=True, queue_size=4, on_error=print, abort=threading.Event())
    fanout.start()
    feeder = put_all(fanout, 60)
    feeder.join(60)  # a hang guard: the feeder never waits for the stalled output
    assert not feeder.is_alive()
    stalled.gate.set()
    assert fanout.close() is None
    file, live = fanout.summary()
    assert file == {"uri": str(out), "written": 60, "dropped": 0}
    assert live["written"] + live["dropped"] == 60 and live["dropped"] >= 60 - 4 - 1
    with open_source(str(out)) as src:
        assert sum(1 for _ in src) == 60


def test_a_file_output_holds_the_run_back_in_lossless_mode_and_drops_in_live_mode():
    for lossless in (True, False):
        slow = GatedSink("null://")  # a file-like kind
        fanout = Fanout([slow], lossless=lossless, queue_size=2, on_error=print, abort=threading.Event())
        fanout.start()
        feeder = put_all(fanout, 10)
        if lossless:
            while not fanout.outputs[0].queue.full():
                time.sleep(0.01)
            assert feeder.is_alive()  # waiting for room: back-pressure, nothing dropped
        slow.gate.set()
        feeder.join(60)
        assert not feeder.is_alive()
        fanout.close()
        (summary,) = fanout.summary()
        if lossless:
            assert summary == {"uri": "null://", "written": 10, "dropped": 0}
        else:
            assert summary["written"] + summary["dropped"] == 10


def test_an_output_error_reaches_the_pipeline_and_the_other_outputs_still_close(tmp_path):
    class Broken(NullSink):
        def write(self, image, pts_ns):
            raise OSError("disk full")

    errors = []
    abort = threading.Event()
    out = tmp_path / "out.mp4"
    sinks = open_outputs([str(out)], {}) + [Broken(uri="null://broken")]
    fanout = Fanout(sinks, lossless=True, queue_size=2, on_error=lambda e: (errors.append(e), abort.set()), abort=abort)
    fanout.start()
    for frame in frames(5):
        if not fanout.put(frame):
            break
    fanout.close()
    assert [str(e) for e in errors] == ["disk full"]
    with open_source(str(out)) as src:  # finalised: it plays
        assert sum(1 for _ in src) >= 1


def test_options_go_to_the_outputs_that_take_them(tmp_path):
    sinks = open_outputs([str(tmp_path / "a.mp4"), "http://127.0.0.1:0", "null://"],
                         {"crf": 30, "token": "t"}, fps=25)
    try:
        video, view, null = sinks
        assert view.token == "t" and video._encoder.codec_options["crf"] == "30" and video._encoder.fps == 25
    finally:
        for sink in sinks:
            sink.close()
    with pytest.raises(StreamfuseError, match=r"output option 'crf': none of the outputs \(null://\) takes it"):
        open_outputs(["null://"], {"crf": 30})

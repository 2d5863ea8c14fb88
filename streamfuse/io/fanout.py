"""Several outputs fed from the same fused frames, each with its own thread and bounded queue.

    outputs = Fanout(open_outputs(["out.mp4", "http://127.0.0.1:8090"], {}, fps=30), lossless=True,
                     queue_size=4, on_error=print, abort=threading.Event())
    outputs.start()
    outputs.put(OutputFrame(image, pts_ns, t_paired))   # once per fused frame
    outputs.close()                                      # drains the queues, closes every sink

Who waits and who drops: in lossless mode a file output (video file, image folder, null) gets every
frame, so ``put`` waits while its queue is full (back-pressure, the file is the lossless record).
Every other output (browser view, window, RTSP publish), and every output in live mode, keeps the
newest frames: when its queue is full its oldest frame makes room and counts in that output's own
``dropped``. So a slow viewer or network never stalls the pipeline or the other outputs.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.io.sinks import Sink, open_sink, sink_class
from streamfuse.io.uri import parse_sink, redact_uri

log = logging.getLogger("streamfuse")

LOSSLESS_KINDS = ("video", "images", "null")  # outputs that get every frame in lossless mode
_END = object()
POLL_S = 0.05


@dataclass
class OutputFrame:
    image: np.ndarray  # what the outputs write: the fused frame (or the mosaic / overlay asked for)
    pts_ns: int
    t_paired: float  # time.perf_counter() when the pair was made: latency = paired -> written
    # the IR (as the model saw it, float 0..1, or the raw frame) and visible frames, for the browser's mosaic
    ir: np.ndarray | None = None
    vis: np.ndarray | None = None


def open_outputs(uris: list[str], options: dict, fps: float | None = None) -> list[Sink]:
    """Open every output. Each option goes to the outputs whose kind takes it (crf to video files,
    token to the browser view); an option that no output takes is an error. ``fps``: the nominal rate
    of the encoding outputs."""
    kinds = [parse_sink(uri).kind for uri in uris]
    taken = set().union(*(sink_class(kind).OPTIONS for kind in kinds))
    for key in options:
        if key not in taken:
            raise StreamfuseError(f"output option '{key}': none of the outputs ({', '.join(map(redact_uri, uris))}) "
                                  f"takes it (they take {', '.join(sorted(taken)) or 'no options'})")
    sinks: list[Sink] = []
    try:
        for uri, kind in zip(uris, kinds):
            accepted = sink_class(kind).OPTIONS
            mine = {k: v for k, v in options.items() if k in accepted}
            if fps and "fps" in accepted:
                mine.setdefault("fps", fps)
            sinks.append(open_sink(uri, **mine))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


class Output(threading.Thread):
    """One sink in its own thread. ``timers`` (optional, objects with ``add(seconds)`` under "write" and
    "latency") receive this output's write durations and paired -> written latencies."""

    def __init__(self, sink: Sink, waits: bool, queue_size: int, on_error, abort: threading.Event,
                 timers: dict | None = None):
        super().__init__(name=f"sf-out-{redact_uri(sink.uri)}", daemon=True)
        self.sink, self.waits = sink, waits
        self.queue: queue.Queue = queue.Queue(queue_size)
        self.on_error, self.abort, self.timers = on_error, abort, timers
        self.dropped = 0
        self.t_last: float | None = None  # perf_counter after the last write
        self.error: BaseException | None = None

    def offer(self, item, wait: bool | None = None) -> bool:
        """Queue one frame: wait for room (a lossless file output, or ``wait``) or drop the oldest;
        False when aborted."""
        if not (self.waits if wait is None else wait):
            while True:
                try:
                    self.queue.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        while not self.abort.is_set() and self.error is None:
            try:
                self.queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            while not self.abort.is_set():
                try:
                    item = self.queue.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                t0 = time.perf_counter()
                self.sink.write_frame(item)
                self.t_last = time.perf_counter()
                if self.timers is not None:
                    self.timers["write"].add(self.t_last - t0)
                    self.timers["latency"].add(self.t_last - item.t_paired)
        except BaseException as exc:  # noqa: BLE001 - handed to the pipeline
            self.error = exc
            self.on_error(exc)

    def summary(self) -> dict:
        return {"uri": redact_uri(self.sink.uri), "written": self.sink.frames_written, "dropped": self.dropped}


class Fanout:
    """Every fused frame to every output; see the module docstring for who waits and who drops."""

    def __init__(self, sinks: list[Sink], lossless: bool, queue_size: int, on_error, abort: threading.Event,
                 timers: dict | None = None):
        # the first output's write time and latency are the run's "write" and "latency" stages
        self.outputs = [Output(sink, lossless and parse_sink(sink.uri).kind in LOSSLESS_KINDS, queue_size,
                               on_error, abort, timers if i == 0 else None) for i, sink in enumerate(sinks)]
        self.abort = abort

    def start(self) -> None:
        for out in self.outputs:
            out.start()

    def put(self, frame: OutputFrame) -> bool:
        """Hand one frame to every output; False when the run is aborted."""
        return all([out.offer(frame) for out in self.outputs])

    @property
    def stop_requested(self) -> bool:
        """An output asked the run to stop (the window's q or Esc)."""
        return any(getattr(out.sink, "stop_requested", False) for out in self.outputs)

    @property
    def t_last(self) -> float | None:
        times = [out.t_last for out in self.outputs if out.t_last is not None]
        return max(times) if times else None

    def summary(self) -> list[dict]:
        return [out.summary() for out in self.outputs]

    def close(self) -> BaseException | None:
        """Let each output write what it holds (unless aborted), then close every sink, so files are
        finalised even after an error. Returns the first error of closing, if any."""
        for out in self.outputs:
            if out.is_alive():
                out.offer(_END, wait=True)  # the frames already queued are still written
        for out in self.outputs:
            out.join(10.0)
            if out.is_alive():
                log.warning("output %s did not finish within 10 s; closing it", redact_uri(out.sink.uri))
        first = None
        for out in self.outputs:
            try:
                out.sink.close()
            except Exception as exc:  # noqa: BLE001 - close them all, report the first
                first = first or exc
        return first

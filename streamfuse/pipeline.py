"""The video pipeline: two sources -> pair by pts -> register + fuse -> colour + encode.

Threads and bounded queues (each arrow), so decoding, inference and encoding overlap (PyAV,
OpenCV and the inference runtimes release the GIL while they work)::

    IR reader  ─┐                                                                                    ┌─► output 1
                ├─ pair (FramePairer) ─► stage (register, normalise, model, colour) ─► write (mosaic) ─┼─► output 2
    VIS reader ─┘                                                                                    └─► ...

The per-pair work is the injected ``Stage`` (CpuStage, or GpuStage when the model runs on CUDA);
this module is only the plumbing around it: threads, queues, statistics, shutdown.

Lossless mode (files, sequences): every queue put blocks when full, so a slow model slows the
readers down instead of losing frames. Live mode: readers keep the newest frames, the pair queue
drops its oldest pair when the model falls behind, and every drop is counted. Each output has its
own thread and queue (streamfuse/io/fanout.py): a file output in lossless mode gets every frame, a
browser view, window or RTSP publish drops its own oldest frames instead of stalling the rest.

Shutdown: at the end of either stream (or ``max_frames``) every pair already made is fused and
written. ``Pipeline.stop()`` (the CLI calls it on SIGINT/SIGTERM) and errors stop reading and
fusing at once, and every frame already fused is still written. In all cases the outputs are closed
last, so the output file is finalised, plays, and holds every fused frame. ``run()`` re-raises the
first error after that.
"""
from __future__ import annotations

import contextlib
import logging
from collections import deque
import queue
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.color import to_uint8
from streamfuse.config import RunConfig
from streamfuse.io.frame import Frame, SourceError
from streamfuse.io.reader import ReaderDone
from streamfuse.io.uri import redact_uri
from streamfuse.sync import STREAMS, FramePairer

log = logging.getLogger("streamfuse")

_END = object()  # end-of-work marker passed down the queues
POLL_S = 0.05  # how often blocked threads look at the stop flags


class StageTimer:
    """Durations of one stage; p50/p95 in milliseconds over the last ``keep`` frames (live runs are long)."""

    def __init__(self, keep: int = 10_000):
        self.samples: deque[float] = deque(maxlen=keep)
        self.count = 0  # samples ever added (the status line takes the ones added since its last look)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.count += 1

    def recent_p50_ms(self, since_count: int) -> float | None:
        """Median of the samples added after the timer held ``since_count`` (None: no new sample)."""
        samples = list(self.samples)
        new = min(self.count - since_count, len(samples))
        return float(np.median(samples[-new:])) * 1000 if new > 0 else None

    def summary(self) -> dict:
        samples = list(self.samples)  # one C call: safe while another thread appends (live statistics)
        if not samples:
            return {"n": 0, "p50_ms": None, "p95_ms": None}
        ms = np.asarray(samples) * 1000
        return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p95_ms": round(float(np.percentile(ms, 95)), 2)}


@dataclass
class Stats:
    output: str = ""  # the output URIs (passwords and tokens hidden)
    mode: str = ""
    model: str = ""  # model/variant
    backend: str = ""
    device: str = ""
    sources: dict = field(default_factory=dict)  # stream -> URI (passwords hidden)
    read: dict = field(default_factory=lambda: {s: 0 for s in STREAMS})  # frames decoded per stream
    paired: int = 0
    fused: int = 0
    written: int = 0  # frames handed to the outputs
    unmatched: dict = field(default_factory=lambda: {s: 0 for s in STREAMS})  # no partner within tolerance
    dropped: dict = field(default_factory=lambda: {s: 0 for s in STREAMS} | {"pairs": 0})  # live mode only
    reconnects: dict = field(default_factory=lambda: {s: 0 for s in STREAMS})
    corrupt_packets: dict = field(default_factory=lambda: {s: 0 for s in STREAMS})
    outputs: list = field(default_factory=list)  # per output: {uri, written, dropped}
    seconds: float = 0.0  # from the first frame read to the last frame written
    fps: float = 0.0  # frames written per second over ``seconds``
    stages: dict = field(default_factory=dict)  # stage -> {n, p50_ms, p95_ms}
    ended_early: str | None = None  # the stream that ended while the other had frames left
    stopped_by: str = ""  # "end of streams", "ir ended early", "interrupted", "max_frames", "the ir stream failed", "error"

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"frames read      ir {self.read['ir']}, vis {self.read['vis']}",
            f"paired           {self.paired} (unmatched: ir {self.unmatched['ir']}, vis {self.unmatched['vis']})",
            f"fused / written  {self.fused} / {self.written} in {self.seconds:.2f} s = {self.fps:.2f} fps",
        ]
        if self.mode == "live" or any(self.dropped.values()):
            lines.append(f"dropped (live)   ir {self.dropped['ir']}, vis {self.dropped['vis']}, pairs {self.dropped['pairs']}")
        if any(self.reconnects.values()) or any(self.corrupt_packets.values()):
            lines.append(f"reconnects       ir {self.reconnects['ir']}, vis {self.reconnects['vis']}; corrupt packets "
                         f"ir {self.corrupt_packets['ir']}, vis {self.corrupt_packets['vis']}")
        if len(self.outputs) > 1 or any(o["dropped"] for o in self.outputs):
            lines += [f"output           {o['uri']}: written {o['written']}, dropped {o['dropped']}" for o in self.outputs]
        stages = ", ".join(f"{k} {v['p50_ms']}/{v['p95_ms']}" for k, v in self.stages.items() if v["n"])
        lines.append(f"stage ms p50/p95 {stages}")
        lines.append(f"stopped by       {self.stopped_by}")
        return "\n".join(lines)


class Pipeline:
    """``Pipeline(config).run() -> Stats``. ``fuser``: a ready Fuser (benchmarks, tests; default: load_fuser
    from the config). ``stage``: "auto" (GpuStage when the model runs on CUDA), "cpu" or "gpu" (see
    streamfuse.stage.make_stage); the stage made is ``self.stage`` once ``run`` has started."""

    def __init__(self, config: RunConfig, fuser=None, stage: str = "auto"):
        self.config = config.validate()
        self.fuser = fuser
        self.stage_kind = stage
        self.stage = None
        self.stats = Stats(output=", ".join(map(redact_uri, config.outputs)),
                           sources={"ir": redact_uri(config.ir), "vis": redact_uri(config.vis)})
        self.outputs = None  # the Fanout, once the outputs are open
        self._stop = threading.Event()  # stop reading
        self._hurry = threading.Event()  # also stop fusing queued pairs (interrupt, error); fused frames are still written
        self._abort = threading.Event()  # the writer is gone: every stage quits at once
        self._stop_reason: str | None = None
        self.started = False  # the sources and outputs are open and the run is under way
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        # prepare, model, colour: the stage's steps (GpuStage reports them as one "model" time); compose:
        # mosaic/overlay; write (the first output's sink) and latency (paired -> written): the outputs
        self.timers = {name: StageTimer() for name in ("prepare", "model", "colour", "compose", "write", "latency")}

    # ------------------------------------------------------------------ control
    def stop(self, reason: str = "interrupted", drain: bool = False) -> None:
        """Ask the pipeline to finish: stop reading, write every frame already fused, close the output.
        ``drain`` also fuses the pairs already queued (end of input). Thread-safe, signal-safe."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if not drain:
            self._hurry.set()
        self._stop.set()

    def abort(self) -> None:
        """Finish now: every stage quits, frames still queued for the outputs are left out, the outputs
        are closed (a second Ctrl-C). Signal-safe."""
        self.stop("interrupted")
        self._abort.set()

    def _fail(self, exc: BaseException, abort: bool = False) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self.stop("error")
        if abort:
            self._abort.set()

    # ------------------------------------------------------------------ run
    def run(self) -> Stats:
        from streamfuse.backends import load_fuser
        from streamfuse.geometry import Registration
        from streamfuse.io.fanout import Fanout, open_outputs
        from streamfuse.io.reader import ReaderThread
        from streamfuse.io.sinks import check_writable
        from streamfuse.io.sources import check_source, open_source
        from streamfuse.io.uri import parse_source
        from streamfuse.stage import make_stage

        cfg = self.config
        output_options = {**cfg.output_options, **({"token": cfg.token} if cfg.token else {})}
        for uri in cfg.outputs:
            check_writable(uri, output_options)  # fail before any decoding or model loading
        for s, uri, options in (("ir", cfg.ir, cfg.ir_options), ("vis", cfg.vis, cfg.vis_options)):
            check_source(uri, **{"kind": s, **options})
        self.registration = Registration.from_file(cfg.calib) if cfg.calib else Registration.identity()
        if self.fuser is None:
            extra = {}
            if cfg.onnx_path:
                if not Path(cfg.onnx_path).is_file():
                    raise StreamfuseError(f"{cfg.onnx_path}: ONNX graph not found (onnx_path / --onnx)")
                extra["onnx_path"] = Path(cfg.onnx_path)
            self.fuser = load_fuser(cfg.model, backend=cfg.backend, device=cfg.device, precision=cfg.precision,
                                    variant=cfg.variant, threads=cfg.threads or 1, **extra)
        self.stage = make_stage(self.fuser, self.registration, agc=tuple(cfg.agc), kind=self.stage_kind,
                                keep_inputs=cfg.mosaic or cfg.overlay)
        self.stats.model = f"{self.fuser.spec.name}/{self.fuser.variant}"
        self.stats.backend, self.stats.device = self.fuser.backend, self.fuser.device
        live = any(parse_source(uri).kind in ("rtsp", "v4l2") for uri in (cfg.ir, cfg.vis))
        mode = cfg.mode if cfg.mode != "auto" else ("live" if live else "lossless")
        self.stats.mode = mode
        frame_q = {s: queue.Queue(cfg.queue_size) for s in STREAMS}
        # Each reader starts as soon as its source is open: a live stream that sits unread while the
        # other one connects would hand over a backlog of stale frames. The readers close their sources.
        sources: dict = {}
        readers = self.readers = {}
        self.sources = sources
        try:
            for s, uri, options in (("ir", cfg.ir, cfg.ir_options), ("vis", cfg.vis, cfg.vis_options)):
                sources[s] = open_source(uri, **{"kind": s, **options})
                readers[s] = ReaderThread(sources[s], frame_q[s], mode, name=f"sf-read-{s}")
                readers[s].start()
        except BaseException:
            for r in readers.values():
                r.stop()
            raise
        pair_q: queue.Queue = queue.Queue(cfg.queue_size)
        fused_q: queue.Queue = queue.Queue(cfg.queue_size)
        threads = []
        status = None
        try:
            offset_ms = cfg.offset_ms if cfg.offset_ms is not None else self.registration.time_offset_ms
            self.pairer = FramePairer(
                mode, ir_fps=sources["ir"].fps, vis_fps=sources["vis"].fps,
                tolerance_ns=None if cfg.tolerance_ms is None else int(cfg.tolerance_ms * 1e6),
                offset_ns=int(round(offset_ms * 1e6)), max_wait_ns=int(cfg.max_wait_ms * 1e6))
            log.info("pairing %s: tolerance %.1f ms, IR offset %+.1f ms", mode, self.pairer.tolerance_ns / 1e6, offset_ms)
            rates = [src.fps for src in sources.values() if src.fps]
            # encoders run at the slower stream's rate
            sinks = open_outputs(cfg.outputs, output_options, fps=min(rates) if rates else None)
            self.outputs = Fanout(sinks, lossless=mode == "lossless", queue_size=cfg.queue_size,
                                  on_error=lambda exc: self._fail(exc, abort=True), abort=self._abort,
                                  timers=self.timers)
            self._t0 = time.perf_counter()
            self.started = True
            for sink in sinks:
                sink.stats_source = self.live_stats  # the browser view shows them
            self.outputs.start()
            threads = [threading.Thread(target=self._pair_loop, args=(frame_q, pair_q, mode), name="sf-pair", daemon=True),
                       threading.Thread(target=self._fuse_loop, args=(pair_q, fused_q), name="sf-fuse", daemon=True),
                       threading.Thread(target=self._write_loop, args=(fused_q, self.outputs), name="sf-write", daemon=True)]
            for t in threads:
                t.start()
            status = StatusReporter(self, mode)
            while threads[-1].is_alive():
                threads[-1].join(0.2)  # short joins so the main thread's signal handlers run
                status.tick()
        finally:
            self.stop(self._stop_reason or "end of streams", drain=self._stop_reason is None)
            for r in readers.values():
                r.stop()
            for t in threads:
                t.join(5.0)
            if threads and threads[-1].is_alive():  # e.g. a second Ctrl-C: leave now, then close the file
                self._abort.set()
                threads[-1].join(5.0)
            for r in readers.values():
                r.join(5.0)
            if status is not None:
                status.close()
            if self.outputs is not None:
                error = self.outputs.close()  # finalise the files even after an error
                if error is not None:  # report it, but the first error wins
                    self._fail(error)
            for s, r in readers.items():
                if r.is_alive():
                    log.warning("%s reader did not stop within 5 s", s)
            if self.started:  # also when a second Ctrl-C aborts: the CLI still prints the statistics
                self._finish_stats()
        if self._error is not None:
            log.error("stopped on error after writing %d frame(s) to %s", self.stats.written, self.stats.output)
            raise self._error
        return self.stats

    def live_stats(self) -> dict:
        """The statistics so far, while the run goes on (the browser view shows them)."""
        st = Stats(**self.stats.to_dict())
        self._collect(st, time.perf_counter())
        return st.to_dict()

    def _collect(self, st: Stats, t_end: float) -> None:
        """Counts held by the pairer, readers, sources, outputs and timers, into ``st``."""
        st.paired = self.pairer.paired
        st.unmatched = dict(self.pairer.unmatched)
        for s in STREAMS:
            st.dropped[s] = self.pairer.dropped[s] + getattr(self.readers.get(s), "dropped", 0)
            st.reconnects[s] = getattr(self.sources[s], "reconnects", 0)
            st.corrupt_packets[s] = getattr(self.sources[s], "corrupt_packets", 0)
        st.outputs = self.outputs.summary()
        st.seconds = round(t_end - self._t0, 3)
        st.fps = round(st.written / st.seconds, 3) if st.seconds > 0 else 0.0
        st.stages = {name: t.summary() for name, t in self.timers.items()}

    def _finish_stats(self) -> None:
        st = self.stats
        if self.outputs is not None:
            self._collect(st, self.outputs.t_last or self._t0)  # until the last frame written
        st.ended_early = self.pairer.ended_early
        if self._stop_reason in (None, "end of streams") and st.ended_early:
            other = "vis" if st.ended_early == "ir" else "ir"
            self._stop_reason = f"{st.ended_early} ended early (the {other} stream had more frames)"
        st.stopped_by = self._stop_reason or "end of streams"

    # ------------------------------------------------------------------ stages
    def _put(self, q: queue.Queue, item, until: threading.Event | None = None) -> bool:
        """Blocking put; gives up (False) when ``until`` is set or the pipeline is aborted."""
        while not self._abort.is_set() and not (until is not None and until.is_set()):
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue, until: threading.Event | None = None):
        """Blocking get; None when ``until`` is set or the pipeline is aborted."""
        while not self._abort.is_set() and not (until is not None and until.is_set()):
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def _take(self, stream: str, item) -> None:
        """Feed one reader item to the pairer: a Frame, or the reader's last item (end of stream or error)."""
        if isinstance(item, Frame):
            self.stats.read[stream] += 1
            self.pairer.push(stream, item, time.monotonic_ns())
        elif isinstance(item, ReaderDone):
            if item.error is not None:
                self.stop(f"the {stream} stream failed")  # the statistics say which stream ended the run
                err = item.error
                raise err if isinstance(err, StreamfuseError) else SourceError(f"{stream} stream {item.source}: {err}")
            log.info("%s stream ended after %d frames", stream, self.stats.read[stream])
            self.pairer.end(stream, time.monotonic_ns())
        else:
            raise TypeError(f"unexpected reader item {item!r}")

    def _pair_loop(self, frame_q, pair_q, mode) -> None:
        try:
            limit = self.config.max_frames
            sent = 0
            while not self._stop.is_set() and not self.pairer.done:
                if mode == "lossless":
                    stream = self.pairer.wanted()
                    item = self._get(frame_q[stream], until=self._stop)
                    if item is None:
                        break
                    self._take(stream, item)
                else:
                    got = False
                    for s in STREAMS:
                        try:
                            self._take(s, frame_q[s].get_nowait())
                            got = True
                        except queue.Empty:
                            pass
                    if not got:
                        time.sleep(0.005)
                for ir, vis in self.pairer.pop_pairs(time.monotonic_ns()):
                    pair = (ir, vis, time.perf_counter())
                    if mode == "live":
                        self._put_newest(pair_q, pair)
                    elif not self._put(pair_q, pair, until=self._hurry):
                        return
                    sent += 1
                    if limit and sent >= limit:
                        self.stop("max_frames", drain=True)
                        break
            if self.pairer.done:
                self.stop("end of streams", drain=True)
        except SourceError as exc:
            self._fail(StreamfuseError(str(exc)))
        except BaseException as exc:  # noqa: BLE001 - handed to run()
            self._fail(exc)
        finally:
            self._put(pair_q, _END, until=self._hurry)

    def _put_newest(self, q: queue.Queue, item) -> None:
        """Live mode: never block on a slow model; the oldest waiting pair makes room (counted)."""
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    self.stats.dropped["pairs"] += 1
                except queue.Empty:
                    pass

    def _fuse_loop(self, pair_q, fused_q) -> None:
        try:
            while True:
                item = self._get(pair_q, until=self._hurry)
                if item is None or item is _END:
                    break
                ir, vis, t_paired = item
                result = self.stage.process(ir.image, vis.image)
                for step, seconds in result.seconds.items():
                    self.timers[step].add(seconds)
                self.stats.fused += 1
                if not self._put(fused_q, (result, ir, vis, t_paired)):
                    break
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            self._put(fused_q, _END)

    def _write_loop(self, fused_q, outputs) -> None:
        from streamfuse.calibration.overlay import draw_overlay
        from streamfuse.io.fanout import OutputFrame
        from streamfuse.io.sinks import mosaic

        try:
            while True:
                item = self._get(fused_q)
                if item is None or item is _END:
                    break
                result, ir, vis, t_paired = item
                t0 = time.perf_counter()
                image = result.fused
                if self.config.overlay:
                    image = draw_overlay(image, result.ir)
                frame = OutputFrame(image, vis.pts_ns, t_paired)  # the outputs keep the visible stream's timestamps
                if self.config.mosaic:
                    frame.image = mosaic(to_uint8(result.ir), result.vis, image)
                else:  # the browser view's mosaic (registered frames; the GPU stage keeps those on the GPU)
                    frame.ir = ir.image if result.ir is None else result.ir
                    frame.vis = vis.image if result.vis is None else result.vis
                if self.config.overlay or self.config.mosaic:
                    self.timers["compose"].add(time.perf_counter() - t0)
                if not outputs.put(frame):
                    break
                self.stats.written += 1
                if outputs.stop_requested:  # display sink: the user pressed q or Esc
                    self.stop("q or Esc in the window")
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc, abort=True)


class StatusReporter:
    """The run's status while it goes on: frames fused, fps and latency (p50) since the last report, and
    per stream frames read, dropped, reconnects and whether it is reconnecting right now.

    On a terminal (stderr a TTY and ``progress`` on) it is a progress bar redrawn in place about once a
    second, with the status after it (files in lossless mode also get the percentage and ETA);
    otherwise (a log file, a service, ``--no-progress``) it is an INFO log line every ``status_every``
    seconds (0: none). The pipeline's main thread calls ``tick`` a few times a second."""

    TTY_REFRESH_S = 1.0

    def __init__(self, pipeline: "Pipeline", mode: str):
        self.pipeline = pipeline
        self.live = mode == "live"
        self.bar = None
        self.every = pipeline.config.status_every
        self._logs_above_bar = contextlib.nullcontext()
        if pipeline.config.progress and sys.stderr.isatty():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            counts = [src.frame_count for src in pipeline.sources.values()]
            total = min(counts) if mode == "lossless" and all(counts) else None
            self.bar = tqdm(total=total, unit="frame", desc="fusing", file=sys.stderr, dynamic_ncols=True,
                            leave=False)
            self.every = self.TTY_REFRESH_S
            self._logs_above_bar = logging_redirect_tqdm()  # a drop or reconnect line must not land on the bar
        self._logs_above_bar.__enter__()
        self._last = (time.perf_counter(), 0, pipeline.timers["latency"].count)  # time, written, latencies

    def tick(self) -> None:
        now = time.perf_counter()
        if not self.every or now - self._last[0] < self.every:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(self.line(now, with_frames=False), refresh=False)
            self.bar.update(self.pipeline.stats.written - self.bar.n)
            self.bar.refresh()
        else:
            log.info("status %s", self.line(now))

    def line(self, now: float, with_frames: bool = True) -> str:
        """e.g. ``0:01:05 fused 1890, 29.6 fps, latency 41 ms | ir read 1952, dropped 3, reconnects 1 | vis ...``
        (``with_frames`` False: without the time, count and fps, which the progress bar shows itself)."""
        p = self.pipeline
        t_last, written_last, latency_count = self._last
        written, latency = p.stats.written, p.timers["latency"]
        p50 = latency.recent_p50_ms(latency_count)
        self._last = (now, written, latency.count)
        head = f"latency {p50:.0f} ms" if p50 is not None else "latency -"
        if with_frames:
            elapsed = int(now - p._t0)
            head = (f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d} fused {written}, "
                    f"{(written - written_last) / (now - t_last):.1f} fps, {head}")
        parts = [head]
        for s in STREAMS:
            source, reader = p.sources[s], p.readers[s]
            text = f"{s} read {p.stats.read[s]}"
            dropped = p.pairer.dropped[s] + reader.dropped
            if self.live or dropped:
                text += f", dropped {dropped}"
            if source.is_live:
                text += f", reconnects {source.reconnects}" + ("" if getattr(source, "connected", True) else
                                                                 " (reconnecting)")
            if source.corrupt_packets:
                text += f", bad frames {source.corrupt_packets}"
            parts.append(text)
        if p.stats.dropped["pairs"]:
            parts.append(f"pairs dropped {p.stats.dropped['pairs']}")
        return " | ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.pipeline.stats.written - self.bar.n)
            self.bar.close()
        self._logs_above_bar.__exit__(None, None, None)


@contextlib.contextmanager
def stop_on_signals(stop, abort=None):
    """SIGINT/SIGTERM: the first calls ``stop("interrupted")`` (a clean finish), the second ``abort()``
    (the output is still closed, without the frames queued for it), a third raises KeyboardInterrupt.
    Handlers are installed only from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = []

    def handler(signum, _frame):
        seen.append(signum)
        name = signal.Signals(signum).name
        if len(seen) == 1:
            print(f"\n{name}: stopping; writing the frames fused so far and closing the output "
                  "(send it again to abort)", file=sys.stderr)
            stop("interrupted")
        elif len(seen) == 2 and abort is not None:
            print(f"\n{name}: aborting; closing the output without the frames still queued for it "
                  "(send it again to quit at once)", file=sys.stderr)
            abort()
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

"""Pairing IR and visible frames by presentation time.

``FramePairer`` is pure logic (no threads, no clock of its own), fed frame by frame::

    pairer = FramePairer(ir_fps=30, vis_fps=25)
    pairer.push("ir", frame)          # frames of one stream arrive in pts order
    for ir, vis in pairer.pop_pairs():
        ...
    pairer.end("vis")                 # that stream has no more frames

The scheme follows DL Streamer's ``gvastreammux`` (anchor / pts tolerance / max wait): the earliest
pending frame of either stream is the anchor; the other stream's head is its partner when it lies
within ``tolerance`` and the anchor is also the partner's nearest frame (mutual nearest pts, so
streams at different fps pair each frame of the slower stream with the closest frame of the
faster one and never use a frame twice). An anchor without a partner within tolerance can never
get one (frames arrive in pts order), so it is set aside as *unmatched*.

Modes:
- ``lossless`` (files, sequences): never drops for speed. When the decision needs the next frame
  of a stream (to know whether it is a nearer partner), ``wanted()`` names that stream and the
  caller blocks on it: back-pressure, not drops.
- ``live``: no waiting for a look-ahead frame; an anchor whose partner stream has sent nothing for
  ``max_wait`` is dropped, and at most ``max_pending`` frames per stream are held (oldest dropped).
  Drops are counted in ``dropped``.

``offset`` is added to every IR pts (cameras started apart: IR pts + offset = visible pts of the
same instant).
"""
from __future__ import annotations

import logging
from collections import deque

from streamfuse import StreamfuseError
from streamfuse.io.frame import Frame

log = logging.getLogger("streamfuse")

STREAMS = ("ir", "vis")
MODES = ("lossless", "live")
FALLBACK_FPS = 30.0  # for the default tolerance when a source does not know its rate


def default_tolerance_ns(ir_fps: float | None, vis_fps: float | None) -> int:
    """Half the frame period of the slower stream."""
    rates = [f for f in (ir_fps, vis_fps) if f and f > 0] or [FALLBACK_FPS]
    return int(round(0.5e9 / min(rates)))


class FramePairer:
    def __init__(self, mode: str = "lossless", ir_fps: float | None = None, vis_fps: float | None = None,
                 tolerance_ns: int | None = None, offset_ns: int = 0, max_wait_ns: int = 200_000_000,
                 max_pending: int = 8):
        if mode not in MODES:
            raise StreamfuseError(f"pairing mode '{mode}': expected one of {', '.join(MODES)}")
        self.mode = mode
        self.tolerance_ns = default_tolerance_ns(ir_fps, vis_fps) if tolerance_ns is None else int(tolerance_ns)
        if self.tolerance_ns < 0:
            raise StreamfuseError(f"pairing tolerance must be >= 0 ns, got {self.tolerance_ns}")
        self.offset_ns = int(offset_ns)
        self.max_wait_ns = int(max_wait_ns)
        self.max_pending = max_pending
        # pending (time_ns, arrival_ns, frame) per stream, in time order
        self._q: dict[str, deque] = {s: deque() for s in STREAMS}
        self._ended = {s: False for s in STREAMS}
        self._last_time: dict[str, int | None] = {s: None for s in STREAMS}
        self._last_arrival = {s: 0 for s in STREAMS}
        self._ended_early: str | None = None
        self._out: list[tuple[Frame, Frame]] = []
        self.paired = 0
        self.unmatched = {s: 0 for s in STREAMS}  # no partner within tolerance (lossless and live)
        self.dropped = {s: 0 for s in STREAMS}  # live only: given up to keep latency bounded
        self.pushed = {s: 0 for s in STREAMS}

    # ------------------------------------------------------------------ input
    def time_of(self, stream: str, frame: Frame) -> int:
        """The frame's time on the common clock (IR pts + offset; visible pts)."""
        return frame.pts_ns + (self.offset_ns if stream == "ir" else 0)

    def push(self, stream: str, frame: Frame, now_ns: int = 0) -> None:
        """Add the next frame of ``stream``; ``now_ns`` (any monotonic clock) matters in live mode only."""
        self._check(stream)
        if self._ended[stream]:
            raise StreamfuseError(f"frame pushed on the {stream} stream after it ended")
        t = self.time_of(stream, frame)
        self.pushed[stream] += 1
        last = self._last_time[stream]
        if last is not None and t <= last:
            # A file whose pts go backwards or repeat: the frame cannot be placed in time.
            log.warning("%s frame %d: pts %.3f s is not after the previous frame's %.3f s; skipped",
                        stream, frame.seq, frame.pts_ns / 1e9, (last - (self.offset_ns if stream == "ir" else 0)) / 1e9)
            self.unmatched[stream] += 1
            return
        self._last_time[stream] = t
        self._last_arrival[stream] = now_ns
        q = self._q[stream]
        q.append((t, now_ns, frame))
        if self.mode == "live" and len(q) > self.max_pending:
            q.popleft()
            self.dropped[stream] += 1
        self._resolve(now_ns)

    def end(self, stream: str, now_ns: int = 0) -> None:
        """``stream`` has no more frames."""
        self._check(stream)
        self._ended[stream] = True
        self._resolve(now_ns)

    # ------------------------------------------------------------------ output
    def pop_pairs(self, now_ns: int | None = None) -> list[tuple[Frame, Frame]]:
        """Pairs decided so far, oldest first, as (ir, vis). In live mode pass ``now_ns`` to apply max_wait."""
        if now_ns is not None:
            self._resolve(now_ns)
        out, self._out = self._out, []
        return out

    def wanted(self) -> str | None:
        """The stream whose next frame the pairer needs to decide (lossless mode blocks on it); None when done."""
        if self.done:
            return None
        ir_q, vis_q = self._q["ir"], self._q["vis"]
        if ir_q and vis_q:
            # waiting for the look-ahead frame of the anchor's stream
            return "ir" if ir_q[0][0] <= vis_q[0][0] else "vis"
        open_streams = [s for s in STREAMS if not self._ended[s] and not self._q[s]]
        if len(open_streams) == 1:
            return open_streams[0]
        # both empty and open: the stream that is behind in time
        t_ir, t_vis = self._last_time["ir"], self._last_time["vis"]
        if t_ir is None or (t_vis is not None and t_ir <= t_vis):
            return "ir"
        return "vis"

    @property
    def done(self) -> bool:
        """No further pair is possible: a stream ended with nothing pending (or both ended)."""
        if all(self._ended.values()):
            return True
        for s in STREAMS:
            other = _other(s)
            if self._ended[s] and not self._q[s] and (self._ended[other] or self._ended_early == s):
                return True
        return False

    @property
    def ended_early(self) -> str | None:
        """The stream that ended while the other still had frames beyond it (None if both ended together)."""
        return self._ended_early

    def pending(self, stream: str) -> int:
        return len(self._q[stream])

    # ------------------------------------------------------------------ logic
    def _resolve(self, now_ns: int) -> None:
        tol = self.tolerance_ns
        while True:
            ir_q, vis_q = self._q["ir"], self._q["vis"]
            if not ir_q or not vis_q:
                self._resolve_alone(now_ns)
                return
            x_s = "ir" if ir_q[0][0] <= vis_q[0][0] else "vis"
            y_s = _other(x_s)
            xq, yq = self._q[x_s], self._q[y_s]
            tx, ty = xq[0][0], yq[0][0]
            if ty - tx > tol:  # no partner for the anchor now or later
                self._set_aside(x_s)
                continue
            if len(xq) >= 2:
                if abs(xq[1][0] - ty) < ty - tx:  # the anchor's successor is nearer to the partner
                    self._set_aside(x_s)
                    continue
            elif not self._ended[x_s] and self.mode == "lossless":
                return  # need the anchor stream's next frame to know; wanted() says which
            x, y = xq.popleft()[2], yq.popleft()[2]
            self._out.append((x, y) if x_s == "ir" else (y, x))
            self.paired += 1

    def _resolve_alone(self, now_ns: int) -> None:
        """One queue is empty: frames in the other can only wait, or never get a partner."""
        for s in STREAMS:
            other = _other(s)
            q = self._q[s]
            if not q:
                continue
            if self._ended[other]:
                last_other = self._last_time[other]
                # more than a frame period of the slower stream beyond the ended one: it ended early
                if last_other is not None and q[-1][0] > last_other + 2 * self.tolerance_ns and self._ended_early is None:
                    self._ended_early = other
                while q:
                    self._set_aside(s)
            elif self.mode == "live":
                # bounded wait for a partner, measured from when the other stream last delivered or
                # from the anchor's arrival, whichever is later
                while q and now_ns - max(q[0][1], self._last_arrival[other]) > self.max_wait_ns:
                    q.popleft()
                    self.dropped[s] += 1

    def _set_aside(self, stream: str) -> None:
        self._q[stream].popleft()
        self.unmatched[stream] += 1

    @staticmethod
    def _check(stream: str) -> None:
        if stream not in STREAMS:
            raise ValueError(f"stream must be 'ir' or 'vis', not {stream!r}")


def _other(stream: str) -> str:
    return "vis" if stream == "ir" else "ir"

"""Frame sources behind one factory: ``open_source(uri, **options) -> Source``.

Every source has the same surface:
  ``read(timeout=None) -> Frame | None``  a frame; None when ``timeout`` seconds passed without one
                                           (live sources only); raises ``EndOfStream`` at the end and
                                           ``SourceError`` (a StreamfuseError) when it cannot go on.
  ``uri``, ``fps`` (float or None), ``size`` (w, h), ``is_live``, ``frame_count`` (int or None),
  ``reconnects``, ``corrupt_packets``, ``close()`` (idempotent), context manager, iteration.

``kind`` (every source): "ir" -> Frame.image is HxW (uint8, or uint16 for 16-bit sources such as Y16
thermal cores or 16-bit PNGs); "vis" -> HxWx3 BGR uint8.

Timestamps (Frame.pts_ns):
  files      (PTS - stream start) x time_base, so every file starts at 0 (cameras started apart:
             give the pairer an offset).
  images     seq / fps.
  loop=true  (files and image sequences) the source starts again at its end, forever, and time runs
             on: each pass starts one frame period after the last frame of the pass before (demos,
             soak tests, a recorded rig replayed to the browser view). Stop the run with max_frames
             or Ctrl-C.
  rtsp       clock="stream" (default): the frame's RTP time plus the smallest delay seen so far
             between RTP time and arrival (time.monotonic_ns()): capture times on the monotonic clock,
             free of network jitter (the frames buffered while the stream is probed come out close
             together; from then on the spacing is the camera's).
             One clock for every live source in the process, so two cameras can be paired; it runs
             on across reconnects. clock="arrival": time.monotonic_ns() at each frame's decode.
  v4l2       the driver's capture timestamps, which are on the same monotonic clock (shifted onto
             it if a driver uses another clock, see monotonic_offset).
"""
from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
import stat
import time
from collections import deque
from pathlib import Path

import av
import av.error
import cv2
import numpy as np
from av.video.reformatter import ColorRange, VideoReformatter

from streamfuse import StreamfuseError
from streamfuse.io.frame import EndOfStream, Frame, SourceError
from streamfuse.io.images import read_image
from streamfuse.io.uri import check_options, expand_images, parse_source, positive_number, redact_uri

log = logging.getLogger("streamfuse")

KINDS = ("ir", "vis")
NS = 1_000_000_000
RECORDING_END_SLACK_S = 0.5  # an RTSP recording that stops this close to its announced end has ended
CLOCK_DRIFT_ALLOWANCE = 1e-4  # RTSP stream clock: a camera clock may run up to 100 ppm slow

# Formats whose first plane is the 8-bit luma, read directly for IR (no colour conversion at all).
_LUMA8_FORMATS = {"gray", "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
                  "yuv440p", "yuvj440p", "yuv411p", "yuv410p", "nv12", "nv21", "nv16"}


def open_source(uri: str, **options) -> "Source":
    """Open a video file, image sequence, RTSP stream or V4L2 device (see streamfuse/io/uri.py)."""
    parsed = parse_source(uri)
    options = {**parsed.params, **options}
    cls = {"file": VideoFileSource, "images": ImageSequenceSource,
           "rtsp": RtspSource, "v4l2": V4L2Source}[parsed.kind]
    check_options(redact_uri(uri), options, cls.OPTIONS)
    return cls(parsed.target, uri=str(uri), **options)


def check_source(uri: str, **options) -> None:
    """Fail early (before a model loads) when a local input cannot be opened: a video file or image
    sequence is opened and closed again, which costs milliseconds. Cameras and RTSP streams connect
    when the run starts (their reconnect logic applies)."""
    if parse_source(uri).kind in ("file", "images"):
        open_source(uri, **options).close()


def probe(uri: str, max_frames: int = 30, seconds: float = 10.0, **options) -> dict:
    """Open a source and read up to ``max_frames`` frames or ``seconds``: what it is and how it runs."""
    started = time.monotonic()
    with open_source(uri, **options) as src:
        opened_s = time.monotonic() - started
        info = {"uri": src.uri, "type": type(src).__name__, "live": src.is_live, "size": src.size,
                "fps": src.fps, "frame_count": src.frame_count, "open_s": round(opened_s, 3)}
        pts, shape, dtype, ended = [], None, None, False
        deadline = time.monotonic() + seconds
        while len(pts) < max_frames and time.monotonic() < deadline:
            try:
                frame = src.read(timeout=max(0.0, deadline - time.monotonic()))
            except EndOfStream:
                ended = True
                break
            if frame is not None:
                pts.append(frame.pts_ns)
                shape, dtype = frame.image.shape, str(frame.image.dtype)
        span_s = (pts[-1] - pts[0]) / NS if len(pts) > 1 else 0.0
        info.update({"frames_read": len(pts), "frame_shape": shape, "dtype": dtype, "ended": ended,
                     "pts_first_s": pts[0] / NS if pts else None, "pts_span_s": span_s,
                     "pts_fps": round((len(pts) - 1) / span_s, 3) if span_s > 0 else None,
                     "reconnects": src.reconnects, "corrupt_packets": src.corrupt_packets})
    return info


def video_frame_count(path) -> int:
    """Frames in a video file: the container's count, else its packets counted without decoding
    (MKV and fragmented MP4, such as the crash-safe files the video sinks write, keep no count)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.frames or sum(1 for packet in container.demux(stream) if packet.size)


class Source(ABC):
    """What every source shares; subclasses implement ``read``."""

    OPTIONS: set[str] = {"kind"}
    is_live = False

    def __init__(self, uri: str, kind: str):
        uri = redact_uri(uri)  # the name shown in every message, statistic and frame; never a password
        if kind not in KINDS:
            raise StreamfuseError(f"{uri}: kind must be one of {', '.join(KINDS)}, got '{kind}'")
        self.uri = uri
        self.kind = kind
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None
        self.frame_count: int | None = None
        self.reconnects = 0
        self.corrupt_packets = 0
        self.max_bad_frames = 30  # frames in a row that cannot be used before the stream is an error
        self._bad_in_row = 0
        self._frame_size: tuple[int, int] | None = None  # the first frame's (w, h): every frame's
        self._seq = 0
        self._closed = False
        self._container = None  # the PyAV container of the stream-based sources
        self._decoder: _PacketDecoder | None = None

    @abstractmethod
    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, None on timeout; EndOfStream at the end, SourceError on failure (per source type)."""

    def close(self) -> None:
        if not self._closed and self._container is not None:
            self._container.close()
            self._container = None
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise SourceError(f"{self.uri}: read after close")

    def _attach(self, container, low_latency: bool = False, prefer_guessed_rate: bool = False) -> None:
        """Decode ``container``'s first video stream from now on; fps and size come from it."""
        self._container = container
        self._decoder = _PacketDecoder(container, self, low_latency=low_latency)
        stream = self._decoder.stream
        first, second = stream.average_rate, stream.guessed_rate
        if prefer_guessed_rate:
            first, second = second, first
        rate = first or second
        self.fps = float(rate) if rate else self.fps
        self.size = (stream.codec_context.width, stream.codec_context.height)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        """Frames until the end of the stream (handy for files and sequences)."""
        while True:
            try:
                frame = self.read()
            except EndOfStream:
                return
            if frame is not None:
                yield frame

    def _emit(self, image: np.ndarray, pts_ns: int, name: str | None = None) -> Frame | None:
        """The frame, or None when its size differs from the stream's first frame: such a frame is
        skipped (the registration and the outputs are sized on the first), see ``_skip``."""
        size = (image.shape[1], image.shape[0])
        self._frame_size = self._frame_size or size
        if size != self._frame_size:
            self._skip(name or f"frame at {pts_ns / NS:.3f} s",
                       f"frame is {size[0]}x{size[1]}, the stream is {self._frame_size[0]}x{self._frame_size[1]}")
            return None
        self._bad_in_row = 0
        frame = Frame(image=image, pts_ns=int(pts_ns), seq=self._seq, source=self.uri)
        self._seq += 1
        return frame

    def _skip(self, name: str, problem: str) -> None:
        """Count a frame that cannot be used (named in a warning at the start of each run of such
        frames); ``max_bad_frames`` in a row end the stream with a SourceError."""
        self.corrupt_packets += 1
        self._bad_in_row += 1
        if self._bad_in_row >= self.max_bad_frames:
            raise SourceError(f"{self.uri}: {self._bad_in_row} frames in a row could not be used "
                              f"(last: {name}: {problem}; max_bad_frames {self.max_bad_frames})")
        if self._bad_in_row == 1:
            log.warning("%s: skipped %s (%s)", self.uri, name, problem)

    def __repr__(self):
        return f"{type(self).__name__}({self.uri!r}, kind={self.kind!r}, size={self.size}, fps={self.fps})"


class FrameConverter:
    """av.VideoFrame -> numpy in the layout ``kind`` asks for, with one reformatter reused for all frames.

    IR from 8-bit YUV or gray: the luma plane is read directly (no colour conversion; a lookup table
    stretches TV-range luma 16..235 to 0..255). IR from >8-bit formats: 16-bit gray (uint16).
    VIS: BGR uint8.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        name = frame.format.name
        if self.kind == "vis":
            if name == "bgr24":
                return frame.to_ndarray()
            return self._reformatter.reformat(frame, format="bgr24").to_ndarray()
        if name in _LUMA8_FORMATS:
            luma = _luma(frame)
            full_range = name.startswith("yuvj") or frame.color_range == ColorRange.JPEG
            return luma if full_range else cv2.LUT(luma, _TV_TO_FULL)
        if frame.format.components[0].bits > 8:
            if name != "gray16le":
                frame = self._reformatter.reformat(frame, format="gray16le")
            return frame.to_ndarray()
        return _luma(self._reformatter.reformat(frame, format="gray"))


# Video luma is usually "TV range" (16 black .. 235 white); gray images use 0..255.
_TV_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def _luma(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return rows[: frame.height, : frame.width].copy()


def _av_reason(exc: BaseException) -> str:
    """FFmpeg's message without the errno noise."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _seconds(uri: str, name: str, value) -> float:
    """A duration option, checked: a positive number of seconds."""
    return positive_number(uri, name, value, " of seconds")


def _count(uri: str, name: str, value) -> int:
    """A whole-number option of at least 1, checked."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StreamfuseError(f"{uri}: {name} must be a whole number of at least 1, got '{value}'")
    return value


def _flag(uri: str, name: str, value) -> bool:
    """A true/false option, checked."""
    if not isinstance(value, bool):
        raise StreamfuseError(f"{uri}: {name} must be true or false, got '{value}'")
    return value


def _pts_ns(ticks: int, time_base) -> int:
    """ticks x time_base in ns, rounded to the nearest ns (exact integer arithmetic)."""
    return (2 * ticks * NS * time_base.numerator + time_base.denominator) // (2 * time_base.denominator)


class _PacketDecoder:
    """Demux one video stream and decode it; packets that fail to decode are skipped and counted."""

    def __init__(self, container, source: Source, low_latency: bool = False):
        self.stream = container.streams.video[0]
        # frame threading is fastest but holds back one frame per thread: not for live low latency
        self.stream.thread_type = "SLICE" if low_latency else "AUTO"
        self._packets = container.demux(self.stream)
        self._frames: deque = deque()
        self._source = source
        self.ended = False

    def next_frame(self):
        """The next decoded av.VideoFrame, or None when the demuxer is at its end.

        Demux errors (I/O, timeouts, lost connections) propagate as av.FFmpegError / OSError.
        """
        while not self._frames:
            if self.ended:
                return None
            try:
                packet = next(self._packets)
            except StopIteration:
                self.ended = True
                continue
            if packet.is_corrupt:
                self._source.corrupt_packets += 1
                continue
            try:
                self._frames.extend(packet.decode())
            except av.error.InvalidDataError:
                self._source.corrupt_packets += 1
        return self._frames.popleft()


class VideoFileSource(Source):
    """Any FFmpeg-readable video file through PyAV; the first video stream. ``loop``: start again at the end."""

    OPTIONS = {"kind", "loop", "max_bad_frames"}

    def __init__(self, path: str, uri: str | None = None, kind: str = "vis", loop: bool = False,
                 max_bad_frames: int = 30):
        super().__init__(uri or str(path), kind)
        self.path = Path(path)
        self.loop = _flag(self.uri, "loop", loop)
        self.max_bad_frames = _count(self.uri, "max_bad_frames", max_bad_frames)
        if not self.path.is_file():
            raise SourceError(f"{self.uri}: no such video file")
        self._open()
        stream = self._decoder.stream
        self._declared_frames = stream.frames or None
        self.frame_count = None if loop else self._declared_frames
        self._time_base = stream.time_base
        self._start = stream.start_time or 0
        self._convert = FrameConverter(kind)
        self._pass_start_ns = 0  # where the current pass starts on the output time line (loop)
        self._pass_frames = 0
        self._last_pts_ns = -1
        self._warned_short = False

    def _open(self) -> None:
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as e:
            raise SourceError(f"{self.uri}: cannot open as a video ({_av_reason(e)})") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.uri}: has no video stream")
        self._attach(container)

    def read(self, timeout: float | None = None) -> Frame:
        self._check_open()
        while True:  # until a frame of the stream's size (see Source._emit)
            frame = self._decode_next()
            if frame.pts is None:  # rare (raw streams): fall back to the frame index
                pts_ns = round(self._pass_frames * NS / (self.fps or 30.0))
            else:
                pts_ns = _pts_ns(frame.pts - self._start, self._time_base)
            self._pass_frames += 1
            self._last_pts_ns = self._pass_start_ns + pts_ns
            emitted = self._emit(self._convert(frame), self._last_pts_ns)
            if emitted is not None:
                return emitted

    def _decode_next(self) -> av.VideoFrame:
        try:
            frame = self._decoder.next_frame()
            if frame is None and self.loop and self._pass_frames:
                self._check_complete()
                self._container.close()
                self._open()
                self._pass_start_ns = self._last_pts_ns + round(NS / (self.fps or 30.0))
                self._pass_frames = 0
                frame = self._decoder.next_frame()
        except (av.FFmpegError, OSError) as e:
            raise SourceError(f"{self.uri}: read failed ({_av_reason(e)})") from None
        if frame is None:
            self._check_complete()
            raise EndOfStream(self.uri)
        return frame

    def _check_complete(self) -> None:
        """At the end of a pass: nothing decodable is an error; fewer frames than the file declares
        (a truncated file) is one warning."""
        if self._pass_frames == 0 and self._seq == 0:
            raise SourceError(f"{self.uri}: no frame could be decoded ({self.corrupt_packets} corrupt packet(s))")
        if self._declared_frames and self._pass_frames < self._declared_frames and not self._warned_short:
            self._warned_short = True
            log.warning("%s: ended after %d of the %d frames the file declares (truncated or damaged?)",
                        self.uri, self._pass_frames, self._declared_frames)


class ImageSequenceSource(Source):
    """A folder of frames (KAIST set00/V000/lwir, M3SVD ir/, ...) or a glob, played at ``fps``;
    ``loop``: start again at the end.

    A file that does not decode, or whose size differs from the sequence's first frame, is skipped
    (not resized: a frame of another size is most likely from another camera), named in one warning
    and counted in ``corrupt_packets``; the frames after it keep their place in time (pts = file
    position / fps), so pairing is unchanged. ``max_bad_frames`` (default 30) files in a row that
    cannot be used end the stream with a SourceError.
    """

    OPTIONS = {"kind", "fps", "loop", "max_bad_frames"}

    def __init__(self, target: str, uri: str | None = None, kind: str = "vis", fps: float = 30.0,
                 loop: bool = False, max_bad_frames: int = 30):
        super().__init__(uri or str(target), kind)
        self.fps = positive_number(self.uri, "fps", fps)
        self.loop = _flag(self.uri, "loop", loop)
        self.max_bad_frames = _count(self.uri, "max_bad_frames", max_bad_frames)
        self.files = expand_images(target)
        self.frame_count = None if loop else len(self.files)
        self._position = 0  # files consumed, over all passes: the time line
        self._next: Frame | None = None
        try:
            self._next = self.read()
        except EndOfStream:
            raise SourceError(f"{self.uri}: none of the {len(self.files)} image files could be read") from None
        self.size = self._frame_size

    def _load(self, path: Path) -> np.ndarray:
        img = read_image(path, what="frame")
        if self.kind == "ir":
            return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img

    def read(self, timeout: float | None = None) -> Frame:
        self._check_open()
        if self._next is not None:
            frame, self._next = self._next, None
            return frame
        while True:  # bad files on the way are skipped and counted (Source._skip)
            if self._position >= len(self.files) and not self.loop:
                raise EndOfStream(self.uri)
            path = self.files[self._position % len(self.files)]
            pts_ns = round(self._position * NS / self.fps)
            self._position += 1
            try:
                img = self._load(path)
            except StreamfuseError as e:
                self._skip(f"frame {path.name}", str(e).split(": ", 1)[-1])
                continue
            frame = self._emit(img, pts_ns, name=f"frame {path.name}")
            if frame is not None:
                return frame


class RtspSource(Source):
    """An RTSP stream through PyAV, with read timeouts and reconnect with exponential backoff.

    The first connection must succeed within ``open_timeout`` (else SourceError naming the URL and
    why). Later, a lost or stalled connection (no packet for ``read_timeout`` s) is reopened after
    ``backoff``, 2 x backoff, ... up to ``max_backoff`` seconds between tries, ``max_retries`` tries in a
    row (None: forever); each success adds one to ``reconnects``. A recording served over RTSP (the
    server announces a duration) that plays to its end is EndOfStream, not a reconnect.
    """

    OPTIONS = {"kind", "transport", "open_timeout", "read_timeout", "low_latency", "reconnect",
               "max_retries", "backoff", "max_backoff", "clock"}
    is_live = True

    def __init__(self, url: str, uri: str | None = None, kind: str = "vis", transport: str = "tcp",
                 open_timeout: float = 10.0, read_timeout: float = 5.0, low_latency: bool = True,
                 reconnect: bool = True, max_retries: int | None = 8, backoff: float = 0.5,
                 max_backoff: float = 8.0, clock: str = "stream"):
        super().__init__(uri or url, kind)
        if transport not in ("tcp", "udp"):
            raise StreamfuseError(f"{self.uri}: transport must be tcp or udp, got '{transport}'")
        if clock not in ("arrival", "stream"):
            raise StreamfuseError(f"{self.uri}: clock must be arrival or stream, got '{clock}'")
        self.url = url
        self.transport = transport
        self.clock = clock
        if isinstance(max_retries, str) and max_retries.lower() in ("none", "null", "forever"):
            max_retries = None
        try:
            max_retries = None if max_retries is None else int(max_retries)
        except (TypeError, ValueError):
            raise StreamfuseError(f"{self.uri}: max_retries must be a whole number or none, got '{max_retries}'") from None
        self.reconnect, self.max_retries = reconnect, max_retries
        self.backoff, self.max_backoff = _seconds(self.uri, "backoff", backoff), _seconds(self.uri, "max_backoff", max_backoff)
        self.open_timeout = _seconds(self.uri, "open_timeout", open_timeout)
        self.read_timeout = _seconds(self.uri, "read_timeout", read_timeout)
        self.low_latency = low_latency
        self.av_options = rtsp_av_options(transport, self.read_timeout, low_latency)
        self._convert = FrameConverter(kind)
        self._failures = 0  # failed reconnect tries in a row
        self._next_try = 0.0
        self._last_pts_ns: int | None = None
        self._last_arrival = 0
        # arrival - RTP time, lowest so far on this connection: the frames that came straight through
        # (not held in a buffer or delayed by the network) set it
        self._min_delay: int | None = None
        try:
            self._connect()
        except (av.FFmpegError, OSError) as e:
            raise SourceError(f"{self.uri}: cannot open RTSP stream ({_av_reason(e)}; "
                              f"open timeout {self.open_timeout:g} s)") from None

    def _connect(self) -> None:
        container = self._open_container(self.av_options)
        if container.streams.video and not container.streams.video[0].codec_context.width:
            # the short probe saw no picture size (no parameter sets in the SDP): probe as usual
            container.close()
            options = {k: v for k, v in self.av_options.items() if k != "analyzeduration"}
            container = self._open_container(options)
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.uri}: the RTSP stream has no video track")
        # RTSP's average rate is estimated from a few probed packets (28.5 for a 30 fps stream);
        # the guessed rate comes from the stream's own timing
        self._attach(container, low_latency=self.low_latency, prefer_guessed_rate=True)
        self._min_delay = None  # RTP time starts anew with each session
        self._last_raw_s: float | None = None  # the latest frame's RTP time, seconds

    def _open_container(self, options: dict):
        return av.open(self.url, options=options, timeout=(self.open_timeout, self.read_timeout))

    def _drop_connection(self, reason: str) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, OSError):
                pass
        self._container = self._decoder = None
        if not self.reconnect:
            raise SourceError(f"{self.kind} stream {self.uri}: connection lost ({reason}; reconnect is off)")
        self._lost_reason, self._lost_at = reason, time.monotonic()
        delay = self._delay()
        self._next_try = self._lost_at + delay
        log.warning("%s stream %s: connection lost (%s); reconnect try 1%s in %.1f s", self.kind, self.uri,
                    reason, self._of_max(), delay)

    def _delay(self) -> float:
        return min(self.backoff * 2 ** self._failures, self.max_backoff)

    def _of_max(self) -> str:
        return "" if self.max_retries is None else f" of {self.max_retries}"

    def _try_reconnect(self) -> None:
        try:
            self._connect()
        except (av.FFmpegError, OSError) as e:
            self._failures += 1
            away = time.monotonic() - self._lost_at
            if self.max_retries is not None and self._failures >= self.max_retries:
                raise SourceError(f"{self.kind} stream {self.uri}: connection lost ({self._lost_reason}) and "
                                  f"{self._failures} reconnect tries failed over {away:.1f} s (last: "
                                  f"{_av_reason(e)}); gave up (max_retries {self.max_retries})") from None
            delay = self._delay()
            self._next_try = time.monotonic() + delay
            log.info("%s stream %s: reconnect try %d%s failed (%s); try %d in %.1f s", self.kind, self.uri,
                     self._failures, self._of_max(), _av_reason(e), self._failures + 1, delay)
            return
        self.reconnects += 1
        log.warning("%s stream %s: reconnected on try %d%s, %.1f s after the connection was lost (reconnects: %d)",
                    self.kind, self.uri, self._failures + 1, self._of_max(), time.monotonic() - self._lost_at,
                    self.reconnects)
        self._failures = 0

    @property
    def connected(self) -> bool:
        """False while the connection is lost and the source waits to reconnect (the status line shows it)."""
        return self._container is not None

    def read(self, timeout: float | None = None) -> Frame | None:
        """A frame, or None after ``timeout`` s without one. One network read can block up to
        ``read_timeout`` s; waits between reconnect tries honour ``timeout``."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._container is None:
                now = time.monotonic()
                if deadline is not None and self._next_try > deadline:
                    time.sleep(max(0.0, deadline - now))
                    return None
                time.sleep(max(0.0, self._next_try - now))
                self._try_reconnect()
                continue
            try:
                frame = self._decoder.next_frame()
            except (av.FFmpegError, OSError) as e:
                if self._recording_finished(said_goodbye=False):  # e.g. the goodbye was lost (UDP)
                    raise EndOfStream(self.uri) from None
                self._drop_connection(_av_reason(e))
                continue
            if frame is not None:
                emitted = self._emit(self._convert(frame), self._timestamp(frame))
                if emitted is not None:  # None: a frame of another size, skipped
                    return emitted
                continue
            if self._decoder.ended:
                # over UDP the demuxer ends only on the server's goodbye (RTCP BYE); over TCP also
                # when the connection closes
                if self._recording_finished(said_goodbye=self.transport == "udp"):
                    raise EndOfStream(self.uri)
                self._drop_connection("the server closed the connection")
                continue
            if deadline is not None and time.monotonic() > deadline:
                return None

    def _recording_finished(self, said_goodbye: bool) -> bool:
        """Has a recording (the server announced its duration) been played to its end?

        A live stream has no duration: its end is a lost connection. A server's goodbye ends a
        recording even a few frames early (over UDP FFmpeg can act on the goodbye before the last
        packets). Otherwise FFmpeg reports a server that went away and one that finished alike, so the
        last frame must be within RECORDING_END_SLACK_S of the announced end.
        """
        duration, start = self._container.duration, self._container.start_time or 0
        if duration is None or self._last_raw_s is None:
            return False
        return said_goodbye or self._last_raw_s >= (start + duration) / 1e6 - RECORDING_END_SLACK_S

    def _timestamp(self, frame: av.VideoFrame) -> int:
        arrival = time.monotonic_ns()
        if frame.pts is not None:
            self._last_raw_s = float(frame.pts * self._decoder.stream.time_base)
        pts_ns = arrival
        if self.clock == "stream" and frame.pts is not None:
            raw = _pts_ns(frame.pts, self._decoder.stream.time_base)
            delay = arrival - raw
            if self._min_delay is not None:  # let the floor rise slowly: a camera clock a bit slow
                leak = (arrival - self._last_arrival) * CLOCK_DRIFT_ALLOWANCE
                delay = min(delay, self._min_delay + int(leak))
            self._min_delay = delay
            pts_ns = raw + delay
        if self._last_pts_ns is not None:
            pts_ns = max(pts_ns, self._last_pts_ns + 1)
        self._last_pts_ns, self._last_arrival = pts_ns, arrival
        return pts_ns


def rtsp_av_options(transport: str = "tcp", read_timeout: float = 5.0, low_latency: bool = True) -> dict:
    """FFmpeg demuxer options for RTSP: transport, socket timeout (us) and low-latency flags."""
    options = {"rtsp_transport": transport, "timeout": str(int(read_timeout * 1_000_000))}
    if low_latency:
        # probe the stream for 0.3 s, not up to 5 (enough for FFmpeg to tell the frame rate, 0.1 s is
        # not with B-frames); the decoder outputs each frame at once; UDP reordering waits at most
        # 0.2 s. Not fflags=nobuffer: it throws away the frames read while the stream is probed.
        options.update({"analyzeduration": "300000", "flags": "low_delay", "max_delay": "200000"})
    return options


# V4L2 pixel formats by the names camera docs use -> FFmpeg's input_format names.
V4L2_PIXEL_FORMATS = {
    "y16": "gray16le", "gray16": "gray16le", "gray16le": "gray16le",
    "y8": "gray", "grey": "gray", "gray": "gray",
    "yuyv": "yuyv422", "yuyv422": "yuyv422", "uyvy": "uyvy422", "uyvy422": "uyvy422",
    "nv12": "nv12", "yuv420p": "yuv420p", "mjpeg": "mjpeg", "mjpg": "mjpeg", "h264": "h264",
    "rgb24": "rgb24", "bgr24": "bgr24",
}


def v4l2_av_options(size=None, fps=None, pixel_format=None, uri: str = "v4l2") -> dict:
    """Turn size ("640x512" or (w, h)), fps and pixel_format (e.g. "y16") into FFmpeg v4l2 options."""
    options = {}
    if size is not None:
        if isinstance(size, str):
            parts = size.lower().split("x")
        else:
            parts = list(size)
        try:
            w, h = (int(p) for p in parts)
            if w <= 0 or h <= 0:
                raise ValueError
        except (ValueError, TypeError):
            raise StreamfuseError(f"{uri}: size must be WIDTHxHEIGHT like 640x512, got '{size}'") from None
        options["video_size"] = f"{w}x{h}"
    if fps is not None:
        positive_number(uri, "fps", fps)
        options["framerate"] = str(fps)
    if pixel_format is not None:
        name = V4L2_PIXEL_FORMATS.get(str(pixel_format).lower())
        if name is None:
            raise StreamfuseError(f"{uri}: unknown pixel_format '{pixel_format}' "
                                  f"(expected one of {', '.join(sorted(V4L2_PIXEL_FORMATS))})")
        options["input_format"] = name
    return options


def monotonic_offset(first_pts_ns: int, now_ns: int, window_s: float = 10.0) -> int:
    """What to add to a camera's timestamps to put them on time.monotonic_ns().

    V4L2 drivers stamp frames with the capture time on CLOCK_MONOTONIC, the clock of
    time.monotonic_ns(): those are kept as they are (offset 0), so they line up with other live
    sources. A driver on another clock (the wall clock, far from now on the monotonic one) is shifted
    so its first frame lands at ``now_ns``.
    """
    return 0 if abs(now_ns - first_pts_ns) <= window_s * NS else now_ns - first_pts_ns


class V4L2Source(Source):
    """A Linux camera (V4L2) through PyAV's v4l2 input: size, fps, pixel format (Y16 -> uint16 IR)."""

    OPTIONS = {"kind", "size", "fps", "pixel_format", "open_timeout", "read_timeout"}
    is_live = True

    def __init__(self, device: str, uri: str | None = None, kind: str = "vis", size=None, fps=None,
                 pixel_format=None, open_timeout: float = 10.0, read_timeout: float = 5.0):
        super().__init__(uri or device, kind)
        self.device = device
        self.av_options = v4l2_av_options(size, fps, pixel_format, uri=self.uri)
        self.read_timeout = _seconds(self.uri, "read_timeout", read_timeout)
        open_timeout = _seconds(self.uri, "open_timeout", open_timeout)
        try:
            mode = os.stat(device).st_mode
        except FileNotFoundError:
            raise SourceError(f"{device}: no such V4L2 device (is the camera plugged in? `ls /dev/video*` "
                              "lists the devices)") from None
        if not stat.S_ISCHR(mode):
            raise SourceError(f"{device}: not a V4L2 device (expected a character device like /dev/video0)")
        try:
            container = av.open(device, format="v4l2", options=self.av_options,
                                timeout=(open_timeout, self.read_timeout))
        except (av.FFmpegError, OSError) as e:
            asked = ", ".join(f"{k}={v}" for k, v in self.av_options.items()) or "driver defaults"
            raise SourceError(f"{device}: cannot open the camera with {asked} ({_av_reason(e)})") from None
        self._attach(container, low_latency=True)
        self._clock_offset: int | None = None  # added to the driver's timestamps, see monotonic_offset
        self._convert = FrameConverter(kind)

    def read(self, timeout: float | None = None) -> Frame:
        self._check_open()
        while (frame := self._capture()) is None:  # None: a frame of another size, skipped
            pass
        return frame

    def _capture(self) -> Frame | None:
        try:
            frame = self._decoder.next_frame()
        except (av.FFmpegError, OSError) as e:
            raise SourceError(f"{self.device}: capture failed ({_av_reason(e)}; read timeout "
                              f"{self.read_timeout:g} s)") from None
        if frame is None:
            raise EndOfStream(self.uri)
        now = time.monotonic_ns()
        if frame.pts is None:
            pts_ns = now
        else:
            if self._clock_offset is None:
                self._clock_offset = monotonic_offset(_pts_ns(frame.pts, self._decoder.stream.time_base), now)
            pts_ns = _pts_ns(frame.pts, self._decoder.stream.time_base) + self._clock_offset
        return self._emit(self._convert(frame), pts_ns)

"""Frame sinks behind one factory: ``open_sink(uri, **options) -> Sink``.

Every sink: ``write(image, pts_ns)`` (image HxWx3 BGR uint8 or HxW gray; uint16 is shifted to 8 bits),
``close()`` (idempotent; finalises the output), context manager, ``frames_written``.
``check_writable(uri)`` raises StreamfuseError when the output cannot be written, before any work
(a folder that cannot be written, no window support for display://, no server answering for rtsp://).

Video files (out.mp4 / .mkv / .mov): H.264 (libx264), yuv420p, options ``preset`` (default "veryfast"),
``crf`` (default 20), ``bitrate`` (e.g. "2M"; replaces crf), ``fps`` (nominal rate for the encoder's rate
control, default 30). Output timestamps follow the frames' pts_ns (time base 1/90000, the first frame at
0), so the file's duration is right at any input rate. The encoder is flushed and the container closed
on close(), also when leaving a ``with`` block through an exception, so the file stays playable.
Crash-safe: a keyframe every second of nominal frames (GOP = fps); MP4/MOV are fragmented (a fragment
per keyframe, the header first), MKV clusters hold at most 1 s, and every packet the muxer writes is
flushed to the file. A killed process (SIGKILL, power loss) leaves a playable file that lacks only the
open fragment and the frames still inside the encoder (about 1 s of video plus x264's lookahead).
Odd widths/heights are cropped by one pixel (yuv420p needs even sizes).
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
import socket
import time
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av
import cv2
import numpy as np

from streamfuse import StreamfuseError
from streamfuse.io.images import check_folder_writable, write_image
from streamfuse.io.uri import check_options, parse_sink, positive_number, redact_uri

TIME_BASE = Fraction(1, 90_000)  # the usual video time base: 30, 25 and 29.97 fps periods are whole ticks
NS = 1_000_000_000


def open_sink(uri: str, **options) -> "Sink":
    """Open an output: video file, image folder, window, RTSP publish, browser view or null
    (see streamfuse/io/uri.py)."""
    parsed = parse_sink(uri)
    options = {**parsed.params, **options}
    cls = sink_class(parsed.kind)
    check_options(redact_uri(uri), options, cls.OPTIONS)
    check_writable(uri, options)
    return cls(parsed.target, uri=str(uri), **options)


def sink_class(kind: str) -> type["Sink"]:
    if kind == "http":
        from streamfuse.io.http import HttpSink  # the browser view imports this module

        return HttpSink
    return {"video": VideoFileSink, "images": ImageFolderSink, "display": DisplaySink,
            "rtsp": RtspSink, "null": NullSink}[kind]


def check_writable(uri: str, options: dict | None = None) -> None:
    """Fail early, naming the path, when an output cannot be written (run this before any decoding).
    ``options``: the output's options besides those in the URI (a browser view's token)."""
    parsed = parse_sink(uri)
    shown = redact_uri(uri)
    if parsed.kind == "video":
        path = Path(parsed.target)
        if path.is_dir():
            raise StreamfuseError(f"{shown}: is a folder, expected a video file path")
        check_folder_writable(path.parent, shown)
    elif parsed.kind == "images":
        folder = Path(parsed.target)
        if folder.exists() and not folder.is_dir():
            raise StreamfuseError(f"{shown}: exists and is not a folder")
        check_folder_writable(folder, shown)
    elif parsed.kind == "display":
        display_unavailable_reason(shown, raise_error=True)
    elif parsed.kind == "rtsp":
        _probe_server(uri)
    elif parsed.kind == "http":
        from streamfuse.io.http import check_bindable

        check_bindable(uri, {**parsed.params, **(options or {})}.get("token"))


def _probe_server(uri: str, timeout: float = 5.0) -> None:
    """An RTSP server to publish to must at least accept a connection."""
    url, uri = urlsplit(uri), redact_uri(uri)
    try:
        port = url.port or 554
    except ValueError:
        raise StreamfuseError(f"{uri}: bad port in the RTSP URL") from None
    if not url.hostname:
        raise StreamfuseError(f"{uri}: no host in the RTSP URL (expected rtsp://host:port/path)")
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise StreamfuseError(f"{uri}: cannot reach the RTSP server at {url.hostname}:{port} "
                              f"({e.strerror or e})") from None


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """HxW or HxWx3, uint8 or uint16 -> HxWx3 BGR uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise StreamfuseError(f"sink: expected a uint8 or uint16 image, got {image.dtype}")
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def mosaic(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """Side by side IR | VIS | fused (BGR uint8), each scaled to the fused frame's height."""
    height = fused.shape[0]
    tiles = []
    for img in (ir, vis, fused):
        img = to_bgr8(img)
        if img.shape[0] != height:
            width = round(img.shape[1] * height / img.shape[0])
            img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        tiles.append(img)
    return np.hstack(tiles)


class Sink(ABC):
    OPTIONS: set[str] = set()

    def __init__(self, uri: str):
        self.uri = redact_uri(uri)  # the name shown in messages and statistics; never a password
        self.frames_written = 0
        self._closed = False
        self.stats_source = None  # the pipeline sets a callable -> the run's live statistics (a dict)

    @abstractmethod
    def write(self, image: np.ndarray, pts_ns: int) -> None:
        """Write one frame (BGR or gray) with its presentation time; every sink type defines it."""

    def write_frame(self, frame) -> None:
        """The pipeline's entry (a streamfuse.io.fanout.OutputFrame); the browser view also keeps the
        IR and visible frames it carries."""
        self.write(frame.image, frame.pts_ns)

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self):
        if self._closed:
            raise StreamfuseError(f"{self.uri}: write after close")


class _Encoder:
    """One H.264 stream in a PyAV output container; opened on the first frame (its size fixes the stream's).

    Frames carry pts in 1/90000 ticks from their pts_ns, the first one at 0; a pts that does not move
    forward is nudged one tick on (the muxer needs strictly increasing timestamps).
    """

    def __init__(self, target: str, uri: str, fmt: str | None, av_options: dict, codec_options: dict,
                 fps: float):
        self.target, self.uri, self.fmt = target, uri, fmt
        self.av_options, self.codec_options, self.fps = av_options, codec_options, fps
        self.container = None
        self.stream = None
        self._first_ns = None
        self._last_ticks = -1

    def _open(self, width: int, height: int, bitrate) -> None:
        try:
            self.container = av.open(self.target, mode="w", format=self.fmt, options=self.av_options)
        except (av.FFmpegError, OSError) as e:
            raise StreamfuseError(f"{self.uri}: cannot open for writing ({getattr(e, 'strerror', None) or e})") from None
        stream = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        if bitrate is not None:
            stream.bit_rate = _parse_bitrate(bitrate, self.uri)
        stream.options = self.codec_options
        self.stream = stream

    def encode(self, image: np.ndarray, pts_ns: int, bitrate=None) -> None:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        height, width = image.shape[0] & ~1, image.shape[1] & ~1
        if self.stream is None:
            if width == 0 or height == 0:
                raise StreamfuseError(f"{self.uri}: frame of {image.shape[1]}x{image.shape[0]} is too small")
            self._open(width, height, bitrate)
        if (width, height) != (self.stream.width, self.stream.height):
            raise StreamfuseError(f"{self.uri}: frame is {image.shape[1]}x{image.shape[0]}, the video is "
                                  f"{self.stream.width}x{self.stream.height}")
        image = image[:height, :width]
        frame = _gray_frame(image) if image.ndim == 2 else av.VideoFrame.from_ndarray(
            np.ascontiguousarray(image), format="bgr24")
        if self._first_ns is None:
            self._first_ns = pts_ns
        ticks = round((pts_ns - self._first_ns) * TIME_BASE.denominator / NS)
        ticks = max(ticks, self._last_ticks + 1)
        frame.pts, frame.time_base = ticks, TIME_BASE
        # the last frame's duration counts in the file's; take the latest interval (nominal fps at first)
        interval = ticks - self._last_ticks if self._last_ticks >= 0 else round(TIME_BASE.denominator / self.fps)
        frame.duration = interval
        first = self._last_ticks < 0
        self._last_ticks = ticks
        try:
            packets = self.stream.encode(frame)
        except av.FFmpegError as e:
            if first:  # the encoder opens on the first frame: a bad option shows here
                asked = ", ".join(f"{k}={v}" for k, v in self.codec_options.items())
                raise StreamfuseError(f"{self.uri}: cannot start the H.264 encoder with {asked} "
                                      f"({getattr(e, 'strerror', None) or e})") from None
            raise
        for packet in packets:
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is None:
            return
        try:
            if self.stream is not None and self.stream.codec_context.is_open:
                for packet in self.stream.encode(None):  # flush the frames x264 still holds
                    self.container.mux(packet)
        finally:
            container, self.container = self.container, None
            container.close()


# Gray 0..255 -> TV-range luma 16..235, the range players assume for H.264 yuv420p.
_FULL_TO_TV = np.round(16 + np.arange(256) * 219 / 255).astype(np.uint8)


def _gray_frame(gray: np.ndarray) -> av.VideoFrame:
    """A yuv420p frame with the gray image as luma and neutral chroma, written directly (no swscale);
    the mirror of how sources read IR from the luma plane."""
    h, w = gray.shape
    frame = av.VideoFrame(w, h, "yuv420p")
    for index, plane in enumerate(frame.planes):
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        if index == 0:
            rows[:h, :w] = cv2.LUT(gray, _FULL_TO_TV)
        else:
            rows[:] = 128
    return frame


def _fps(value, uri: str) -> float:
    """The nominal frame rate option (default 30)."""
    return 30.0 if value is None else positive_number(uri, "fps", value)


def _parse_bitrate(value, uri: str) -> int:
    text = str(value).strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    try:
        bits = float(text[:-1] if scale > 1 else text) * scale
        if bits <= 0:
            raise ValueError
    except ValueError:
        raise StreamfuseError(f"{uri}: bitrate must be like 4M, 800k or 2000000, got '{value}'") from None
    return int(bits)


def _crash_safe_muxer_options(path: Path) -> dict:
    """Muxer options that keep a file playable up to its last second when the process dies."""
    options = {"flush_packets": "1"}  # the muxer's output reaches the file at once, not in 32 KiB blocks
    if path.suffix.lower() == ".mkv":
        options["cluster_time_limit"] = "1000"  # ms; a cluster is written out when it closes
    else:  # .mp4 / .mov: fragments from the start; a plain MP4 has no index until close()
        options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
    return options


class VideoFileSink(Sink):
    """H.264 MP4/MKV/MOV through PyAV."""

    OPTIONS = {"preset", "crf", "bitrate", "fps"}

    def __init__(self, path: str, uri: str | None = None, preset: str = "veryfast", crf: int = 20,
                 bitrate=None, fps: float | None = None):
        super().__init__(uri or str(path))
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        codec_options = {"preset": str(preset)}
        if bitrate is None:
            try:
                if not 0 <= float(crf) <= 51:
                    raise ValueError
            except (TypeError, ValueError):
                raise StreamfuseError(f"{self.uri}: crf must be a number from 0 (lossless) to 51, got '{crf}'") from None
            codec_options["crf"] = str(crf)
        self.bitrate = bitrate
        if bitrate is not None:
            _parse_bitrate(bitrate, self.uri)
        fps = _fps(fps, self.uri)
        codec_options["g"] = str(max(1, round(fps)))  # a keyframe, so a fragment/cluster, every second
        # no B-frames: a fragmented MP4 has no edit list to hide their decode delay, so the first frame
        # would start late; this also keeps fewer frames inside the encoder
        codec_options["bf"] = "0"
        self._encoder = _Encoder(str(self.path), self.uri, None, _crash_safe_muxer_options(self.path),
                                 codec_options, fps)

    def write(self, image: np.ndarray, pts_ns: int) -> None:
        self._check_open()
        self._encoder.encode(image, pts_ns, self.bitrate)
        self.frames_written += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._encoder.close()


class RtspSink(Sink):
    """Publish H.264 to an RTSP server that accepts RECORD (ANNOUNCE), through PyAV's rtsp muxer.

    Options: transport (tcp/udp), preset (default ultrafast), bitrate (default 2M), fps (default 30),
    realtime (default True: a frame is not sent before its pts, counted from the first frame, so a
    file published as fast as it decodes plays at its own speed, like ``ffmpeg -re``; frames from a
    live source are never held). x264 runs with tune=zerolatency so every frame leaves at once.
    """

    OPTIONS = {"transport", "preset", "bitrate", "fps", "realtime"}

    def __init__(self, url: str, uri: str | None = None, transport: str = "tcp", preset: str = "ultrafast",
                 bitrate="2M", fps: float | None = None, realtime: bool = True):
        super().__init__(uri or url)
        self.realtime = realtime
        self._clock_start: tuple[int, float] | None = None  # (first pts_ns, monotonic time it was sent)
        self._last_due: float | None = None
        if transport not in ("tcp", "udp"):
            raise StreamfuseError(f"{self.uri}: transport must be tcp or udp, got '{transport}'")
        self.bitrate = bitrate
        _parse_bitrate(bitrate, self.uri)
        codec_options = {"preset": str(preset), "tune": "zerolatency", "bf": "0"}
        self._encoder = _Encoder(url, self.uri, "rtsp", {"rtsp_transport": transport}, codec_options,
                                 _fps(fps, self.uri))

    def write(self, image: np.ndarray, pts_ns: int) -> None:
        self._check_open()
        if self.realtime:
            if self._clock_start is None:
                self._clock_start = (pts_ns, time.monotonic())
            due = self._clock_start[1] + (pts_ns - self._clock_start[0]) / NS
            time.sleep(max(0.0, due - time.monotonic()))
            self._last_due = max(due, time.monotonic())
        try:
            self._encoder.encode(image, pts_ns, self.bitrate)
        except (av.FFmpegError, OSError) as e:
            raise StreamfuseError(f"{self.uri}: publishing failed ({getattr(e, 'strerror', None) or e})") from None
        self.frames_written += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.realtime and self._last_due is not None:
                # the stream lasts until the last frame's display time is over; a teardown sent at
                # once can make the server drop that frame
                time.sleep(max(0.0, self._last_due + 1 / self._encoder.fps - time.monotonic()))
            try:
                self._encoder.close()
            except (av.FFmpegError, OSError):
                pass  # the server may be gone already; nothing left to save


class ImageFolderSink(Sink):
    """One image per frame: <folder>/<frame index, 6 digits>.<ext> (png by default, or jpg)."""

    OPTIONS = {"ext"}

    def __init__(self, folder: str, uri: str | None = None, ext: str = "png"):
        super().__init__(uri or str(folder))
        self.folder = Path(folder)
        self.ext = str(ext).lower().lstrip(".")
        if self.ext not in ("png", "jpg", "jpeg", "bmp", "tif", "tiff"):
            raise StreamfuseError(f"{self.uri}: ext must be png, jpg, bmp or tif, got '{ext}'")
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, image: np.ndarray, pts_ns: int) -> None:
        self._check_open()
        write_image(self.folder / f"{self.frames_written:06d}.{self.ext}", image)
        self.frames_written += 1


def display_unavailable_reason(uri: str = "display://", raise_error: bool = False) -> str | None:
    """Why an OpenCV window cannot be shown here (None when it can)."""
    reason = None
    if not _opencv_has_gui():
        reason = ("this OpenCV has no window support (opencv-python-headless); "
                  "`pip install opencv-python` for display://, or write to a file, e.g. -o out.mp4")
    elif os.name != "nt" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        reason = "no display (DISPLAY is not set); write to a file instead, e.g. -o out.mp4"
    if reason and raise_error:
        raise StreamfuseError(f"{uri}: {reason}")
    return reason


def _opencv_has_gui() -> bool:
    """OpenCV's build summary has a line like 'GUI:  NONE' (headless) or 'GUI:  GTK3'."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("NONE", "NO", "")
    return True


class DisplaySink(Sink):
    """An OpenCV window; press q or Esc to ask the pipeline to stop (``stop_requested``)."""

    OPTIONS = {"wait_ms"}

    def __init__(self, title: str, uri: str | None = None, wait_ms: int = 1):
        super().__init__(uri or "display://")
        display_unavailable_reason(self.uri, raise_error=True)
        self.title, self.wait_ms = title, int(wait_ms)
        self.stop_requested = False
        cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)

    def write(self, image: np.ndarray, pts_ns: int) -> None:
        self._check_open()
        cv2.imshow(self.title, to_bgr8(image))
        if cv2.waitKey(self.wait_ms) & 0xFF in (ord("q"), 27):
            self.stop_requested = True
        self.frames_written += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            cv2.destroyWindow(self.title)


class NullSink(Sink):
    """Discards frames (benchmarks, dry runs); still counts them."""

    def __init__(self, target: str = "", uri: str | None = None):
        super().__init__(uri or "null://")

    def write(self, image: np.ndarray, pts_ns: int) -> None:
        self._check_open()
        self.frames_written += 1

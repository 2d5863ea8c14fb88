"""The browser live view: ``-o http://127.0.0.1:8090`` serves the fused stream and the run's health.

    /              the page: live video, IR | visible | fused toggle, snapshot button, statistics
    /stream.mjpg   MJPEG (multipart/x-mixed-replace) of the newest frames; ?view=fused|mosaic
    /snapshot.png  the current frame as PNG; ?view=fused|mosaic
    /stats.json    the run's statistics now (the pipeline's Stats fields, plus rates)
    /events        the same statistics as server-sent events, twice a second

Options (URL query or output_options): ``token`` (also ``--token``), ``quality`` (JPEG, default 80).
The server binds 127.0.0.1 unless the URL names another address; any other address needs a token,
and then every request must carry ``?token=...`` (401 without it, 403 with a wrong one). Camera
passwords never reach the page (rtsp://user:***@host).

Why the standard library (``http.server.ThreadingHTTPServer``): MJPEG and server-sent events are
plain long HTTP responses, one thread per viewer is fine for the few viewers of a rig, and the view
adds no dependency to a Jetson install.

Viewers never slow the run: ``write_frame`` only keeps a reference to the newest frame and wakes the
viewers; each viewer's own thread encodes (once per frame and view, shared by all viewers) and sends
the newest frame when it is ready for one, so a viewer gets the latest frame, never a backlog. A
viewer that stops reading is dropped after ``CLIENT_TIMEOUT_S``. A viewer that connects late gets
the current frame at once.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from streamfuse import StreamfuseError
from streamfuse.color import to_uint8
from streamfuse.io.sinks import Sink, mosaic, to_bgr8
from streamfuse.io.uri import parse_sink, redact_uri

log = logging.getLogger("streamfuse")

DEFAULT_PORT = 8090
VIEWS = ("fused", "mosaic")
EVENT_PERIOD_S = 0.5  # statistics pushed to each page this often
RATE_WINDOW_S = 2.0  # rates (fps) over about this long
CLIENT_TIMEOUT_S = 10.0  # a viewer whose socket takes nothing for this long is dropped
BOUNDARY = b"streamfuse-frame"


def _address(uri: str) -> tuple[str, int]:
    """(host, port) of an http:// output; 127.0.0.1:8090 by default."""
    target = parse_sink(uri).target
    try:
        url = urlsplit("//" + target)
        host, port = url.hostname or "127.0.0.1", url.port
    except ValueError:
        raise StreamfuseError(f"{redact_uri(uri)}: bad address (expected http://HOST:PORT)") from None
    if url.path not in ("", "/"):
        raise StreamfuseError(f"{redact_uri(uri)}: the view is served at the root, drop '{url.path}'")
    return host, DEFAULT_PORT if port is None else port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bindable(uri: str, token=None) -> None:
    """Fail early: another address than loopback needs a token; the port must be free."""
    host, port = _require_token(uri, token)
    try:
        with socket.create_server((host, port), family=_family(host)):
            pass
    except OSError as e:
        raise StreamfuseError(f"{redact_uri(uri)}: cannot listen on {host}:{port} ({e.strerror or e})") from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # viewers' threads never hold up the end of the run


class _Server6(_Server):
    address_family = socket.AF_INET6


def _require_token(uri: str, token) -> tuple[str, int]:
    """(host, port); an error when the address reaches beyond this machine and there is no token."""
    host, port = _address(uri)
    if not _is_loopback(host) and not token:
        raise StreamfuseError(f"{redact_uri(uri)}: serving on {host} (not only this machine) needs a token: "
                              f"add --token SECRET or ?token=SECRET, and open http://{host}:{port}/?token=SECRET")
    return host, port


class HttpSink(Sink):
    """Serves the newest frames and the run's statistics to browsers (see the module docstring)."""

    OPTIONS = {"token", "quality"}

    def __init__(self, target: str, uri: str | None = None, token=None, quality: int = 80):
        super().__init__(uri or f"http://{target}")
        self.token = None if token in (None, "") else str(token)
        if not (isinstance(quality, int) and 1 <= quality <= 100):
            raise StreamfuseError(f"{redact_uri(self.uri)}: quality must be an integer from 1 to 100, got '{quality}'")
        self.quality = quality
        self._frame = None  # the newest OutputFrame
        self._seq = 0  # frames received; viewers wait for it to move
        self._changed = threading.Condition()
        self._encoded: dict[tuple[str, str], tuple[int, bytes]] = {}  # (view, format) -> (seq, bytes)
        self._encode_lock = threading.Lock()
        self._samples: deque = deque()  # (time, counters) for the rates
        self._samples_lock = threading.Lock()
        self.closing = threading.Event()  # set by close(): viewers' threads end
        host, port = _require_token(self.uri, self.token)
        try:
            self._server = (_Server6 if _family(host) == socket.AF_INET6 else _Server)((host, port), _Handler)
        except OSError as e:
            raise StreamfuseError(f"{redact_uri(self.uri)}: cannot listen on {host}:{port} ({e.strerror or e})") from None
        self._server.view = self
        self.host, self.port = host, self._server.server_address[1]  # port 0: the one the system chose
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="sf-http", daemon=True)
        self._thread.start()
        log.info("live view: open %s", self.page_url(redact=True))

    def page_url(self, redact: bool = False) -> str:
        """The page's address (a wildcard bind shows this machine's name)."""
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        query = f"?token={'***' if redact else self.token}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    # ------------------------------------------------------------------ frames
    def write(self, image: np.ndarray, pts_ns: int) -> None:
        from streamfuse.io.fanout import OutputFrame

        self.write_frame(OutputFrame(image, pts_ns, time.perf_counter()))

    def write_frame(self, frame) -> None:
        self._check_open()
        with self._changed:
            self._frame = frame
            self._seq += 1
            self._changed.notify_all()
        self.frames_written += 1

    def wait_frame(self, after: int, timeout: float) -> int | None:
        """The newest frame's number once it is past ``after``; None on timeout or when closing."""
        with self._changed:
            self._changed.wait_for(lambda: self._seq > after or self.closing.is_set(), timeout)
            return self._seq if self._seq > after and not self.closing.is_set() else None

    def image(self, view: str) -> tuple[int, np.ndarray | None]:
        """(frame number, BGR image) of the newest frame in ``view``; (0, None) before the first."""
        with self._changed:
            frame, seq = self._frame, self._seq
        if frame is None:
            return 0, None
        if view == "mosaic" and frame.ir is not None and frame.vis is not None:
            ir = to_uint8(frame.ir) if frame.ir.dtype.kind == "f" else frame.ir  # the model's input, 0..1
            return seq, mosaic(ir, frame.vis, frame.image)
        return seq, to_bgr8(frame.image)

    def encoded(self, view: str, fmt: str) -> tuple[int, bytes | None]:
        """The newest frame as JPEG or PNG bytes, encoded once per frame and view for every viewer."""
        with self._encode_lock:
            seq, data = self._encoded.get((view, fmt), (0, None))
            if data is not None and seq == self._seq:
                return seq, data
            seq, image = self.image(view)
            if image is None:
                return 0, None
            params = [cv2.IMWRITE_JPEG_QUALITY, self.quality] if fmt == "jpg" else []
            ok, buf = cv2.imencode("." + fmt, image, params)
            if not ok:
                raise StreamfuseError(f"{redact_uri(self.uri)}: could not encode a {image.shape} frame as {fmt}")
            self._encoded[(view, fmt)] = (seq, buf.tobytes())
            return self._encoded[(view, fmt)]

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict:
        """The run's statistics now, with rates per second over the last ~2 s (``rates``)."""
        stats = self.stats_source() if self.stats_source is not None else {}
        stats = dict(stats)
        stats["view"] = {"frames_shown": self.frames_written, "mosaic": self._has_mosaic()}
        now = time.monotonic()
        counters = {"fused": stats.get("fused", self.frames_written),
                    **{f"read_{s}": n for s, n in stats.get("read", {}).items()}}
        with self._samples_lock:
            self._samples.append((now, counters))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
                self._samples.popleft()
            t0, first = self._samples[0]
        span = now - t0
        stats["rates"] = {k: round((v - first.get(k, v)) / span, 2) if span > 0 else 0.0 for k, v in counters.items()}
        return stats

    def _has_mosaic(self) -> bool:
        frame = self._frame
        return frame is not None and frame.ir is not None and frame.vis is not None

    def authorise(self, given: str | None) -> int | None:
        """None when the request may go on, else the HTTP status to refuse it with."""
        if self.token is None:
            return None
        if not given:
            return 401
        return None if hmac.compare_digest(given.encode(), self.token.encode()) else 403

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.closing.set()
        with self._changed:
            self._changed.notify_all()
        self._server.shutdown()
        self._server.server_close()


def _page_html() -> bytes:
    return resources.files("streamfuse.io").joinpath("live_view.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server_version = "streamfuse"
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT_S

    def log_message(self, fmt, *args):  # requests go to the debug log, not to stderr
        log.debug("live view %s: " + fmt, self.client_address[0], *args)

    def do_GET(self):
        view: HttpSink = self.server.view
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = {"/": self._page, "/stream.mjpg": self._stream, "/snapshot.png": self._snapshot,
                 "/stats.json": self._stats, "/events": self._events}.get(url.path)
        if route is None:
            return self._reply(404, b"not found\n", "text/plain")
        refused = view.authorise(query.get("token"))
        if refused is not None:
            text = b"token required: add ?token=...\n" if refused == 401 else b"wrong token\n"
            return self._reply(refused, text, "text/plain")
        name = query.get("view", "fused")
        if name not in VIEWS:
            return self._reply(400, f"view must be one of {', '.join(VIEWS)}\n".encode(), "text/plain")
        try:
            route(view, name)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the viewer went away or stopped reading

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _page(self, view: HttpSink, _name: str) -> None:
        self._reply(200, _page_html(), "text/html; charset=utf-8")

    def _snapshot(self, view: HttpSink, name: str) -> None:
        _, data = view.encoded(name, "png")
        if data is None:
            return self._reply(503, b"no frame yet\n", "text/plain")
        self._reply(200, data, "image/png")

    def _stats(self, view: HttpSink, _name: str) -> None:
        self._reply(200, json.dumps(view.stats()).encode(), "application/json")

    def _start_stream(self, content_type: str) -> None:
        self.close_connection = True  # a stream ends with the connection
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()

    def _stream(self, view: HttpSink, name: str) -> None:
        self._start_stream(f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        seq = 0
        while not view.closing.is_set():
            if view.wait_frame(seq, timeout=1.0) is None:
                continue
            seq, data = view.encoded(name, "jpg")
            self.wfile.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                             % (BOUNDARY, len(data), data))
            self.wfile.flush()

    def _events(self, view: HttpSink, _name: str) -> None:
        self._start_stream("text/event-stream")
        while not view.closing.is_set():
            self.wfile.write(b"data: " + json.dumps(view.stats()).encode() + b"\n\n")
            self.wfile.flush()
            view.closing.wait(EVENT_PERIOD_S)

"""The browser live view (streamfuse/io/http.py): a real server on 127.0.0.1 during real runs of the
pipeline on the bundled sample looped as an endless source, read with urllib, raw sockets and a real
headless Chromium (Debian's package, driven over the DevTools protocol)."""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from streamfuse import REPO_DIR, SAMPLE_DIR, StreamfuseError
from streamfuse.config import RunConfig
from streamfuse.io.http import HttpSink
from streamfuse.io.sinks import open_sink
from streamfuse.pipeline import Pipeline

TOKEN = "s3cret"
SIZE = (640, 480)  # the bundled sample's frame size (w, h)


def looped(name: str) -> str:
    return f"file://{SAMPLE_DIR / name}?loop=true"


class Run:
    """A pipeline running in a thread, with its browser view's address."""

    def __init__(self, outputs: list[str], fuser, **options):
        self.pipeline = Pipeline(RunConfig(ir=looped("ir.mp4"), vis=looped("vis.mp4"), output=outputs,
                                           progress=False, **options), fuser=fuser)
        self.stats = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while self.pipeline.outputs is None:  # the outputs open once the sources are open
            assert self.thread.is_alive() and time.monotonic() < deadline, f"the run did not start: {self.error}"
            time.sleep(0.05)
        view = next(o.sink for o in self.pipeline.outputs.outputs if isinstance(o.sink, HttpSink))
        self.base = f"http://127.0.0.1:{view.port}"

    def _run(self):
        try:
            self.stats = self.pipeline.run()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def url(self, path: str, token: str | None = TOKEN, **query) -> str:
        query = {**query, **({"token": token} if token else {})}
        return self.base + path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")

    def get(self, path: str, **query) -> bytes:
        with urllib.request.urlopen(self.url(path, **query), timeout=30) as reply:
            return reply.read()

    def stats_now(self) -> dict:
        return json.loads(self.get("/stats.json"))

    def finish(self):
        self.pipeline.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the run did not stop"
        if self.error is not None:
            raise self.error
        return self.stats


@pytest.fixture(scope="module")
def fast_fuser():
    """The pixel-average baseline (shipped ONNX graph): the real pipeline, little CPU."""
    from streamfuse.backends import load_fuser

    return load_fuser("average", backend="onnxruntime")


@pytest.fixture(scope="module")
def live(fast_fuser, tmp_path_factory):
    """One endless run (looped sample) with a file output and a token-protected browser view."""
    out = tmp_path_factory.mktemp("live") / "out.mp4"
    run = Run([str(out), f"http://127.0.0.1:0?token={TOKEN}"], fast_fuser)
    yield run
    run.finish()


def wait_for(condition, what: str, seconds: float = 60.0):
    """Poll until ``condition()`` is truthy (a hang guard, not a speed check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def mjpeg_frames(url: str, count: int) -> list[np.ndarray]:
    """The first ``count`` JPEGs of an MJPEG stream, decoded."""
    frames = []
    with urllib.request.urlopen(url, timeout=30) as reply:
        assert reply.headers.get_content_type() == "multipart/x-mixed-replace"
        while len(frames) < count:
            line = reply.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                reply.readline()  # the blank line before the body
                data = reply.read(length)
                frames.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return frames


def test_stats_count_up_during_the_run(live):
    first = wait_for(lambda: (s := live.stats_now())["fused"] > 0 and s, "the first fused frame")
    later = wait_for(lambda: (s := live.stats_now())["fused"] > first["fused"] + 10 and s, "more fused frames")
    assert later["read"]["ir"] > first["read"]["ir"] and later["read"]["vis"] > first["read"]["vis"]
    assert later["paired"] > first["paired"] and later["written"] > first["written"]
    assert later["model"] == "average/default" and later["backend"] == "onnxruntime" and later["mode"] == "lossless"
    assert [o["uri"] for o in later["outputs"]][1] == "http://127.0.0.1:0?token=***"  # the token is not shown
    assert later["stages"]["latency"]["n"] > 0 and later["rates"]["fused"] > 0


def test_stream_gives_decodable_jpegs_of_the_output_size(live):
    fused = mjpeg_frames(live.url("/stream.mjpg"), 3)
    assert all(f is not None and (f.shape[1], f.shape[0]) == SIZE for f in fused)
    assert fused[0].std() > 10  # a picture, not a blank frame
    tiles = mjpeg_frames(live.url("/stream.mjpg", view="mosaic"), 2)  # IR | visible | fused
    assert all(f is not None and (f.shape[1], f.shape[0]) == (3 * SIZE[0], SIZE[1]) for f in tiles)
    png = cv2.imdecode(np.frombuffer(live.get("/snapshot.png"), np.uint8), cv2.IMREAD_COLOR)
    assert (png.shape[1], png.shape[0]) == SIZE


def test_requests_without_the_token_are_refused(live):
    for path in ("/", "/stream.mjpg", "/snapshot.png", "/stats.json", "/events"):
        for token, status in ((None, 401), ("wrong", 403)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(live.url(path, token=token), timeout=30)
            assert err.value.code == status, (path, token)
    assert b"<title>streamfuse live</title>" in live.get("/")


def test_a_viewer_that_never_reads_does_not_slow_the_file_output(fast_fuser, tmp_path):
    from streamfuse.io.sources import open_source

    frames = 200
    out = tmp_path / "out.mp4"
    run = Run([str(out), "http://127.0.0.1:0"], fast_fuser, max_frames=frames)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", int(run.base.rsplit(":", 1)[1])))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads a byte
    run.thread.join(120)  # the run ends by itself after max_frames
    assert not run.thread.is_alive() and run.error is None
    stats = run.stats
    assert stats.stopped_by == "max_frames"
    assert stats.outputs[0] == {"uri": str(out), "written": frames, "dropped": 0}
    view = stats.outputs[1]
    assert view["written"] > 0 and view["written"] + view["dropped"] == frames
    with open_source(str(out)) as src:
        assert sum(1 for _ in src) == frames
    stalled.settimeout(30)
    received = b""
    while chunk := stalled.recv(1 << 20):  # the server ends the stream once the run is over
        received += chunk
    stalled.close()
    assert 0 < received.count(b"Content-Type: image/jpeg") < frames  # what it could take, no backlog


def test_a_late_viewer_gets_the_current_frame_at_once(tmp_path):
    sink = open_sink("http://127.0.0.1:0")
    try:
        image = np.full((48, 64, 3), 200, np.uint8)
        sink.write(image, 0)
        frame = mjpeg_frames(f"http://127.0.0.1:{sink.port}/stream.mjpg", 1)[0]  # no new frame is coming
        assert frame.shape == image.shape and abs(int(frame.mean()) - 200) <= 2
    finally:
        sink.close()


def test_serving_beyond_this_machine_needs_a_token():
    with pytest.raises(StreamfuseError, match=r"http://0.0.0.0:0: serving on 0.0.0.0 .* needs a token"):
        open_sink("http://0.0.0.0:0")
    sink = open_sink("http://0.0.0.0:0", token="t")
    sink.close()


def test_cli_refuses_a_public_view_without_a_token(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_DIR / "run.py"), "run", "--ir", str(SAMPLE_DIR / "ir.mp4"),
                           "--vis", str(SAMPLE_DIR / "vis.mp4"), "-o", str(tmp_path / "o.mp4"),
                           "-o", "http://0.0.0.0:0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "needs a token" in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_camera_passwords_are_not_shown():
    from streamfuse.io.uri import redact_uri

    assert redact_uri("rtsp://admin:p@ss:w0rd@10.0.0.7:554/live?ch=1") == "rtsp://admin:***@10.0.0.7:554/live?ch=1"
    assert redact_uri("rtsp://10.0.0.7/live") == "rtsp://10.0.0.7/live"
    assert redact_uri("http://0.0.0.0:8090?token=abc&quality=70") == "http://0.0.0.0:8090?token=***&quality=70"


# ------------------------------------------------------------------ a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """Headless Chromium on one page, driven over the DevTools protocol (websocket-client)."""

    def __init__(self, url: str, profile):
        import websocket

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1400,900", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        for line in self.proc.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
            if "DevTools listening on" in line:
                port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
                break
        assert port, "chromium did not start its DevTools server"
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep its pipe drained
        pages = wait_for(lambda: [t for t in json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/json/list", timeout=10).read()) if t["type"] == "page"], "the page target")
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def eval(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self):
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(10)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
def test_browser_shows_the_stream_and_live_stats(live, tmp_path):
    browser = DevTools(live.url("/"), tmp_path / "profile")
    try:
        width = wait_for(lambda: browser.eval("document.getElementById('frame').naturalWidth"), "the first frame")
        assert width == SIZE[0]
        text = wait_for(lambda: browser.eval("document.getElementById('rows').innerText"), "the statistics")
        assert "output fps" in text and "reconnects" in text and "average/default on onnxruntime" in browser.eval(
            "document.getElementById('model').textContent")
        deadline = time.monotonic() + 3
        while browser.eval("document.getElementById('rows').innerText") == text:
            assert time.monotonic() < deadline, "the statistics did not change within 3 s"
            time.sleep(0.1)
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        (tmp_path / "live_view.png").write_bytes(shot)  # the test's artefact (and the README's picture)
        page = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
        box = browser.eval("(r => [r.x, r.y, r.width, r.height])(document.getElementById('frame').getBoundingClientRect())")
        x, y, w, h = (round(v) for v in box)
        shown = page[y:y + h, x:x + w]
        assert shown.size and shown.std() > 10, "the video area is blank"
        browser.eval("document.getElementById('view-mosaic').click()")  # IR | visible | fused
        wait_for(lambda: browser.eval("document.getElementById('frame').naturalWidth") == 3 * SIZE[0], "the mosaic")
    finally:
        browser.close()

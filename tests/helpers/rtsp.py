"""A real gst-rtsp-server on 127.0.0.1 for the RTSP tests: tests/helpers/rtsp_server.py, run under the
Debian python3-gi (the conftest fixture ``rtsp_server`` starts and stops it)."""
from __future__ import annotations

from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = Path(__file__).parent / "rtsp_server.py"


class RtspServer:
    """A gst-rtsp-server subprocess: ``play`` = {name: mp4 path} served at rtsp://127.0.0.1:PORT/name,
    ``record`` = {name: output .h264 path} accepting a publisher. ``stop()`` kills it (a crash, as the
    client sees it); ``start()`` brings it back on the same port."""

    def __init__(self, play: dict | None = None, record: dict | None = None):
        self.play, self.record = dict(play or {}), dict(record or {})
        self.port = 0
        self.proc = None

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self) -> "RtspServer":
        import subprocess
        import threading

        cmd = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--port", str(self.port)]
        cmd += [a for name, path in self.play.items() for a in ("--play", f"{name}={path}")]
        cmd += [a for name, path in self.record.items() for a in ("--record", f"{name}={path}")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(15)
        if not line or not line[0].startswith("READY"):
            self.stop()
            err = self.proc.stderr.read().strip().splitlines()[-1:] if self.proc.stderr else []
            raise RuntimeError(f"RTSP server did not start: {' '.join(err) or 'no READY line within 15 s'}")
        self.port = int(line[0].split()[1])
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def rtsp_server_missing() -> str | None:
    import subprocess

    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (gst-rtsp-server runs under the Debian python3-gi)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("gst-rtsp-server is not installed for the system python (apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}; see .ci/run)")
    return None

"""The threaded pipeline end to end on real encoded M3SVD clips (PyAV), a real ONNX Runtime session
and, for RTSP, a real gst-rtsp-server on 127.0.0.1 (tests/conftest.py)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streamfuse import REPO_DIR, StreamfuseError
from streamfuse.config import RunConfig

from tests.helpers.clips import decode_clip, expected_nearest, m3svd_frames, res2netfuse_onnx, write_clip


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Real clips (160x120): IR 30 fps and visible 25 fps of the same 1 s, plus a longer 30-fps pair."""
    d = tmp_path_factory.mktemp("media")
    ir, vis = m3svd_frames(120)
    return {
        "onnx": res2netfuse_onnx(d),
        "ir30": write_clip(d / "ir30.mp4", ir[:30], 30),
        "vis25": write_clip(d / "vis25.mp4", vis[:25], 25),
        "ir_long": write_clip(d / "ir_long.mp4", ir, 30),
        "vis_long": write_clip(d / "vis_long.mp4", vis, 30),
        "vis_short": write_clip(d / "vis_short.mkv", vis[:12], 30),
    }


@pytest.fixture(scope="module")
def fuser(media):
    """The default model, res2netfuse, on ONNX Runtime."""
    from streamfuse.backends import load_fuser

    return load_fuser("res2netfuse", backend="onnxruntime", onnx_path=media["onnx"])


@pytest.fixture(scope="module")
def fast_fuser():
    """The pixel-average baseline (shipped ONNX graph): the same pipeline code, a fraction of the time."""
    from streamfuse.backends import load_fuser

    return load_fuser("average", backend="onnxruntime")


def config(media, ir, vis, output, **kw) -> RunConfig:
    return RunConfig(ir=str(media[ir]), vis=str(media[vis]), output=str(output), onnx_path=str(media["onnx"]),
                     backend="onnxruntime", progress=False, **kw)


def read_all(uri: str, kind: str) -> list[np.ndarray]:
    from streamfuse.io.sources import open_source

    with open_source(uri, kind=kind) as src:
        return [f.image for f in src]


def test_reproduces_every_frame_pair(media, fast_fuser, tmp_path):
    """Output frame k is the fusion of the k-th pair matched by pts (30 vs 25 fps), to the grey level.
    Uses the pixel-average baseline, whose output moves with every input pixel, so a pair one IR
    frame off is told apart."""
    import cv2

    from streamfuse.pipeline import Pipeline
    from streamfuse.stage import CpuStage

    out = tmp_path / "frames"
    stats = Pipeline(config(media, "ir30", "vis25", f"images://{out}"), fuser=fast_fuser).run()
    pairs = expected_nearest(30, 25, 30, 25)
    assert stats.paired == stats.fused == stats.written == len(pairs) == 25
    assert stats.unmatched == {"ir": 5, "vis": 0}
    written = sorted(out.glob("*.png"))
    assert len(written) == len(pairs)

    def fuse(ir, vis):
        return CpuStage(fast_fuser).process(ir, vis).fused

    ir, vis = read_all(str(media["ir30"]), "ir"), read_all(str(media["vis25"]), "vis")
    for k, (i, j) in enumerate(pairs):
        got = cv2.imread(str(written[k]), cv2.IMREAD_COLOR).astype(int)
        want = fuse(ir[i], vis[j])
        assert np.abs(got - want).max() <= 1, f"output frame {k} is not the fusion of IR {i} + VIS {j}"
        for wrong in (i - 1, i + 1):
            if 0 <= wrong < len(ir):
                assert np.abs(got - fuse(ir[wrong], vis[j])).mean() > np.abs(got - want).mean()


def test_lossless_frame_count_and_duration(media, fuser, tmp_path):
    from streamfuse.pipeline import Pipeline

    out = tmp_path / "fused.mp4"
    stats = Pipeline(config(media, "ir30", "vis25", out), fuser=fuser).run()
    frames, times = decode_clip(out)
    assert len(frames) == stats.written == stats.paired == 25
    assert frames[0].shape == (120, 160, 3)
    # the output keeps the visible stream's timestamps: 25 frames at 25 fps -> 0.00 .. 0.96 s, 1 s long
    assert times[-1] - times[0] == pytest.approx(24 / 25, abs=1e-3)
    import av

    with av.open(str(out)) as container:
        assert container.duration / 1e6 == pytest.approx(1.0, abs=1 / 25)
    assert stats.ended_early is None and stats.stopped_by == "end of streams"
    assert stats.stages["model"]["n"] == 25 and stats.stages["model"]["p95_ms"] >= stats.stages["model"]["p50_ms"]


def test_several_outputs_get_the_same_frames(media, fast_fuser, tmp_path):
    import cv2

    from streamfuse.pipeline import Pipeline

    video, folder = tmp_path / "fused.mp4", tmp_path / "frames"
    cfg = config(media, "ir30", "vis25", None, output_options={"crf": 0, "ext": "png"})  # each to its kind
    cfg.output = [str(video), f"images://{folder}"]
    stats = Pipeline(cfg, fuser=fast_fuser).run()
    assert stats.outputs == [{"uri": str(video), "written": 25, "dropped": 0},
                             {"uri": f"images://{folder}", "written": 25, "dropped": 0}]
    frames, _ = decode_clip(video)
    images = sorted(folder.glob("*.png"))
    assert len(frames) == len(images) == stats.written == 25
    assert np.abs(frames[10].astype(int) - cv2.imread(str(images[10])).astype(int)).mean() < 3  # the same frame
    assert f"output           images://{folder}: written 25, dropped 0" in stats.summary()


def test_one_stream_ending_early(media, fast_fuser, tmp_path):
    from streamfuse.pipeline import Pipeline

    out = tmp_path / "fused.mp4"
    stats = Pipeline(config(media, "ir_long", "vis_short", out), fuser=fast_fuser).run()
    assert stats.written == 12 and len(decode_clip(out)[0]) == 12
    assert stats.ended_early == "vis" and "vis ended early" in stats.stopped_by
    assert stats.read["ir"] < 60  # the IR file (120 frames) was not decoded to its end


def test_mosaic_puts_ir_vis_fused_side_by_side(media, fast_fuser, tmp_path):
    from streamfuse.pipeline import Pipeline

    out = tmp_path / "mosaic.mp4"
    stats = Pipeline(config(media, "ir30", "vis25", out, mosaic=True, max_frames=3), fuser=fast_fuser).run()
    frames, _ = decode_clip(out)
    assert stats.stopped_by == "max_frames" and len(frames) == stats.written == 3
    assert frames[0].shape == (120, 480, 3)


def test_overlay_draws_the_ir_edges_on_the_output(media, fast_fuser, tmp_path):
    from streamfuse.pipeline import Pipeline

    frames = {}
    for overlay in (False, True):
        out = tmp_path / f"overlay-{overlay}.mkv"
        Pipeline(config(media, "ir30", "vis25", out, overlay=overlay, max_frames=2, output_options={"crf": 0}),
                 fuser=fast_fuser).run()
        frames[overlay] = decode_clip(out)[0][0].astype(int)
    # magenta (B, R high, G low) where the IR has edges; the plain output has almost none
    def magenta(f):
        return int(((f[..., 0] > 200) & (f[..., 2] > 200) & (f[..., 1] < 80)).sum())

    assert magenta(frames[True]) > 50 * max(magenta(frames[False]), 1)


@pytest.mark.parametrize("mosaic", [False, True])
def test_the_gpu_stage_runs_in_the_pipeline(media, tmp_path, mosaic):
    """GpuStage forced, with torch on the CPU: it fuses every pair (its own count), and the frames
    written match those of the CPU stage (lossless outputs, so the comparison is of the stages)."""
    pytest.importorskip("torch")
    from streamfuse.backends import load_fuser
    from streamfuse.pipeline import Pipeline
    from streamfuse.stage import CpuStage, GpuStage

    fuser = load_fuser("average", backend="torch", device="cpu")
    frames = {}
    for kind in ("gpu", "cpu"):
        out = tmp_path / f"{kind}.mkv"
        pipe = Pipeline(config(media, "ir30", "vis25", out, max_frames=5, mosaic=mosaic, output_options={"crf": 0}),
                        fuser=fuser, stage=kind)
        stats = pipe.run()
        assert isinstance(pipe.stage, GpuStage if kind == "gpu" else CpuStage)
        assert pipe.stage.frames == stats.fused == stats.written == 5
        frames[kind] = np.stack(decode_clip(out)[0]).astype(int)
    assert frames["gpu"].shape == (5, 120, 480 if mosaic else 160, 3)
    assert np.abs(frames["gpu"] - frames["cpu"]).mean() <= 0.05


@pytest.mark.gpu
def test_cuda_model_uses_the_gpu_stage(media, tmp_path):
    from streamfuse.backends import load_fuser
    from streamfuse.pipeline import Pipeline
    from streamfuse.stage import GpuStage

    cuda = load_fuser("res2netfuse", backend="torch", device="cuda")
    out = tmp_path / "gpu.mp4"
    pipe = Pipeline(config(media, "ir30", "vis25", out, max_frames=5), fuser=cuda)
    assert pipe.run().written == 5
    assert isinstance(pipe.stage, GpuStage) and pipe.stage.device.type == "cuda" and pipe.stage.frames == 5
    assert len(decode_clip(out)[0]) == 5


def test_calibration_warps_and_shifts_in_time(media, fast_fuser, tmp_path):
    """A half-resolution IR camera started 0.5 s before the visible one: the calibration file's
    homography brings the IR onto the visible grid, its output_size sets the output, and its
    time_offset_ms lines the streams up."""
    import cv2
    import yaml

    from streamfuse.pipeline import Pipeline

    ir, vis = m3svd_frames(40)
    ir_small = [cv2.resize(f, (80, 60), interpolation=cv2.INTER_AREA) for f in ir]
    write_clip(tmp_path / "ir.mp4", ir_small, 30)
    write_clip(tmp_path / "vis.mp4", vis[15:40], 30)
    calib = tmp_path / "rig.yaml"
    calib.write_text(yaml.safe_dump({"homography": [[2, 0, 0.5], [0, 2, 0.5], [0, 0, 1]], "ir_size": [80, 60],
                                     "vis_size": [160, 120], "output_size": [128, 96], "time_offset_ms": -500}))
    out = tmp_path / "fused.mp4"
    cfg = RunConfig(ir=str(tmp_path / "ir.mp4"), vis=str(tmp_path / "vis.mp4"), output=str(out), calib=str(calib),
                    progress=False)
    stats = Pipeline(cfg, fuser=fast_fuser).run()
    frames, _ = decode_clip(out)
    assert stats.paired == stats.written == len(frames) == 25
    assert stats.unmatched == {"ir": 15, "vis": 0}
    assert frames[0].shape == (96, 128, 3)


def test_error_mid_run_keeps_the_frames_fused_so_far(media, fast_fuser, tmp_path):
    """A model failing on the 5th frame: run() raises, and the file holds the 4 frames fused before."""
    from streamfuse.pipeline import Pipeline

    class FailingFuser:  # the real fuser, made to fail on a chosen call (fault injection)
        def __init__(self, inner, fail_at):
            self.inner, self.calls, self.fail_at = inner, 0, fail_at

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def fuse(self, ir, vis):
            self.calls += 1
            if self.calls == self.fail_at:
                raise StreamfuseError("model failed")
            return self.inner.fuse(ir, vis)

    out = tmp_path / "fused.mp4"
    pipe = Pipeline(config(media, "ir30", "vis25", out), fuser=FailingFuser(fast_fuser, 5))
    with pytest.raises(StreamfuseError, match="model failed"):
        pipe.run()
    assert pipe.stats.written == 4 and len(decode_clip(out)[0]) == 4


def test_unwritable_output_fails_before_any_work(media, tmp_path):
    from streamfuse.pipeline import Pipeline

    blocker = tmp_path / "file"
    blocker.write_text("x")
    pipe = Pipeline(config(media, "ir30", "vis25", blocker / "out.mp4"))
    with pytest.raises(StreamfuseError, match="out.mp4"):
        pipe.run()
    assert pipe.fuser is None  # failed before loading the model


def test_missing_source_is_named(media, tmp_path):
    from streamfuse.pipeline import Pipeline

    cfg = config(media, "ir30", "vis25", tmp_path / "o.mp4")
    cfg.vis = str(tmp_path / "nope.mp4")
    with pytest.raises(StreamfuseError, match="nope.mp4"):
        Pipeline(cfg).run()


def test_ctrl_c_leaves_a_playable_file_with_every_fused_frame(media, tmp_path):
    out = tmp_path / "fused.mp4"
    cmd = [sys.executable, str(REPO_DIR / "run.py"), "run", "--ir", str(media["ir_long"]), "--vis",
           str(media["vis_long"]), "-o", str(out), "--onnx", str(media["onnx"]), "--backend", "onnxruntime",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.stat().st_size > 0):  # the sink creates the file on the first frame
            assert proc.poll() is None, f"run ended before it was interrupted: {proc.communicate()}"
            assert time.monotonic() < deadline, "no output after 120 s"
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "SIGINT" in stderr and "stopped by       interrupted" in stdout
    written = int(stdout.split("wrote ")[1].split()[0])
    frames, _ = decode_clip(out)
    assert 0 < written < 120
    assert len(frames) == written


@pytest.mark.rtsp
def test_abort_mid_run_still_closes_a_playable_file(media, fuser, tmp_path):
    """What a second Ctrl-C does: every stage quits at once, and the file is still closed and decodes."""
    from streamfuse.pipeline import Pipeline

    out = tmp_path / "fused.mp4"
    pipe = Pipeline(config(media, "ir_long", "vis_long", out), fuser=fuser)
    runner = threading.Thread(target=pipe.run)
    runner.start()
    deadline = time.monotonic() + 120
    while pipe.stats.written == 0 and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    pipe.abort()
    runner.join(60)
    assert not runner.is_alive() and pipe.stats.stopped_by == "interrupted"
    assert 0 < pipe.stats.written < 120 and len(decode_clip(out)[0]) == pipe.stats.written


def test_first_signal_stops_second_aborts_third_quits():
    from streamfuse.pipeline import stop_on_signals

    calls = []
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals(lambda reason: calls.append(("stop", reason)), lambda: calls.append(("abort",))):
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler runs in the main thread between bytecodes
    assert calls == [("stop", "interrupted"), ("abort",)]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_rtsp_reconnect_keeps_every_fused_frame(media, fast_fuser, rtsp_server, tmp_path):
    """Both streams from a real RTSP server; the server dies mid-stream and comes back: the pipeline
    reconnects (counted) and the output holds every frame it fused."""
    from streamfuse.pipeline import Pipeline

    server = rtsp_server(play={"ir": media["ir_long"], "vis": media["vis_long"]})
    out = tmp_path / "fused.mp4"
    opts = {"backoff": 0.2, "max_backoff": 1.0, "read_timeout": 3.0}
    cfg = RunConfig(ir=server.url("ir"), vis=server.url("vis"), output=str(out), onnx_path=str(media["onnx"]),
                    backend="onnxruntime", progress=False, ir_options=opts, vis_options=opts)
    pipe = Pipeline(cfg, fuser=fast_fuser)
    result = {}
    runner = threading.Thread(target=lambda: result.update(stats=pipe.run()), daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while pipe.stats.written < 3:
        assert runner.is_alive() and time.monotonic() < deadline, "the pipeline wrote nothing from RTSP"
        time.sleep(0.05)
    server.stop()
    before = pipe.stats.written
    time.sleep(1.0)
    server.start()
    runner.join(90)  # the streams replay from the start after reconnecting and end with the file
    if runner.is_alive():
        pipe.stop()
        runner.join(10)
    stats = result["stats"]
    assert stats.mode == "live"
    assert stats.reconnects["ir"] >= 1 and stats.reconnects["vis"] >= 1
    assert stats.written > before, stats.summary()
    assert stats.paired >= 0.75 * min(stats.read.values()), stats.summary()  # live pairing by RTP time works
    assert len(decode_clip(out)[0]) == stats.written


class CliRun:
    """`python run.py run ...` in the background as a user starts it; its stderr collected line by line."""

    def __init__(self, args, cwd):
        self.proc = subprocess.Popen([sys.executable, str(REPO_DIR / "run.py"), "run", *map(str, args)], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []  # stderr so far
        self.stdout: list[str] = []
        self._readers = [threading.Thread(target=lambda: self.lines.extend(l.rstrip("\n") for l in self.proc.stderr),
                                          daemon=True),
                         threading.Thread(target=lambda: self.stdout.extend(self.proc.stdout), daemon=True)]
        for reader in self._readers:
            reader.start()

    def wait_for(self, pattern: str, timeout: float = 90) -> str:
        """The first stderr line matching ``pattern`` (a regex), waiting for it while the run goes on."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in list(self.lines) if re.search(pattern, line)]
            if found:
                return found[0]
            assert self.proc.poll() is None or self._readers[0].is_alive(), \
                f"run ended without a line matching {pattern!r}:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no line matching {pattern!r} within {timeout} s"
            time.sleep(0.05)

    def finish(self, timeout: float = 90) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once the run ends."""
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        for reader in self._readers:
            reader.join(10)
        return self.proc.returncode, "".join(self.stdout), "\n".join(self.lines)


def rtsp_run_args(server, tmp_path, status_every: float, **rtsp_options) -> list:
    """Arguments of a CLI run of both streams from ``server`` with the fast shipped `average` graph."""
    options = "{" + ", ".join(f"{k}: {v}" for k, v in rtsp_options.items()) + "}"
    (tmp_path / "run.yaml").write_text(f"ir_options: {options}\nvis_options: {options}\n")
    return ["--config", tmp_path / "run.yaml", "--ir", server.url("ir"), "--vis", server.url("vis"),
            "-o", tmp_path / "fused.mp4", "--model", "average", "--status-every", status_every]


STATUS_LINE = (r"^INFO: status \d:\d\d:\d\d fused \d+, \d+\.\d fps, latency (\d+ ms|-) "
               r"\| ir read \d+, dropped \d+, reconnects \d+( \(reconnecting\))? "
               r"\| vis read \d+, dropped \d+, reconnects \d+")


@pytest.mark.rtsp
def test_live_run_reports_status_drops_and_reconnects(media, rtsp_server, tmp_path):
    """A CLI run over RTSP with stderr not a terminal: a status log line every --status-every seconds; the
    server is killed mid-run and comes back: one warning per stream at the loss, one line at the
    reconnect, and the statistics count the reconnects."""
    server = rtsp_server(play={"ir": media["ir_long"], "vis": media["vis_long"]})
    run = CliRun(rtsp_run_args(server, tmp_path, 0.3, backoff=0.2, max_backoff=1.0, read_timeout=2.0), tmp_path)
    run.wait_for(r"^INFO: status .* fused [1-9]")
    server.stop()
    run.wait_for(r"stream rtsp://127\.0\.0\.1:\d+/(ir|vis): connection lost")
    time.sleep(0.5)
    server.start()  # the recordings replay from their start and the run ends with them
    code, stdout, stderr = run.finish()
    assert code == 0, stdout + stderr
    for s in ("ir", "vis"):
        url = re.escape(server.url(s))
        assert len(re.findall(rf"WARNING: {s} stream {url}: connection lost \(.+\); reconnect try 1 of 8 in "
                              r"\d+\.\d s", stderr)) == 1, stderr
        assert re.search(rf"WARNING: {s} stream {url}: reconnected on try \d+ of 8, \d+\.\d s after the "
                         r"connection was lost \(reconnects: 1\)", stderr), stderr
    status = [line for line in stderr.splitlines() if line.startswith("INFO: status")]
    assert len(status) >= 2 and all(re.match(STATUS_LINE, line) for line in status), status
    assert re.search(r"^reconnects +ir 1, vis 1;", stdout, re.M), stdout
    written = int(re.search(r"^wrote (\d+) fused frame", stdout, re.M).group(1))
    assert written > 0 and len(decode_clip(tmp_path / "fused.mp4")[0]) == written


@pytest.mark.rtsp
def test_live_run_that_gives_up_prints_its_statistics(media, rtsp_server, tmp_path):
    """The server goes away for good: each reconnect try is logged, the run stops after max_retries with
    the statistics on stdout, one error line naming the stream last, exit code 2, and the output
    holds every frame written."""
    server = rtsp_server(play={"ir": media["ir_long"], "vis": media["vis_long"]})
    args = rtsp_run_args(server, tmp_path, 0.3, backoff=0.1, max_backoff=0.2, max_retries=2, read_timeout=2.0,
                         open_timeout=1.0)
    run = CliRun(args, tmp_path)
    run.wait_for(r"^INFO: status .* fused [1-9]")
    server.stop()
    code, stdout, stderr = run.finish()
    assert code == 2, stdout + stderr
    assert re.search(r"INFO: (ir|vis) stream rtsp://\S+: reconnect try 1 of 2 failed \(.+\); try 2 in 0\.\d s",
                     stderr), stderr
    assert re.search(r"^error: (ir|vis) stream rtsp://127\.0\.0\.1:\d+/(ir|vis): connection lost \(.+\) and 2 "
                     r"reconnect tries failed over \d+\.\d s \(last: .+\); gave up \(max_retries 2\)$",
                     stderr.strip().splitlines()[-1]), stderr
    assert re.search(r"^stopped by +the (ir|vis) stream failed$", stdout, re.M), stdout
    assert re.search(r"^frames read +ir \d+, vis \d+$", stdout, re.M), stdout
    written = int(re.search(r"stopped on error after writing (\d+) frame", stderr).group(1))
    assert written > 0 and len(decode_clip(tmp_path / "fused.mp4")[0]) == written


@pytest.mark.rtsp
def test_live_run_on_a_terminal_redraws_a_status_bar(media, rtsp_server, tmp_path):
    """stderr a terminal (a pseudo-terminal 200 columns wide): the status is a progress bar redrawn in place
    (carriage returns), not log lines, and log lines are printed above it."""
    import fcntl
    import pty
    import struct
    import termios

    server = rtsp_server(play={"ir": media["ir_long"], "vis": media["vis_long"]})
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))
    proc = subprocess.Popen([sys.executable, str(REPO_DIR / "run.py"), "run", "--ir", server.url("ir"), "--vis",
                             server.url("vis"), "-o", str(tmp_path / "fused.mp4"), "--model", "average"],
                            stdout=subprocess.PIPE, stderr=terminal, text=True, cwd=tmp_path)
    os.close(terminal)
    chunks = []

    def read_terminal():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the run ended and closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        stdout = proc.communicate(timeout=90)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, stdout + shown
    bars = re.findall(r"\rfusing: (\d+)frame \[[^\]]*latency (?:\d+ ms|-) \| ir read \d+, dropped \d+, reconnects 0 "
                      r"\| vis read \d+, dropped \d+, reconnects 0\]", shown)
    assert bars and int(bars[-1]) > 0, shown
    assert "INFO: status" not in shown
    assert re.search(r"\r\s*\rINFO: (ir|vis) stream ended after \d+ frames", shown), shown  # above the bar
    assert "fused / written" in stdout

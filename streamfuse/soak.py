"""Soak benchmark (not a test): a long live run over RTSP whose server is killed and restarted every minute.

``python run.py soak --minutes 10`` makes two 30-fps H.264 clips (IR and visible, the same frames the
benchmarks use: M3SVD from ../shared/data, else the bundled sample, repeated), serves them in real time
from a gst-rtsp-server on 127.0.0.1 (the repository's test server, tests/helpers/rtsp_server.py), and
runs the live pipeline on both streams into an MP4 for ``minutes``. Every ``restart_every`` seconds the
server is killed (as a crashed camera server would be) and started again on the same port; it replays
the clips from their start, so the input is one clip looped at real-time pace. At the end it reports
frames in and out, reconnects and drops, the process RSS at the first fused frame, after one minute and
at the end, the load average, and decodes the output to check that it plays and holds every frame
written. Results go to ``<out>/soak.json`` and ``<out>/soak.md`` (default out/soak).
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from pathlib import Path

from streamfuse import StreamfuseError
from streamfuse.bench import FPS, make_clips, source_frames
from streamfuse.models.registry import DEFAULT_MODEL

log = logging.getLogger("streamfuse")

CLIP_MARGIN_S = 15  # each clip outlasts a server's life, so no stream plays to its end between restarts
RTSP_OPTIONS = {"backoff": 0.2, "max_backoff": 2.0, "max_retries": None, "read_timeout": 3.0}
RSS_EVERY_S = 10


def rss_mib() -> float:
    """This process's resident memory (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise StreamfuseError("soak: no VmRSS in /proc/self/status (the soak measures memory on Linux)")


def rtsp_server(play: dict):
    """A started gst-rtsp-server serving ``play`` ({name: mp4}); needs the repository checkout."""
    try:
        from tests.helpers.rtsp import RtspServer, rtsp_server_missing
    except ImportError:
        raise StreamfuseError("soak serves its clips with the repository's RTSP test server "
                              "(tests/helpers/rtsp_server.py): run it from a checkout, python run.py soak") from None
    missing = rtsp_server_missing()
    if missing:
        raise StreamfuseError(f"soak needs gst-rtsp-server: {missing}")
    return RtspServer(play).start()


def count_decoded(path: Path) -> int:
    """Frames decoded from the whole file (it must play, not just hold packets)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def run_soak(minutes: float = 10.0, restart_every: float = 60.0, size: tuple[int, int] = (640, 512),
             model: str = DEFAULT_MODEL, backend: str = "auto", out: str | Path = "out/soak",
             status_every: float = 10.0) -> dict:
    from streamfuse.config import RunConfig
    from streamfuse.io.sources import video_frame_count
    from streamfuse.pipeline import Pipeline, stop_on_signals

    if not (minutes > 0 and restart_every > 0):  # also NaN
        raise StreamfuseError(f"soak: --minutes and --restart-every must be > 0, got {minutes} and {restart_every}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clip_frames = int((restart_every + CLIP_MARGIN_S) * FPS)
    ir_clip, vis_clip = out / f"ir_{size[0]}x{size[1]}.mp4", out / f"vis_{size[0]}x{size[1]}.mp4"
    if not all(clip.is_file() and video_frame_count(clip) == clip_frames for clip in (ir_clip, vis_clip)):
        log.info("soak: encoding two %d-frame %dx%d clips into %s", clip_frames, *size, out)
        make_clips(size, clip_frames, out)
    server = rtsp_server({"ir": ir_clip, "vis": vis_clip})
    output = out / "fused.mp4"
    cfg = RunConfig(ir=server.url("ir"), vis=server.url("vis"), output=str(output), model=model, backend=backend,
                    mode="live", progress=False, status_every=status_every, ir_options=RTSP_OPTIONS,
                    vis_options=RTSP_OPTIONS)
    pipeline = Pipeline(cfg)
    outcome: dict = {}

    def run():
        try:
            outcome["stats"] = pipeline.run()
        except BaseException as exc:  # noqa: BLE001 - reported after the server is gone
            outcome["error"] = exc

    load_start = os.getloadavg()
    runner = threading.Thread(target=run, name="sf-soak-run", daemon=True)
    runner.start()
    rss = {}  # "first frame", "1 min", "end" -> MiB; plus samples every RSS_EVERY_S
    samples = []
    restarts = 0
    t0 = time.monotonic()
    try:
        with stop_on_signals(pipeline.stop, pipeline.abort):
            while runner.is_alive():
                runner.join(0.5)
                elapsed = time.monotonic() - t0
                if "first frame" not in rss and pipeline.stats.written:
                    rss["first frame"] = rss_mib()
                    t0 = time.monotonic()  # the soak's time starts with the first fused frame (model loaded)
                    continue
                if "first frame" not in rss:
                    continue
                if elapsed >= minutes * 60:
                    rss["end"] = rss_mib()
                    pipeline.stop(f"soak time up ({minutes:g} min)")
                    break
                if elapsed >= len(samples) * RSS_EVERY_S:
                    samples.append((round(elapsed), round(rss_mib(), 1)))
                    if "1 min" not in rss and elapsed >= 60:
                        rss["1 min"] = samples[-1][1]
                if elapsed >= (restarts + 1) * restart_every:
                    server.stop()  # killed, as a crashed camera server would be
                    time.sleep(1.0)
                    server.start()
                    restarts += 1
                    log.info("soak: RTSP server killed and restarted (%d) at %.0f s", restarts, elapsed)
            runner.join()
        rss.setdefault("end", rss_mib())  # also after Ctrl-C
    finally:
        pipeline.stop()
        runner.join(30)
        server.stop()
    if "error" in outcome:
        raise outcome["error"]
    stats = outcome["stats"]
    decoded = count_decoded(output)
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "minutes": minutes, "restart_every_s": restart_every, "server_restarts": restarts,
        "size": f"{size[0]}x{size[1]}", "fps_in": FPS, "frames_from": source_frames()[2],
        "load_average_start": [round(v, 2) for v in load_start],
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "rss_mib": {k: round(v, 1) for k, v in rss.items()}, "rss_samples_s_mib": samples,
        # in live mode the file's own queue may drop frames when the encoder falls behind (counted): the
        # file must hold every frame its writer wrote
        "output": str(output), "decoded_frames": decoded,
        "plays_with_every_frame": decoded == stats.outputs[0]["written"],
        "stats": stats.to_dict(),
    }
    (out / "soak.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "soak.md").write_text(report(doc) + "\n")
    return doc


def report(doc: dict) -> str:
    st = doc["stats"]
    rss = doc["rss_mib"]
    seconds = st["seconds"] or 1
    lines = [
        f"soak {doc['date']}: {st['model']} on {st['backend']}, live over RTSP on 127.0.0.1, {doc['size']} at "
        f"{doc['fps_in']} fps ({doc['frames_from']}), server killed and restarted every {doc['restart_every_s']:g} s "
        f"({doc['server_restarts']} times) for {doc['minutes']:g} min",
        f"frames in        ir {st['read']['ir']}, vis {st['read']['vis']} ({st['read']['ir'] / seconds:.1f} and "
        f"{st['read']['vis'] / seconds:.1f} per s over {seconds:.0f} s)",
        f"frames out       paired {st['paired']}, fused {st['fused']} ({st['fps']:.1f} fps), written to the file "
        f"{st['outputs'][0]['written']} (its queue dropped {st['outputs'][0]['dropped']}); decoded from "
        f"{doc['output']}: {doc['decoded_frames']} "
        + ("(every frame written)" if doc["plays_with_every_frame"] else "(MISMATCH: not every frame written plays)"),
        f"reconnects       ir {st['reconnects']['ir']}, vis {st['reconnects']['vis']}",
        f"dropped (live)   ir {st['dropped']['ir']}, vis {st['dropped']['vis']}, pairs {st['dropped']['pairs']}; "
        f"unmatched ir {st['unmatched']['ir']}, vis {st['unmatched']['vis']}",
        f"RSS MiB          first frame {rss.get('first frame')}, 1 min {rss.get('1 min')}, end {rss.get('end')}, "
        f"max {max((v for _, v in doc['rss_samples_s_mib']), default=None)}",
        "RSS MiB / minute " + " ".join(f"{v:g}" for t, v in doc["rss_samples_s_mib"] if t % 60 < RSS_EVERY_S),
        f"latency ms       p50 {st['stages']['latency']['p50_ms']}, p95 {st['stages']['latency']['p95_ms']} "
        "(paired -> written)",
        f"load average     start {' '.join(map(str, doc['load_average_start']))}, "
        f"end {' '.join(map(str, doc['load_average_end']))}",
        f"stopped by       {st['stopped_by']}",
    ]
    return "\n".join(lines)

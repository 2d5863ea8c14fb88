"""Benchmarks: model-only, full pipeline and a naive serial loop, per model x backend x resolution.

For each resolution two real H.264 MP4 files (IR and visible, 30 fps) are made from the M3SVD video
frames in ../shared/data (or the bundled sample), resized to that size. Then, for each model and
backend, in one run:

- model only: ``Fuser.fuse`` on decoded frames already in memory (after 2 warm-up calls): median
  and p95 latency, and fps = frames / total time; half of these calls run before the pipeline and
  serial measurements and half after, so a drifting machine load affects all three alike;
- pipeline: ``Pipeline.run`` on the two files (decode both, pair by pts, register, fuse, colour,
  encode an MP4): frames written / seconds from the first read to the last write;
- naive serial loop: the same work one step after the other in one thread (read IR, read VIS,
  fuse, colour, encode), as a plain script would do it.

Results go to ``<out>.json`` (every number and the machine) and ``<out>.md`` (a table); ``<out>`` is
``out/bench/benchmarks`` unless given (``--out docs/benchmarks`` replaces the published figures).
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from streamfuse import REPO_DIR, SAMPLE_DIR, StreamfuseError
from streamfuse.models.registry import DEFAULT_MODEL

log = logging.getLogger("streamfuse")

# bench label -> (backend, device, precision). Every one is measured by default, so what this machine
# lacks (a GPU, TensorRT, onnxruntime-gpu) shows as a "not available here" row instead of vanishing.
TARGETS = {
    "onnxruntime": ("onnxruntime", "cpu", "fp32"),
    "openvino": ("openvino", "cpu", "fp32"),
    "torch": ("torch", "cpu", "fp32"),
    "onnxruntime-cuda": ("onnxruntime", "cuda", "fp32"),
    "torch-cuda": ("torch", "cuda", "fp32"),
    "tensorrt-fp32": ("tensorrt", "cuda", "fp32"),
    "tensorrt": ("tensorrt", "cuda", "fp16"),
}
ALL_BACKENDS = tuple(TARGETS)
DEFAULT_SIZES = ((640, 512), (1280, 1024))
FPS = 30
TARGET_RATIO = 0.85  # pipeline fps / model-only fps the pipeline is designed to reach
DEFAULT_OUT = "out/bench/benchmarks"  # the published docs/benchmarks.* change only when asked (--out docs/benchmarks)
M3SVD_DIRS = (REPO_DIR.parent / "shared" / "data" / "M3SVD", REPO_DIR.parent / "shared" / "data" / "train" / "M3SVD")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise StreamfuseError(f"--sizes '{text}': expected WxH[,WxH...], e.g. 640x512,1280x1024") from None
        if w < 16 or h < 16:
            raise StreamfuseError(f"--sizes: {w}x{h} is too small (at least 16x16)")
        sizes.append((w, h))
    return sizes


def source_frames() -> tuple[list[Path], list[Path], str]:
    """(IR files, visible files, description): the M3SVD sequences, or the bundled sample."""
    irs, viss = [], []
    for root in M3SVD_DIRS:
        if (root / "ir").is_dir():
            for p in sorted((root / "ir").glob("*.png")):
                irs.append(p)
                viss.append(root / "vis" / p.name)
    if irs:
        return irs, viss, f"M3SVD, {len(irs)} frames of {len(irs) // 20} sequences"
    sample = SAMPLE_DIR / "images"
    irs = sorted((sample / "ir").glob("*"))
    if not irs:
        raise StreamfuseError(f"no frames to build benchmark clips: neither {M3SVD_DIRS[0]} nor {sample} exists")
    return irs, [sample / "vis" / p.name for p in irs], "the bundled sample images"


def make_clips(size: tuple[int, int], frames: int, folder: Path) -> tuple[Path, Path]:
    """Two real H.264 MP4 files (IR gray, visible colour) of ``frames`` frames at ``size``, 30 fps."""
    from streamfuse.io.sinks import open_sink

    irs, viss, _ = source_frames()
    w, h = size
    paths = folder / f"ir_{w}x{h}.mp4", folder / f"vis_{w}x{h}.mp4"
    sinks = [open_sink(str(p), crf=18, preset="veryfast", fps=FPS) for p in paths]
    try:
        for i in range(frames):
            k = i % len(irs)  # run through the sequences; repeat them for long runs
            ir = cv2.resize(cv2.imread(str(irs[k]), cv2.IMREAD_GRAYSCALE), size, interpolation=cv2.INTER_LINEAR)
            vis = cv2.resize(cv2.imread(str(viss[k]), cv2.IMREAD_COLOR), size, interpolation=cv2.INTER_LINEAR)
            pts = round(i * 1e9 / FPS)
            sinks[0].write(ir, pts)
            sinks[1].write(vis, pts)
    finally:
        for s in sinks:
            s.close()
    return paths


def model_inputs(fuser, ir_path: Path, vis_path: Path, count: int, agc) -> list:
    """The first ``count`` decoded frames, prepared by the stage as the model takes them (IR and visible luma in [0, 1])."""
    from streamfuse.io.sources import open_source
    from streamfuse.stage import CpuStage

    stage = CpuStage(fuser, agc=agc)
    with open_source(str(ir_path), kind="ir") as ir_src, open_source(str(vis_path), kind="vis") as vis_src:
        return [stage.model_inputs(ir_src.read().image, vis_src.read().image) for _ in range(count)]


def time_model(fuser, inputs, frames: int) -> list[float]:
    """Seconds per ``fuse`` call over ``frames`` calls on frames held in memory."""
    times = []
    for i in range(frames):
        ir, vis = inputs[i % len(inputs)]
        t0 = time.perf_counter()
        fuser.fuse(ir, vis)
        times.append(time.perf_counter() - t0)
    return times


def model_summary(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {"ms_p50": round(float(np.median(ms)), 2), "ms_p95": round(float(np.percentile(ms, 95)), 2),
            "fps": round(len(times) / float(np.sum(times)), 3)}


def bench_pipeline(fuser, ir_path: Path, vis_path: Path, frames: int, out: Path) -> dict:
    from streamfuse.config import RunConfig
    from streamfuse.pipeline import Pipeline

    cfg = RunConfig(ir=str(ir_path), vis=str(vis_path), output=str(out), progress=False, status_every=0, mode="lossless")
    stats = Pipeline(cfg, fuser=fuser).run()
    if stats.written != frames:
        raise StreamfuseError(f"benchmark pipeline wrote {stats.written} frames, expected {frames}")
    return {"fps": stats.fps, "seconds": stats.seconds, "stages": stats.stages}


def bench_serial(fuser, ir_path: Path, vis_path: Path, frames: int, out: Path, agc) -> dict:
    """The naive loop: one frame of each file, the stage (register, fuse, colour), encode; nothing overlaps."""
    from streamfuse.io.sinks import open_sink
    from streamfuse.io.sources import open_source
    from streamfuse.stage import make_stage

    stage = make_stage(fuser, agc=agc)

    t0 = time.perf_counter()
    n = 0
    with open_source(str(ir_path), kind="ir") as ir_src, open_source(str(vis_path), kind="vis") as vis_src, \
            open_sink(str(out), fps=FPS) as sink:
        for ir, vis in zip(ir_src, vis_src):
            sink.write(stage.process(ir.image, vis.image).fused, vis.pts_ns)
            n += 1
    seconds = time.perf_counter() - t0
    return {"fps": round(n / seconds, 3), "seconds": round(seconds, 3)}


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": commit, "load_avg_1min_at_start": load}


def run_bench(models=(DEFAULT_MODEL,), backends=ALL_BACKENDS, sizes=DEFAULT_SIZES, frames: int = 20,
              out=DEFAULT_OUT, threads: int = 1, onnx_path=None, agc=(1.0, 99.0)) -> dict:
    """Run every combination and write ``<out>.json`` and ``<out>.md``; returns the JSON document."""
    from streamfuse.backends import backend_usable, load_fuser
    from streamfuse.models import get_model

    for m in models:
        get_model(m)  # unknown names fail before any work
    for b in backends:
        if b not in TARGETS:
            raise StreamfuseError(f"unknown backend '{b}'; known: {', '.join(TARGETS)}")
    if frames < 2:
        raise StreamfuseError("--frames must be at least 2")
    from streamfuse.io.images import check_folder_writable

    check_folder_writable(Path(out).parent, f"--out {out}")  # before minutes of measuring
    rows = []
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "frames": frames, "threads": threads, "clips": source_frames()[2], "rows": rows}
    with tempfile.TemporaryDirectory(prefix="streamfuse-bench-") as tmp:
        tmp = Path(tmp)
        for size in sizes:
            log.info("bench: making %dx%d clips (%d frames)", size[0], size[1], frames)
            ir_path, vis_path = make_clips(size, frames, tmp)
            for model in models:
                for label in backends:
                    backend, device, precision = TARGETS[label]
                    row = {"model": model, "backend": label, "device": device, "precision": precision,
                           "size": f"{size[0]}x{size[1]}"}
                    rows.append(row)
                    if not backend_usable(backend, device):
                        row["status"] = "not available here"
                        continue
                    try:
                        extra = {"onnx_path": Path(onnx_path)} if onnx_path and backend in ("onnxruntime", "openvino") else {}
                        fuser = load_fuser(model, backend=backend, device=device, precision=precision, threads=threads,
                                           **extra)
                    except (StreamfuseError, ImportError, RuntimeError) as exc:
                        row["status"] = f"could not load: {exc}"
                        log.warning("bench %s/%s: %s", model, backend, exc)
                        continue
                    log.info("bench %s on %s at %s", model, backend, row["size"])
                    row["variant"] = fuser.variant
                    graph = getattr(fuser, "path", None)  # the ONNX file for onnxruntime/openvino
                    row["graph"] = _display_path(graph) if graph else None
                    inputs = model_inputs(fuser, ir_path, vis_path, min(frames, 8), agc)
                    time_model(fuser, inputs, 2)  # warm-up: the first runs allocate
                    # model-only calls are split around the other two measurements, so a change of
                    # machine load during the row weighs on all three alike
                    times = time_model(fuser, inputs, frames // 2)
                    row["pipeline"] = bench_pipeline(fuser, ir_path, vis_path, frames, tmp / "pipeline.mp4")
                    row["serial"] = bench_serial(fuser, ir_path, vis_path, frames, tmp / "serial.mp4", agc)
                    times += time_model(fuser, inputs, frames - frames // 2)
                    row["model_only"] = model_summary(times)
                    row["pipeline_over_model"] = round(row["pipeline"]["fps"] / row["model_only"]["fps"], 3)
                    row["status"] = "ok"
                    log.info("  model %.2f fps, pipeline %.2f fps (%.2fx), serial %.2f fps",
                             row["model_only"]["fps"], row["pipeline"]["fps"], row["pipeline_over_model"],
                             row["serial"]["fps"])
                    fuser.close()
    doc["gpu_estimate"] = gpu_estimate(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown(doc) + "".join(kept_section(md, heading) for heading in KEPT_HEADINGS))
    return doc


BATCH_HEADING = "## Batch"  # measured by hand with `run.py batch` (docs/benchmarks.md), kept across bench runs
SOAK_HEADING = "## Soak"  # `run.py soak`, summarised by hand, also kept
KEPT_HEADINGS = (BATCH_HEADING, SOAK_HEADING)


def kept_section(path: Path, heading: str) -> str:
    """The section of an existing Markdown file that starts at ``heading`` (to the next '## '), or ''."""
    if not path.is_file():
        return ""
    text = path.read_text()
    start = text.find("\n" + heading + "\n")
    if start < 0:
        return ""
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)].rstrip("\n") + "\n"


def gpu_estimate(rows: list[dict]) -> list[dict]:
    """Estimated GPU fps (streamfuse.evaluation.flops) of each benchmarked model's ONNX graph; [] if none exists."""
    from streamfuse.evaluation.flops import estimate_rows
    from streamfuse.models import get_model

    graphs = {}
    for r in rows:
        spec = get_model(r["model"])
        variant = r.get("variant") or spec.default_variant
        path = spec.onnx_path(variant)
        if path.exists():
            graphs[f"{spec.name}/{variant}"] = path
    try:
        return estimate_rows(sorted(graphs.items()))
    except ImportError:  # onnx not installed: the measured tables do not need it
        return []


def _display_path(path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO_DIR)) if path.is_relative_to(REPO_DIR) else str(path)


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python run.py bench` on {doc['date']} (git {m['git_commit'] or '?'}): {m['cpu']}, "
        f"{m['cpus']} CPUs, Python {m['python']}; {doc['frames']} frames per measurement, "
        f"{doc['threads']} intra-op thread(s); clips made from {doc['clips']}, 30 fps H.264. "
        f"1-minute load average at the start: {m['load_avg_1min_at_start']:.2f} (the machine is shared, "
        "so absolute numbers move with the load; the three columns of one row are measured back to back).",
        "",
        "- **model only**: `Fuser.fuse` on frames already in memory (median / p95 latency, fps = frames / total; "
        "half the calls before and half after the other two measurements).",
        "- **pipeline**: `Pipeline.run` on the two MP4 files: decode both, pair by pts, register, fuse, colour, "
        "encode an MP4 (threads and bounded queues, so decoding and encoding overlap inference).",
        "- **serial**: the same work one step after the other in one thread.",
        "",
        "| model | backend | size | model ms p50 / p95 | model fps | pipeline fps | pipeline / model | serial fps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['backend']} | {r['size']} | {r['status']} | | | | |")
            continue
        mo, pl, se = r["model_only"], r["pipeline"], r["serial"]
        lines.append(f"| {r['model']} ({r['variant']}) | {r['backend']} | {r['size']} | {mo['ms_p50']:.1f} / "
                     f"{mo['ms_p95']:.1f} | {mo['fps']:.2f} | {pl['fps']:.2f} | {r['pipeline_over_model']:.2f} | "
                     f"{se['fps']:.2f} |")
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    if ok:
        met = sum(r["pipeline_over_model"] >= TARGET_RATIO for r in ok)
        lines += ["", f"Target: pipeline fps >= {TARGET_RATIO} x model-only fps; met in {met} of {len(ok)} measured rows."]
    graphs = sorted({r["graph"] for r in doc["rows"] if r.get("graph")})
    if graphs:
        lines += ["", f"ONNX graph(s) run by onnxruntime/openvino: {', '.join(f'`{g}`' for g in graphs)}."]
    lines += ["", "Per-stage latency inside the pipeline (ms, p50 / p95):", "",
              "| model | backend | size | prepare | model | colour | write |", "|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        if r["status"] == "ok":
            st = r["pipeline"]["stages"]
            cells = " | ".join(f"{st[k]['p50_ms']} / {st[k]['p95_ms']}" for k in ("prepare", "model", "colour", "write"))
            lines.append(f"| {r['model']} | {r['backend']} | {r['size']} | {cells} |")
    if doc.get("gpu_estimate"):
        from streamfuse.evaluation.flops import COMPUTE_EFFICIENCY, MEMORY_EFFICIENCY, estimate_table

        lines += ["", "## Expected GPU speed: an estimate, not a measurement", "",
                  "Model-only fps at 640x512 computed from each graph's GFLOPs and FP16 activation traffic and the "
                  f"GPUs' published peak FP16 tensor throughput and memory bandwidth, assuming {COMPUTE_EFFICIENCY:.0%} "
                  f"and {MEMORY_EFFICIENCY:.0%} of them are reached (method and sources: docs/gpu.md). Replace with "
                  "measured rows by running `python run.py bench` on the GPU.", "",
                  estimate_table(doc["gpu_estimate"])]
    return "\n".join(lines) + "\n"

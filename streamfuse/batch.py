"""Fuse whole recorded datasets: one pipeline run per sequence, on a local process pool or on Ray.

Layouts (``find_sequences``)
  kaist     ``setXX/VYYY/{lwir,visible}/I00000.jpg``: every folder holding ``lwir/`` and ``visible/``
            frame folders is one sequence.
  pairs     ``<name>_ir.mp4`` + ``<name>_vis.mp4`` (or frame folders ``<name>_ir/`` + ``<name>_vis/``;
            ``infrared``/``visible`` too), or a folder with ``ir/`` + ``vis/`` (``infrared/`` +
            ``visible/``) subfolders: frames directly inside make one sequence (M3SVD frames), sub-folders
            or videos of the same name inside make one sequence each (``infrared/<seq>/``, INO videos).
  manifest  a CSV or YAML file, one row per sequence: ``ir``, ``vis``, ``output`` (under OUT_DIR), and
            optionally ``calib`` and ``offset_ms``; relative paths are taken from the manifest's folder.

Outputs mirror the input tree: sequence ``set00/V000`` goes to ``OUT_DIR/set00/V000.mp4`` (``--images``:
the folder ``OUT_DIR/set00/V000/``, frames named like the visible source frames) with its statistics in
``OUT_DIR/set00/V000.json``. A sequence's calibration is the nearest ``calibration.yaml`` from its folder
up to the dataset root (or the manifest's ``calib``).

Resuming: each output is written under a temporary name and renamed when the pipeline has closed it;
the statistics JSON is written after that. A sequence whose JSON and output exist and agree on the frame
count is skipped, anything else is redone, so a batch killed at any point and started again finishes
the rest and loses nothing.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from streamfuse import StreamfuseError
from streamfuse.config import RunConfig
from streamfuse.io.images import IMAGE_EXTS
from streamfuse.io.uri import VIDEO_SUFFIXES, RedactingFormatter, redact_uri

log = logging.getLogger("streamfuse")

IR_NAMES = ("ir", "infrared", "lwir")
VIS_NAMES = ("vis", "visible")
VIDEO_EXTS = VIDEO_SUFFIXES | {".avi", ".m4v", ".webm", ".ts", ".mpg", ".mpeg"}
MANIFEST_SUFFIXES = (".csv", ".yaml", ".yml")
MANIFEST_KEYS = ("ir", "vis", "output", "calib", "offset_ms")
LAYOUTS = ("auto", "kaist", "pairs", "manifest")
SINK_IMAGE_EXTS = ("png", "jpg", "jpeg", "bmp", "tif", "tiff")  # what ImageFolderSink writes
PARTIAL = ".partial-"  # prefix of outputs being written
SUMMARY_COLUMNS = ("sequence", "status", "ir_read", "vis_read", "paired", "fused", "fps", "seconds", "output", "reason")
_MODALITY_SUFFIX = re.compile(r"^(?P<name>.+)[_-](?P<mod>ir|infrared|lwir|vis|visible)$", re.IGNORECASE)


@dataclass
class Sequence:
    name: str  # output path under OUT_DIR without extension, '/'-separated: "set00/V000"
    ir: str
    vis: str
    layout: str  # kaist | pairs | manifest
    calib: str | None = None
    offset_ms: float | None = None
    suffix: str = ".mp4"  # video container of the output
    frames: int | None = None  # frames of the shorter stream, when known without decoding
    problem: str | None = None  # why it cannot run (missing partner, frames without a partner)


@dataclass
class BatchSettings:
    out_dir: str
    config: RunConfig  # model, backend and output options shared by every sequence
    images: bool = False
    force: bool = False
    fps: float = 30.0  # frame rate of frame-folder sequences


# ---------------------------------------------------------------------------------------------- layouts
def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTS for p in path.iterdir())


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTS


def _video_frames(path: Path) -> int | None:
    from streamfuse.io.sources import video_frame_count

    try:
        return video_frame_count(path) or None
    except Exception:  # noqa: BLE001 - unknown until it runs; the run reports the reason
        return None


def _count_and_check(seq: Sequence) -> Sequence:
    """Fill ``frames``; frame folders must hold the same frame names (pairing is by index)."""
    counts = []
    for uri in (seq.ir, seq.vis):
        if seq.problem or "://" in uri:  # not counted: missing, or a stream (the manifest may name rtsp://)
            counts.append(None)
        else:
            counts.append(len(_images_in(Path(uri))) if Path(uri).is_dir() else _video_frames(Path(uri)))
    if all(Path(p).is_dir() for p in (seq.ir, seq.vis)) and seq.problem is None:
        ir_stems = {p.stem for p in _images_in(Path(seq.ir))}
        vis_stems = {p.stem for p in _images_in(Path(seq.vis))}
        lonely = sorted(ir_stems ^ vis_stems)
        if lonely:
            seq.problem = (f"{len(lonely)} frame(s) without a partner between {seq.ir} and {seq.vis} "
                           f"(first: {lonely[0]}); frames pair by position, so the names must match")
    seq.frames = min(counts) if all(c is not None for c in counts) else None
    return seq


def _calibration(root: Path, folder: Path) -> str | None:
    """The nearest calibration.yaml from ``folder`` up to ``root``."""
    for parent in (folder, *folder.parents):
        if (parent / "calibration.yaml").is_file():
            return str(parent / "calibration.yaml")
        if parent == root:
            break
    return None


def _name(root: Path, folder: Path, *parts: str) -> str:
    """The sequence's path under OUT_DIR; the dataset folder's own name when it is itself one sequence."""
    return "/".join((*folder.relative_to(root).parts, *parts) or (root.resolve().name,))


def _modality_sequences(root: Path, folder: Path, ir_dir: Path, vis_dir: Path) -> list[Sequence]:
    """A folder with IR and visible subfolders: one sequence of frames, or one per named entry inside."""
    layout = "kaist" if (ir_dir.name.lower(), vis_dir.name.lower()) == ("lwir", "visible") else "pairs"
    calib = _calibration(root, folder)
    if _is_frame_folder(ir_dir) or _is_frame_folder(vis_dir):
        return [Sequence(_name(root, folder), str(ir_dir), str(vis_dir), layout, calib)]
    entries = {}
    for side, where in (("ir", ir_dir), ("vis", vis_dir)):
        for p in sorted(where.iterdir()):
            if _is_video(p) or _is_frame_folder(p):
                entries.setdefault(p.stem if p.is_file() else p.name, {})[side] = p
    return [_paired(_name(root, folder, key), sides, layout, calib) for key, sides in sorted(entries.items())]


def _paired(name: str, sides: dict, layout: str, calib: str | None) -> Sequence:
    seq = Sequence(name, str(sides.get("ir", "")), str(sides.get("vis", "")), layout, calib)
    for side, other in (("ir", "vis"), ("vis", "ir")):
        if side not in sides:
            seq.problem = f"{sides[other]}: no {'IR' if side == 'ir' else 'visible'} partner found"
    return seq


def _suffix_sequences(root: Path, folder: Path, names: list[str]) -> tuple[list[Sequence], set[str]]:
    """``<name>_ir.*`` / ``<name>_vis.*`` videos or frame folders in ``folder``; also the names used."""
    groups: dict[str, dict[str, Path]] = {}
    used = set()
    for entry in names:
        path = folder / entry
        if not (_is_video(path) or _is_frame_folder(path)):
            continue
        match = _MODALITY_SUFFIX.match(path.stem if path.is_file() else path.name)
        if match:
            side = "ir" if match["mod"].lower() in IR_NAMES else "vis"
            groups.setdefault(match["name"], {})[side] = path
            used.add(entry)
    calib = _calibration(root, folder)
    return [_paired(_name(root, folder, key), sides, "pairs", calib) for key, sides in sorted(groups.items())], used


def find_sequences(root, layout: str = "auto") -> list[Sequence]:
    """The sequences of a dataset folder (kaist and/or pairs layouts) or of a manifest file."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise StreamfuseError(f"--layout '{layout}': expected one of {', '.join(LAYOUTS)}")
    if root.is_file() or layout == "manifest":
        if not root.is_file() or root.suffix.lower() not in MANIFEST_SUFFIXES:
            raise StreamfuseError(f"{root}: a manifest must be a .csv or .yaml file")
        return [_count_and_check(s) for s in read_manifest(root)]
    if not root.is_dir():
        raise StreamfuseError(f"{root}: dataset folder not found")
    found = []
    for folder, dirs, files in os.walk(root):
        folder = Path(folder)
        dirs.sort()
        lower = {d.lower(): d for d in dirs}
        ir_name = next((lower[n] for n in IR_NAMES if n in lower), None)
        vis_name = next((lower[n] for n in VIS_NAMES if n in lower), None)
        if ir_name and vis_name:
            found += _modality_sequences(root, folder, folder / ir_name, folder / vis_name)
            dirs.remove(ir_name)
            dirs.remove(vis_name)
        pairs, used = _suffix_sequences(root, folder, sorted(dirs + files))
        found += pairs
        dirs[:] = [d for d in dirs if d not in used]
    if layout != "auto":
        found = [s for s in found if s.layout == layout]
    if not found:
        raise StreamfuseError(f"{root}: no sequences found for layout '{layout}' (expected setXX/VYYY/lwir + visible "
                              "frame folders, <name>_ir.* + <name>_vis.* pairs, or ir/ + vis/ subfolders)")
    return [_count_and_check(s) for s in found]


def read_manifest(path) -> list[Sequence]:
    """Rows of a CSV (header ir,vis,output[,calib,offset_ms]) or YAML (a list of such mappings)."""
    from streamfuse import read_yaml

    path = Path(path)
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = read_yaml(path, "manifest")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise StreamfuseError(f"{path}: expected a list of mappings with keys {', '.join(MANIFEST_KEYS)}")
    base = path.parent
    out, names = [], set()
    for i, row in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        where = f"{path} {'line' if path.suffix.lower() == '.csv' else 'entry'} {i}"
        unknown = sorted(str(k) for k in row if k not in MANIFEST_KEYS)
        if unknown:
            raise StreamfuseError(f"{where}: unknown column '{unknown[0]}' (expected {', '.join(MANIFEST_KEYS)})")
        values = {k: str(v).strip() for k, v in row.items() if v is not None and str(v).strip()}
        missing = [k for k in ("ir", "vis", "output") if k not in values]
        if missing:
            raise StreamfuseError(f"{where}: missing '{missing[0]}' (every row needs ir, vis and output)")
        output = Path(values["output"])
        if output.is_absolute() or ".." in output.parts:
            raise StreamfuseError(f"{where}: output '{output}' must be a relative path under OUT_DIR")
        suffix = output.suffix.lower() if output.suffix.lower() in VIDEO_SUFFIXES else ".mp4"
        name = output.with_suffix("").as_posix() if output.suffix.lower() in VIDEO_SUFFIXES else output.as_posix()
        if name in names:
            raise StreamfuseError(f"{where}: output '{values['output']}' is used by an earlier row")
        names.add(name)
        try:
            offset = float(values["offset_ms"]) if "offset_ms" in values else None
        except ValueError:
            offset = math.nan
        if offset is not None and not math.isfinite(offset):
            raise StreamfuseError(f"{where}: offset_ms '{values['offset_ms']}' is not a finite number")
        seq = Sequence(name, _resolve(base, values["ir"]), _resolve(base, values["vis"]), "manifest",
                       _resolve(base, values["calib"]) if "calib" in values else None, offset, suffix)
        missing = [f"{getattr(seq, side)}: {side} source not found" for side in ("ir", "vis")
                   if "://" not in getattr(seq, side) and not Path(getattr(seq, side)).exists()]
        seq.problem = missing[0] if missing else None
        out.append(seq)
    if not out:
        raise StreamfuseError(f"{path}: the manifest lists no sequences")
    return out


def _resolve(base: Path, value: str) -> str:
    return value if "://" in value or Path(value).is_absolute() else str(base / value)


def describe(sequences: list[Sequence]) -> str:
    """One line: how many sequences of which layout, how many frames, how many cannot run."""
    by_layout = {}
    for s in sequences:
        by_layout[s.layout] = by_layout.get(s.layout, 0) + 1
    known = [s.frames for s in sequences if s.frames is not None]
    frames = f"{sum(known)} frame pairs" + ("" if len(known) == len(sequences) else
                                            f" (+{len(sequences) - len(known)} sequence(s) of unknown length)")
    layouts = ", ".join(f"{n} {layout}" for layout, n in sorted(by_layout.items()))
    problems = sum(s.problem is not None for s in sequences)
    return (f"found {len(sequences)} sequence(s) ({layouts}), {frames}"
            + (f"; {problems} cannot run (reported as failed)" if problems else ""))


# ---------------------------------------------------------------------------------------------- one job
def output_path(seq: Sequence, settings: BatchSettings) -> Path:
    base = Path(settings.out_dir) / seq.name
    return base if settings.images else base.with_name(base.name + seq.suffix)


def stats_path(seq: Sequence, settings: BatchSettings) -> Path:
    base = Path(settings.out_dir) / seq.name
    return base.with_name(base.name + ".json")


def frames_in_output(path: Path) -> int | None:
    """Frames in a finished output (a video's frame count or a folder's image files); None if unreadable."""
    if path.is_dir():
        return len(_images_in(path))
    from streamfuse.io.sources import video_frame_count

    try:
        return video_frame_count(path)
    except Exception:  # noqa: BLE001 - an unreadable output is an incomplete one
        return None


def completed(seq: Sequence, settings: BatchSettings) -> dict | None:
    """The statistics of a finished sequence whose output holds every frame they count; else None."""
    try:
        record = json.loads(stats_path(seq, settings).read_text())
        written = int(record["stats"]["written"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    out = output_path(seq, settings)
    return record if out.exists() and frames_in_output(out) == written else None


class _CountingFuser:
    """The worker's fuser, counting the frames it fuses for the progress bar (sent at most twice a
    second as (sequence, frames)). The GPU stage reaches past ``fuse``; the driver then catches up
    when the sequence's result arrives."""

    def __init__(self, fuser, progress, sequence: str):
        self._fuser, self._progress, self._sequence = fuser, progress, sequence
        self._pending, self._sent_at = 0, time.monotonic()

    def __getattr__(self, name):
        return getattr(self._fuser, name)

    def fuse(self, ir, vis):
        out = self._fuser.fuse(ir, vis)
        self._pending += 1 if vis.ndim == 2 else len(vis)
        if time.monotonic() - self._sent_at > 0.5:
            self.flush()
        return out

    def flush(self) -> None:
        if self._progress is not None and self._pending:
            self._progress.put((self._sequence, self._pending))
        self._pending, self._sent_at = 0, time.monotonic()


_WORKER: dict = {}  # per worker process: the loaded fuser and its key, the progress queue


def _fuser_for(config: RunConfig):
    """The fuser of this worker process, loaded once for every sequence it runs."""
    from streamfuse.backends import load_fuser

    key = (config.model, config.variant, config.backend, config.device, config.precision, config.threads,
           config.onnx_path)
    if _WORKER.get("key") != key:
        extra = {"onnx_path": Path(config.onnx_path)} if config.onnx_path else {}
        if config.onnx_path and not extra["onnx_path"].is_file():
            raise StreamfuseError(f"{config.onnx_path}: ONNX graph not found (--onnx)")
        _WORKER["fuser"] = load_fuser(config.model, backend=config.backend, device=config.device,
                                      precision=config.precision, variant=config.variant,
                                      threads=config.threads or 1, **extra)
        _WORKER["key"] = key
        _WORKER["loads"] = _WORKER.get("loads", 0) + 1
    return _WORKER["fuser"]


def _result(seq: Sequence, status: str, output: Path | None = None, stats: dict | None = None,
            reason: str = "") -> dict:
    stats = stats or {}
    read = stats.get("read", {})
    return {"sequence": seq.name, "status": status, "ir_read": read.get("ir", ""), "vis_read": read.get("vis", ""),
            "paired": stats.get("paired", ""), "fused": stats.get("written", ""), "fps": stats.get("fps", ""),
            "seconds": stats.get("seconds", ""), "output": str(output or ""), "reason": redact_uri(reason)}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, StreamfuseError) else f"{type(exc).__name__}: {text}"


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run_sequence(seq: Sequence, settings: BatchSettings, progress=None) -> dict:
    """Fuse one sequence; a result row, never an exception."""
    try:
        return _fuse_sequence(seq, settings, output_path(seq, settings), progress)
    except Exception as exc:  # noqa: BLE001 - one sequence's failure must not stop the others
        return _result(seq, "failed", reason=_one_line(exc))


def _fuse_sequence(seq: Sequence, settings: BatchSettings, out: Path, progress) -> dict:
    from streamfuse.pipeline import Pipeline

    stats_file = stats_path(seq, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats_file.unlink(missing_ok=True)  # from here on the sequence counts as not done
    stale = re.compile(rf"{re.escape(PARTIAL)}\d+-({re.escape(out.name)}|{re.escape(stats_file.name)})")
    for path in out.parent.iterdir():  # left by a killed run
        if stale.fullmatch(path.name):
            _remove(path)
    partial = out.with_name(f"{PARTIAL}{os.getpid()}-{out.name}")
    folder_fps = {side: {"fps": settings.fps} if Path(getattr(seq, side)).is_dir() else {} for side in ("ir", "vis")}
    cfg = settings.config
    output_options = dict(cfg.output_options)
    vis_frames = _images_in(Path(seq.vis)) if Path(seq.vis).is_dir() else []
    if settings.images:
        ext = vis_frames[0].suffix.lower().lstrip(".") if vis_frames else "png"
        output_options = {"ext": ext if ext in SINK_IMAGE_EXTS else "png"}
    config = dataclasses.replace(
        cfg, ir=seq.ir, vis=seq.vis, output=f"images://{partial}" if settings.images else str(partial),
        calib=seq.calib or cfg.calib, offset_ms=seq.offset_ms if seq.offset_ms is not None else cfg.offset_ms,
        mode="lossless", progress=False, status_every=0, ir_options={**cfg.ir_options, **folder_fps["ir"]},
        vis_options={**cfg.vis_options, **folder_fps["vis"]}, output_options=output_options)
    fuser = _CountingFuser(_fuser_for(config), progress, seq.name)
    try:
        stats = Pipeline(config, fuser=fuser).run().to_dict()
    finally:
        fuser.flush()
    if stats["written"] == 0:
        _remove(partial)
        raise StreamfuseError(f"no frame pairs fused from {seq.ir} and {seq.vis} ({stats['stopped_by']})")
    if settings.images and len(vis_frames) == stats["written"] == stats["read"]["vis"]:
        _name_like_sources(partial, vis_frames, output_options["ext"])
    _remove(out)
    os.replace(partial, out)
    record = {"sequence": seq.name, "ir": redact_uri(seq.ir), "vis": redact_uri(seq.vis), "calib": config.calib, "output": str(out),
              "model": config.model, "variant": fuser.variant, "backend": fuser.backend,
              "worker": {"pid": os.getpid(), "model_loads": _WORKER["loads"]}, "stats": stats}
    tmp = stats_file.with_name(f"{PARTIAL}{os.getpid()}-{stats_file.name}")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, stats_file)  # last: its presence marks the sequence complete
    return _result(seq, "done", out, stats)


def _name_like_sources(folder: Path, vis_frames: list[Path], ext: str) -> None:
    """Frame i of the output takes the name of visible frame i (every frame was paired)."""
    for i, src in enumerate(vis_frames):
        os.replace(folder / f"{i:06d}.{ext}", folder / f"{src.stem}.{ext}")


# ---------------------------------------------------------------------------------------------- runners
def default_workers(threads: int | None, sequences: int) -> int:
    """One worker per core (per ``threads`` cores with multi-threaded backends), at most one per sequence."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores // max(threads or 1, 1), sequences))


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _init_pool_worker(config: RunConfig, progress, parent: int) -> None:
    import signal

    # A worker ends when the batch process is gone (killed), so no orphan writes on: at once on Linux
    # (the parent-death signal; set from this, the main thread), else within half a second.
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the batch process's to handle
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    _WORKER["progress"] = progress
    try:
        _fuser_for(config)  # one model load per worker, before its first sequence
    except Exception as exc:  # noqa: BLE001 - each sequence then reports it
        _WORKER["load_error"] = exc


def _pool_job(seq: Sequence, settings: BatchSettings) -> dict:
    if "load_error" in _WORKER:
        return _result(seq, "failed", reason=_one_line(_WORKER["load_error"]))
    return run_sequence(seq, settings, _WORKER.get("progress"))


def _run_pool(sequences, settings, workers, on_result, on_frames) -> None:
    import multiprocessing
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and runtimes loaded
    progress = ctx.Queue()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_pool_worker,
                               initargs=(settings.config, progress, os.getpid()))
    try:
        pending = {pool.submit(_pool_job, seq, settings): seq for seq in sequences}
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(progress, queue.Empty, on_frames)
            for future in done:
                seq = pending.pop(future)
                try:
                    on_result(future.result())
                except Exception as exc:  # noqa: BLE001 - e.g. a worker that crashed
                    on_result(_result(seq, "failed", reason=f"worker process failed ({_one_line(exc)})"))
        _drain(progress, queue.Empty, on_frames)
    except BaseException:  # Ctrl-C: stop the workers now; their partial outputs are redone next time
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in multiprocessing.active_children():
            worker.terminate()
        raise
    finally:
        pool.shutdown()


def _drain(progress, empty, on_frames) -> None:
    while True:
        try:
            on_frames(progress.get_nowait())
        except empty:
            return


def _ray_job(seq: Sequence, settings: BatchSettings, progress) -> dict:
    logging.getLogger("streamfuse").setLevel(logging.WARNING)  # one line per sequence comes from the driver
    try:
        _fuser_for(settings.config)  # cached per Ray worker process
    except Exception as exc:  # noqa: BLE001
        return _result(seq, "failed", reason=_one_line(exc))
    return run_sequence(seq, settings, progress)


def _run_ray(sequences, settings, address: str | None, on_result, on_frames) -> None:
    try:
        import ray
        from ray.util.queue import Empty, Queue
    except ImportError:
        raise StreamfuseError("--ray needs the ray package: pip install 'streamfuse[ray]'") from None
    started = not ray.is_initialized()
    if started:  # no address: RAY_ADDRESS, else a local Ray instance
        try:
            ray.init(address=address or None, logging_level=logging.WARNING)
        except Exception as exc:  # noqa: BLE001 - Ray's connection errors are several lines long
            where = address or os.environ.get("RAY_ADDRESS") or "a local Ray instance"
            raise StreamfuseError(f"--ray: cannot start or reach {where} ({_one_line(exc)[:300]})") from None
    try:
        progress = Queue()
        task = ray.remote(num_cpus=settings.config.threads or 1, max_retries=0)(_ray_job)
        pending = {task.remote(seq, settings, progress): seq for seq in sequences}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            _drain(progress, Empty, on_frames)
            for ref in done:
                seq = pending.pop(ref)
                try:
                    on_result(ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - a task or its worker died
                    on_result(_result(seq, "failed", reason=f"Ray task failed ({_one_line(exc)})"))
        _drain(progress, Empty, on_frames)
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------- summary
def write_summary(results: list[dict], out_dir: Path, wall_s: float) -> tuple[Path, Path]:
    """summary.csv (one row per sequence) and summary.md (the same table and the totals)."""
    rows = sorted(results, key=lambda r: r["sequence"])
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Batch summary", "", totals(rows, wall_s), "",
             "| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "/") for c in SUMMARY_COLUMNS) + " |" for r in rows]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def totals(rows: list[dict], wall_s: float) -> str:
    count = {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "failed")}
    fused = sum(int(r["fused"]) for r in rows if r["status"] == "done")
    rate = fused / wall_s if wall_s > 0 else 0.0
    return (f"{count['done']} done, {count['skipped']} skipped (complete), {count['failed']} failed; "
            f"{fused} frames fused in {wall_s:.1f} s = {rate:.2f} frames/s")


def run_batch(sequences: list[Sequence], settings: BatchSettings, workers: int | None = None,
              ray_address: str | None = None, use_ray: bool = False, show_progress: bool = True) -> list[dict]:
    """Run every sequence; prints one line per failure and keeps OUT_DIR/summary.{csv,md} up to date."""
    from tqdm import tqdm

    out_dir = Path(settings.out_dir)
    results: list[dict] = []
    t0 = time.perf_counter()
    known = [s.frames for s in sequences]
    seq_bar = tqdm(total=len(sequences), unit="seq", desc="sequences", file=sys.stderr, position=0,
                   disable=not show_progress, dynamic_ncols=True)
    frame_bar = tqdm(total=sum(known) if None not in known else None, unit="frame", desc="frames", file=sys.stderr,
                     position=1, disable=not show_progress, dynamic_ncols=True)

    counted: dict[str, int] = {}  # frames the workers' progress messages reported, per running sequence
    finished: set[str] = set()

    def on_frames(item: tuple[str, int]) -> None:
        name, frames = item
        if name not in finished:  # a message that arrives after its sequence's result is counted already
            counted[name] = counted.get(name, 0) + frames
            frame_bar.update(frames)

    def on_result(result: dict) -> None:
        results.append(result)
        finished.add(result["sequence"])
        seq_bar.update(1)
        frame_bar.update(max(0, int(result["fused"] or 0) - counted.pop(result["sequence"], 0)))
        if result["status"] == "failed":
            tqdm.write(f"FAILED {result['sequence']}: {result['reason']}", file=sys.stderr)
        else:
            tqdm.write(f"{result['status']:7s} {result['sequence']}: {result['fused']} frames -> {result['output']}",
                       file=sys.stderr)
        write_summary(results, out_dir, time.perf_counter() - t0)

    runnable = []
    for seq in sequences:
        if seq.problem is not None:
            on_result(_result(seq, "failed", reason=seq.problem))
        elif not settings.force and (record := completed(seq, settings)) is not None:
            on_result(_result(seq, "skipped", output_path(seq, settings), record["stats"], "complete"))
        else:
            runnable.append(seq)
    try:
        if runnable and use_ray:
            _run_ray(runnable, settings, ray_address, on_result, on_frames)
        elif runnable:
            workers = workers or default_workers(settings.config.threads, len(runnable))
            _run_pool(runnable, settings, workers, on_result, on_frames)
    finally:
        seq_bar.close()
        frame_bar.close()
    write_summary(results, out_dir, time.perf_counter() - t0)
    return results

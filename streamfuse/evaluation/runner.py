"""The evaluation runner behind ``run.py eval``: score fused images or videos, write reports.

Three ways in:

- ``score_folders(ir_dir, vis_dir, fused_dirs)``: fused images from any method, paired by file
  stem with the sources; the method is named after its folder.
- ``fuse_and_score(models, data_dir, out_dir)``: fuse ``data_dir/{ir,vis}`` with registered
  models and baselines on ONNX Runtime, then score.
- ``score_video(fused, ir, vis)``: temporal metrics of a fused video against its sources
  (MP4/MKV files or image folders).

``write_reports`` turns the scores into ``results.md`` (mean +- std per metric and method, best
per column in bold), ``results.csv`` (tidy: method, metric, mean, std, n, best),
``per_image.csv`` and ``contact_sheet.png`` (rows IR | VIS | each method).
"""
from __future__ import annotations

import csv
import importlib.util
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from streamfuse import StreamfuseError
from streamfuse.color import normalize_ir, to_gray, to_uint8
from streamfuse.io.images import list_images, read_image, source_pairs, write_image
from streamfuse.evaluation.metrics import METRICS, TEMPORAL_HIGHER_IS_BETTER, TemporalAccumulator, evaluate, higher_is_better

log = logging.getLogger("streamfuse")


@dataclass
class Scores:
    """method -> stem -> metric -> value, plus where each fused image came from (for the sheet)."""

    metrics: list[str]
    table: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    images: dict[str, dict[str, Path]] = field(default_factory=dict)  # method -> stem -> fused path
    metric_seconds: float = 0.0  # CPU time spent computing metrics (not reading or fusing)
    pixels: int = 0  # pixels scored, summed over images
    pairs: int = 0  # source pairs asked for
    failed: list[str] = field(default_factory=list)  # stems of the pairs not (fully) scored; reasons logged

    def fail(self, stem: str, exc: StreamfuseError) -> None:
        """A pair that cannot be read or scored: logged and counted, the others go on."""
        log.error("%s", exc)
        if stem not in self.failed:
            self.failed.append(stem)

    def check_any(self) -> "Scores":
        if not self.table:
            raise StreamfuseError(f"none of the {self.pairs} pair(s) could be scored (see above)")
        return self

    def add(self, method: str, stem: str, values: dict[str, float], image: Path | None = None) -> None:
        self.table.setdefault(method, {})[stem] = values
        if image is not None:
            self.images.setdefault(method, {})[stem] = image

    def summary(self) -> dict[str, dict[str, tuple[float, float, int]]]:
        """method -> metric -> (mean, population std, n) over the images with a finite value."""
        out = {}
        for method, per_stem in self.table.items():
            out[method] = {}
            for name in self.metrics:
                vals = np.array([v[name] for v in per_stem.values() if name in v], dtype=np.float64)
                vals = vals[np.isfinite(vals)]
                out[method][name] = (float(vals.mean()), float(vals.std()), len(vals)) if len(vals) else (math.nan, math.nan, 0)
        return out


# ------------------------------------------------------------------ loading sources


def load_source_pair(ir_path: Path, vis_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """IR as HxW uint8 (16-bit IR through the same AGC the models see) and visible as read (uint8)."""
    ir = to_gray(read_image(ir_path, "IR image"), name=str(ir_path))
    if ir.dtype != np.uint8:
        ir = to_uint8(normalize_ir(ir))
    vis = read_image(vis_path, "visible image")
    if vis.dtype != np.uint8:
        vis = (vis / 257).astype(np.uint8)
    if ir.shape[:2] != vis.shape[:2]:
        raise StreamfuseError(f"{ir_path} is {_wh(ir)} but {vis_path} is {_wh(vis)}: IR and visible must be one size "
                              "(register them first)")
    return ir, vis


def _loaded_pairs(pairs, scores: "Scores", bar, steps) -> Iterator[tuple[str, Path, np.ndarray, np.ndarray]]:
    """(stem, IR path, IR, visible) of each pair with ``steps(stem)`` > 0 images to score; a pair whose
    sources do not load is counted as failed (the reason logged) and its progress steps skipped."""
    for stem, ir_path, vis_path in pairs:
        if not steps(stem):
            continue
        try:
            ir, vis = load_source_pair(ir_path, vis_path)
        except StreamfuseError as exc:
            scores.fail(stem, exc)
            bar.update(steps(stem))
            continue
        yield stem, ir_path, ir, vis


def _wh(img: np.ndarray) -> str:
    return f"{img.shape[1]}x{img.shape[0]}"


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=total < 2)


def _score_one(scores: Scores, method: str, stem: str, fused: np.ndarray, fused_path: Path,
               ir: np.ndarray, ir_path: Path, vis: np.ndarray) -> None:
    if fused.shape[:2] != ir.shape[:2]:
        raise StreamfuseError(f"{fused_path} is {_wh(fused)} but its source {ir_path} is {_wh(ir)}: "
                              "fused images must have the sources' size")
    t0 = time.process_time()
    values = evaluate(fused, ir, vis, scores.metrics)
    scores.metric_seconds += time.process_time() - t0
    scores.pixels += ir.shape[0] * ir.shape[1]
    scores.add(method, stem, values, fused_path)


def timing_line(scores: Scores) -> str:
    """How long the metrics took per image (CPU time, so other load on the machine does not count)."""
    n = sum(len(v) for v in scores.table.values())
    if not n:
        return ""
    mpx = scores.pixels / n / 1e6
    return (f"metrics: {1000 * scores.metric_seconds / n:.0f} ms CPU per image ({len(scores.metrics)} metrics, "
            f"{n} images, mean {mpx:.2f} MP)")


# ------------------------------------------------------------------ mode (a): fused folders


def method_names(dirs: list[Path]) -> list[str]:
    """Folder names, made unique with the parent folder when two share a name."""
    names = [d.name for d in dirs]
    return [f"{d.parent.name}/{d.name}" if names.count(d.name) > 1 else d.name for d in dirs]


def score_folders(ir_dir, vis_dir, fused_dirs, metrics: list[str] | None = None) -> Scores:
    pairs = source_pairs(ir_dir, vis_dir)
    fused_dirs = [Path(d) for d in fused_dirs]
    scores = Scores(list(metrics or METRICS))
    methods = []
    for method, d in zip(method_names(fused_dirs), fused_dirs):
        files = list_images(d)
        missing = [s for s, _, _ in pairs if s not in files]
        if missing:
            log.warning("%s: %d of %d source stems have no fused image, scored the rest; missing: %s",
                        d, len(missing), len(pairs), ", ".join(missing))
        methods.append((method, files))
    total = sum(stem in files for stem, _, _ in pairs for _, files in methods)
    if not total:
        raise StreamfuseError("no fused image matches a source stem; fused files must be named like the sources")
    scores.pairs = sum(any(stem in files for _, files in methods) for stem, _, _ in pairs)
    bar = _progress(total, "scoring")
    todo = {stem: [(m, files[stem]) for m, files in methods if stem in files] for stem, _, _ in pairs}
    for stem, ir_path, ir, vis in _loaded_pairs(pairs, scores, bar, lambda stem: len(todo[stem])):
        for method, fused_path in todo[stem]:
            try:
                fused = read_image(fused_path, "fused image")
                if fused.dtype != np.uint8:
                    raise StreamfuseError(f"{fused_path}: fused image must be 8-bit, got {fused.dtype}")
                _score_one(scores, method, stem, fused, fused_path, ir, ir_path, vis)
            except StreamfuseError as exc:
                scores.fail(stem, exc)
            bar.update()
    bar.close()
    return scores.check_any()


# ------------------------------------------------------------------ mode (b): fuse with models


def resolve_models(text: str) -> list[tuple[str, str | None]]:
    """'all' or 'name[:variant],...' -> [(model, variant or None)].

    'all' = every baseline plus every trained model with shipped weights (its ONNX graph is
    exported to engines/ first if it is not there yet)."""
    from streamfuse.models import get_model, list_models

    if text.strip().lower() == "all":
        chosen, skipped = [], []
        for spec in list_models():
            if not spec.trained or spec.onnx_path().exists():
                chosen.append((spec.name, None))
            elif spec.weights_path().exists() and importlib.util.find_spec("torch") is not None:
                from streamfuse.export.onnx import export_onnx

                log.info("%s: weights but no ONNX graph yet; exporting it", spec.name)
                export_onnx(spec.name)
                chosen.append((spec.name, None))
            elif spec.weights_path().exists():
                log.warning("%s: weights found but no ONNX graph and no torch to export it; skipped", spec.name)
            else:
                skipped.append(spec.name)
        if skipped:
            log.info("not evaluated (no weights shipped): %s", ", ".join(skipped))
        return chosen
    out = []
    for item in text.split(","):
        name, _, variant = item.strip().partition(":")
        spec = get_model(name)
        out.append((spec.name, spec.check_variant(variant or None)))
    return out


def dataset_pairs(data_dirs) -> list[tuple[str, Path, Path]]:
    """Source pairs of one or more ``<dataset>/{ir,vis}`` folders. With several folders each stem is
    prefixed ``<dataset>/`` (the folder's name), so reports can be split per dataset; the pairs are
    interleaved across datasets so the first rows of a contact sheet show each of them."""
    dirs = [Path(d) for d in ([data_dirs] if isinstance(data_dirs, (str, Path)) else data_dirs)]
    per_dir = []
    for d in dirs:
        if not (d / "ir").is_dir() or not (d / "vis").is_dir():
            raise StreamfuseError(f"--data {d}: expected subfolders ir/ and vis/ with images paired by file stem")
        pairs = source_pairs(d / "ir", d / "vis")
        per_dir.append(pairs if len(dirs) == 1 else [(f"{d.name}/{stem}", ir, vis) for stem, ir, vis in pairs])
    if len({d.name for d in dirs}) != len(dirs):
        raise StreamfuseError("--data: the folders must have different names (they label the datasets in the report)")
    return [pairs[i] for i in range(max(map(len, per_dir))) for pairs in per_dir if i < len(pairs)]


def fuse_and_score(models: str, data_dirs, out_dir, metrics: list[str] | None = None, threads: int | None = None,
                   reuse_fused: bool = False) -> Scores:
    """Fuse each ``<data_dir>/{ir,vis}`` with each model on ONNX Runtime (fused images go to
    out_dir/fused/<method>/[<dataset>/]<stem>.png), then score them.

    ``reuse_fused``: a fused image already there and newer than the model's ONNX file is scored as
    it is instead of being fused again (to resume or extend an evaluation)."""
    from streamfuse.backends import DEFAULT_THREADS, load_fuser
    from streamfuse.stage import CpuStage

    pairs = dataset_pairs(data_dirs)
    chosen = resolve_models(models)
    if not chosen:
        raise StreamfuseError("no model to evaluate (no baselines registered and no exported models)")
    fusers = []
    for name, variant in chosen:
        fuser = load_fuser(name, backend="onnxruntime", device="cpu", variant=variant, threads=threads or DEFAULT_THREADS)
        method = name if variant in (None, fuser.spec.default_variant) else f"{name}:{variant}"
        onnx = fuser.path
        fusers.append((method, CpuStage(fuser), onnx.stat().st_mtime if reuse_fused and onnx.exists() else math.inf))
    scores = Scores(list(metrics or METRICS), pairs=len(pairs))
    reused = 0
    bar = _progress(len(pairs) * len(fusers), "fusing + scoring")
    for stem, ir_path, ir, vis in _loaded_pairs(pairs, scores, bar, lambda stem: len(fusers)):
        for method, stage, model_time in fusers:
            path = Path(out_dir) / "fused" / method.replace(":", "-") / f"{stem}.png"
            try:
                if path.exists() and path.stat().st_mtime > model_time:
                    fused = read_image(path, "fused image")
                    reused += 1
                else:
                    fused = stage.process(ir, vis).fused
                    write_image(path, fused)
                _score_one(scores, method, stem, fused, path, ir, ir_path, vis)
            except StreamfuseError as exc:
                scores.fail(stem, exc)
            bar.update()
    bar.close()
    if reuse_fused:
        log.info("reused %d of %d fused images (newer than their model's ONNX)", reused, len(pairs) * len(fusers))
    return scores.check_any()


# ------------------------------------------------------------------ mode (c): video


def iter_gray_frames(src) -> Iterator[np.ndarray]:
    """Gray uint8 frames of a video file (PyAV) or of an image folder (files in name order)."""
    path = Path(src)
    if path.is_dir():
        for p in list_images(path).values():
            img = to_gray(read_image(p, "frame"), name=str(p))
            yield img if img.dtype == np.uint8 else to_uint8(normalize_ir(img))
        return
    if not path.is_file():
        raise StreamfuseError(f"{path}: no such video file or image folder")
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise StreamfuseError(f"{path}: cannot open as a video ({exc})") from None
    with container:
        if not container.streams.video:
            raise StreamfuseError(f"{path}: has no video stream")
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="gray")
        except av.error.FFmpegError as exc:
            raise StreamfuseError(f"{path}: decoding failed ({exc})") from None


def score_video(fused, ir, vis) -> tuple[dict[str, float], int]:
    """Temporal metrics (``streamfuse.evaluation.metrics.temporal_metrics``) of a fused video against its
    sources, frames paired by index; sources may be videos or image folders.
    Returns (metrics, frames scored)."""
    from tqdm import tqdm

    names = {"fused": fused, "IR": ir, "visible": vis}
    streams = [iter_gray_frames(v) for v in names.values()]
    acc = TemporalAccumulator()
    bar = tqdm(desc="video frames", unit="frame", file=sys.stderr)
    while True:
        frames = [next(s, None) for s in streams]
        if any(f is None for f in frames):
            break
        f, i, v = frames
        if acc.pairs == 0 and acc.prev is None and not (f.shape == i.shape == v.shape):
            raise StreamfuseError(f"frame sizes differ: {fused} {_wh(f)}, {ir} {_wh(i)}, {vis} {_wh(v)}; "
                                  "the sources must be registered to the fused video's size")
        acc.add(f, i, v)
        bar.update()
    bar.close()
    longer = {k: 1 + sum(1 for _ in s) for k, s, f in zip(names, streams, frames) if f is not None}
    if longer:
        log.warning("frame counts differ: scored the first %d frames; left over: %s", acc.pairs + 1,
                    ", ".join(f"{k} {c}" for k, c in longer.items()))
    return acc.result(), acc.pairs + 1


# ------------------------------------------------------------------ reports


def _fmt(x: float, like: float | None = None) -> str:
    """3 decimals below 10, else 2 (``like``: the value whose size sets the decimals)."""
    if not math.isfinite(x):
        return str(x)
    ref = x if like is None or not math.isfinite(like) else like
    return f"{x:.2f}" if abs(ref) >= 10 else f"{x:.3f}"


def best_methods(summary, name: str) -> set[str]:
    means = {m: s[name][0] for m, s in summary.items() if math.isfinite(s[name][0])}
    if len(means) < 2:
        return set()
    target = max(means.values()) if higher_is_better(name) else min(means.values())
    return {m for m, v in means.items() if v == target}


def mean_ranks(summary) -> dict[str, float]:
    """Each method's rank (1 = best mean; ties share the better rank) among the methods of ``summary``,
    averaged over BAR_METRICS: the single figure the methods are ordered by."""
    ranks: dict[str, list[int]] = {m: [] for m in summary}
    for name in BAR_METRICS:
        sign = 1 if higher_is_better(name) else -1
        means = {m: per[name][0] for m, per in summary.items()}
        for m, v in means.items():
            ranks[m].append(1 + sum(sign * (other - v) > 0 for other in means.values()))
    return {m: sum(r) / len(r) for m, r in ranks.items()}


def markdown_table(scores: Scores, counts: dict[str, int] | None = None, count_label: str = "n") -> str:
    """One row per method; ``counts`` overrides the n column (e.g. frames of a video). With several
    methods and every BAR_METRICS column, a last column gives each method's mean rank over them."""
    summary = scores.summary()
    arrows = {n: "↑" if higher_is_better(n) else "↓" for n in scores.metrics}
    ranks = mean_ranks(summary) if len(summary) > 1 and set(BAR_METRICS) <= set(scores.metrics) else None
    lines = [f"| method | {count_label} | " + " | ".join(f"{n} {arrows[n]}" for n in scores.metrics)
             + (" | mean rank ↓" if ranks else "") + " |",
             "|---|---|" + "---|" * (len(scores.metrics) + bool(ranks))]
    best = {n: best_methods(summary, n) for n in scores.metrics}
    for method, per in summary.items():
        n_img = counts[method] if counts else max((c for _, _, c in per.values()), default=0)
        cells = []
        for name in scores.metrics:
            mean, std, count = per[name]
            text = _fmt(mean) if count <= 1 else f"{_fmt(mean)} ± {_fmt(std, mean)}"
            cells.append(f"**{text}**" if method in best[name] else text)
        if ranks:
            text = f"{ranks[method]:.2f}"
            cells.append(f"**{text}**" if ranks[method] == min(ranks.values()) else text)
        lines.append(f"| {method} | {n_img} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


LEGEND = ("↑ higher is better, ↓ lower is better; best mean per column in bold; mean ± population std over the "
          "images; mean rank: each method's rank by mean on EN, SD, SF, AG, MI, Qabf, VIF and SCD, averaged. "
          "MI in bits; SSIM and MS-SSIM sum both sources (max 2); VIF sums both sources; Qabf of a perfect "
          "fusion is 0.975 with the standard constants. Definitions: streamfuse/evaluation/metrics.py and docs/eval.md.")


def write_reports(scores: Scores, out_dir, title: str, sheet_pairs: list[tuple[str, Path, Path]] | None = None,
                  sheet_rows: int = 6, table: str | None = None, legend: str = LEGEND) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "results.md"
    text = f"# {title}\n\n{table or markdown_table(scores)}\n{legend}\n"
    if table is None:
        text += usability_section(scores) + per_dataset_section(scores)
    md.write_text(text)
    summary = scores.summary()
    with open(out_dir / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "metric", "mean", "std", "n", "best"])
        for name in scores.metrics:
            best = best_methods(summary, name)
            for method, per in summary.items():
                mean, std, n = per[name]
                w.writerow([method, name, f"{mean:.6g}", f"{std:.6g}", n, int(method in best)])
    with open(out_dir / "per_image.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "stem"] + scores.metrics)
        for method, per_stem in scores.table.items():
            for stem, vals in per_stem.items():
                w.writerow([method, stem] + [f"{vals[n]:.6g}" for n in scores.metrics])
    paths = {"markdown": md, "csv": out_dir / "results.csv", "per_image": out_dir / "per_image.csv"}
    if sheet_pairs and scores.images:
        paths["contact_sheet"] = contact_sheet(scores, sheet_pairs, out_dir / "contact_sheet.png", sheet_rows)
    return paths


def subset(scores: Scores, keep) -> Scores:
    """The scores of the stems for which ``keep(stem)`` is true."""
    out = Scores(scores.metrics)
    for method, per_stem in scores.table.items():
        for stem, vals in per_stem.items():
            if keep(stem):
                out.add(method, stem, vals, scores.images.get(method, {}).get(stem))
    return out


def per_dataset_section(scores: Scores) -> str:
    """One table per dataset when the stems carry a ``<dataset>/`` prefix (several --data folders)."""
    datasets = sorted({stem.split("/")[0] for per in scores.table.values() for stem in per if "/" in stem})
    parts = [f"\n## {d}\n\n" + markdown_table(subset(scores, lambda s, d=d: s.startswith(d + "/"))) for d in datasets]
    return "".join(parts)


BAR_METRICS = ("EN", "SD", "SF", "AG", "MI", "Qabf", "VIF", "SCD")


def usability(scores: Scores) -> dict[str, dict]:
    """The project's bar for a usable model, per method other than the average/max baselines: beats
    average fusion on >= 5 of BAR_METRICS and max fusion on >= 2 (means over the images), keeps
    thermal targets (TTC >= 0.5, judged on the median image; the minimum and the count below 0.5
    are reported too) and is not a copy of a source (every image's CCmax < 0.98).
    Empty when the scores lack the baselines or any needed metric."""
    needed = {*BAR_METRICS, "TTC", "CCmax"}
    summary = scores.summary()
    if not {"average", "max"} <= set(summary) or not needed <= set(scores.metrics):
        return {}
    out = {}
    for method, per in summary.items():
        if method in ("average", "max"):
            continue
        beats = {ref: [m for m in BAR_METRICS if per[m][0] > summary[ref][m][0]] for ref in ("average", "max")}
        ttc = np.array([v["TTC"] for v in scores.table[method].values()])
        cc = max(v["CCmax"] for v in scores.table[method].values())
        ok = len(beats["average"]) >= 5 and len(beats["max"]) >= 2 and np.median(ttc) >= 0.5 and cc < 0.98
        out[method] = {"beats_average": beats["average"], "beats_max": beats["max"], "ttc_median": float(np.median(ttc)),
                       "ttc_min": float(ttc.min()), "ttc_below_half": int((ttc < 0.5).sum()), "ccmax_max": float(cc),
                       "usable": bool(ok)}
    return out


def usability_section(scores: Scores) -> str:
    bar = usability(scores)
    if not bar:
        return ""
    lines = ["\n## The bar for a usable model\n",
             "Beats average fusion on >= 5 and max fusion on >= 2 of EN, SD, SF, AG, MI, Qabf, VIF, SCD (means); "
             "median TTC >= 0.5; CCmax < 0.98 on every image.\n",
             "| method | beats average | beats max | TTC median / min / images < 0.5 | CCmax max | usable |",
             "|---|---|---|---|---|---|"]
    for method, b in bar.items():
        lines.append(f"| {method} | {len(b['beats_average'])} ({', '.join(b['beats_average'])}) | "
                     f"{len(b['beats_max'])} ({', '.join(b['beats_max'])}) | "
                     f"{b['ttc_median']:.2f} / {b['ttc_min']:.2f} / {b['ttc_below_half']} | {b['ccmax_max']:.3f} | "
                     f"{'yes' if b['usable'] else '**no**'} |")
    return "\n".join(lines) + "\n"


VIDEO_LEGEND = ("All lower is better, 0 for a still video; best per column in bold. Flicker: mean fused change "
                "no source shows (grey levels); FlickerRatio: fused change / source change; TSI: 1 - R of fused "
                "frame differences on the sources' (temporal structure inconsistency). Definitions: docs/eval.md.")


def write_video_report(results: dict[str, tuple[dict[str, float], int]], out_dir) -> dict[str, Path]:
    """results: method (video name) -> (temporal metrics, frames scored)."""
    scores = Scores(list(TEMPORAL_HIGHER_IS_BETTER))
    for method, (vals, _) in results.items():
        scores.add(method, "video", vals)
    table = markdown_table(scores, {m: n for m, (_, n) in results.items()}, "frames")
    return write_reports(scores, out_dir, "Temporal stability", table=table, legend=VIDEO_LEGEND)


TILE_H = 180


def _tile(img: np.ndarray, label: str, size: tuple[int, int]) -> np.ndarray:
    tile = cv2.resize(img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), size, interpolation=cv2.INTER_AREA)
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(tile, (0, 0), (tw + 6, th + 8), (0, 0, 0), -1)
    cv2.putText(tile, label, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(scores: Scores, pairs: list[tuple[str, Path, Path]], out_path, rows: int = 6) -> Path:
    """One row per image pair (the first ``rows`` stems every method has): IR | VIS | methods."""
    methods = list(scores.images)
    stems = [p for p in pairs if all(p[0] in scores.images[m] for m in methods)][:rows]
    if not stems:
        raise StreamfuseError("contact sheet: no image stem was fused by every method")
    strips = []
    for stem, ir_path, vis_path in stems:
        ir, vis = load_source_pair(ir_path, vis_path)
        size = (max(1, round(ir.shape[1] * TILE_H / ir.shape[0])), TILE_H)
        tiles = [_tile(ir, f"IR {stem}", size), _tile(vis, "VIS", size)]
        tiles += [_tile(read_image(scores.images[m][stem], "fused image"), m, size) for m in methods]
        strips.append(np.hstack([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles]))
    width = max(s.shape[1] for s in strips)
    sheet = np.vstack([np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips])
    return write_image(out_path, sheet)

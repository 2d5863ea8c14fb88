"""``run.py calibrate``: measure a rig and write its calibration file.

Everything is computed and checked first; the YAML (and the overlay PNG) are written only when
every step succeeded, so a failed run leaves no file behind.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.geometry import Registration
from streamfuse.io.images import IMAGE_EXTS, check_folder_writable, write_image
from streamfuse.io.uri import redact_uri, warn_if_same_source

log = logging.getLogger("streamfuse")

DEFAULT_FRAMES = {"points": 1, "checkerboard": 10, "auto": 3, None: 1}


@dataclass
class CalibrateOptions:
    ir: str
    vis: str
    output: str
    points: str | None = None
    checkerboard: str | None = None
    auto: bool = False
    sync: bool = False
    frames: int | None = None  # frame pairs used by the spatial method
    max_frames: int = 300  # frames read per stream (the --sync window)
    fps: float | None = None  # for image sequences
    fov_ratio: float = 1.0
    model: str = "affine"
    output_size: tuple[int, int] | None = None
    crop: tuple[int, int, int, int] | None = None
    overlay: str | None = None  # PNG path; default <output stem>_overlay.png; "" for none
    max_offset_s: float | None = None


def method_of(opts: CalibrateOptions) -> str | None:
    chosen = [m for m, on in (("points", opts.points), ("checkerboard", opts.checkerboard), ("auto", opts.auto)) if on]
    if len(chosen) > 1:
        raise StreamfuseError(f"choose one of --points, --checkerboard, --auto (got {', '.join('--' + c for c in chosen)})")
    if not chosen and not opts.sync:
        raise StreamfuseError("nothing to do: give --points FILE, --checkerboard COLSxROWS or --auto (and/or --sync)")
    return chosen[0] if chosen else None


def overlay_path(opts: CalibrateOptions) -> Path | None:
    if opts.overlay == "":
        return None
    out = Path(opts.output)
    return Path(opts.overlay) if opts.overlay else out.with_name(out.stem + "_overlay.png")


def check_output(opts: CalibrateOptions) -> None:
    """Fail before any work when the YAML or the overlay PNG cannot be written."""
    path = Path(opts.output)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise StreamfuseError(f"-o {path}: the calibration file must end in .yaml")
    if path.is_dir():
        raise StreamfuseError(f"-o {path}: is a folder")
    check_folder_writable(path.parent, f"-o {path}")
    png = overlay_path(opts)
    if png is not None:
        if png.suffix.lower() not in IMAGE_EXTS or png.is_dir():
            raise StreamfuseError(f"--overlay {png}: expected an image file name, e.g. rig_overlay.png")
        check_folder_writable(png.parent, f"--overlay {png}")


def run_calibration(opts: CalibrateOptions) -> tuple[Registration, list[str], list[Path]]:
    """-> (registration, report lines, files written)."""
    from streamfuse.calibration import frames as fr

    method = method_of(opts)
    out = Path(opts.output)
    check_output(opts)
    warn_if_same_source(opts.ir, opts.vis)
    previous = None
    if method is None:  # --sync alone updates the time offset of an existing file
        previous = Registration.from_file(out) if out.exists() else Registration.identity()
    if method == "checkerboard":
        from streamfuse.calibration.checkerboard import parse_pattern

        pattern = parse_pattern(opts.checkerboard)
    if method == "points":
        from streamfuse.calibration.points import load_points

        ir_pts, vis_pts = load_points(opts.points)
    keep = opts.frames or DEFAULT_FRAMES[method]
    if _live(opts.ir) or _live(opts.vis):  # cameras: both must be read over the same seconds
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(fr.capture, uri, kind, keep, opts.max_frames, opts.fps)
                    for uri, kind in ((opts.ir, "ir"), (opts.vis, "vis"))]
            ir, vis = (job.result() for job in jobs)
    else:  # files: the visible frames nearest in time to the sampled IR frames
        ir = fr.capture(opts.ir, "ir", keep, opts.max_frames, opts.fps)
        vis = fr.capture(opts.vis, "vis", keep, opts.max_frames, opts.fps, near_ns=[f.pts_ns for f in ir.frames])
    report = [f"IR {ir.size[0]}x{ir.size[1]} ({len(ir.small)} frame(s) read), visible {vis.size[0]}x{vis.size[1]} "
              f"({len(vis.small)} frame(s) read)"]
    meta: dict = {"ir_source": redact_uri(opts.ir), "vis_source": redact_uri(opts.vis)}  # the YAML is shared
    offset_ms = previous.time_offset_ms if previous is not None else 0.0
    if opts.sync:
        from streamfuse.calibration.timeoffset import MIN_CORRELATION, estimate_offset

        res = estimate_offset(ir.small, vis.small, opts.max_offset_s)
        if res.correlation < MIN_CORRELATION:
            raise StreamfuseError(f"--sync: no clear time offset (motion correlation {res.correlation:.2f} < "
                                  f"{MIN_CORRELATION}); record a stretch with movement seen by both cameras")
        offset_ms = res.offset_ms
        if (method is not None and len(vis.small) > 1 and not _live(opts.vis)
                and abs(offset_ms) * 1e6 > _half_period_ns(vis.small)):
            # read the visible frames again, now at the IR frames' moments
            vis = fr.capture(opts.vis, "vis", keep, opts.max_frames, opts.fps,
                             near_ns=[f.pts_ns + round(offset_ms * 1e6) for f in ir.frames])
        meta["sync"] = {"offset_ms": round(res.offset_ms, 2), "correlation": round(res.correlation, 3),
                        "margin": round(res.margin, 3), "confidence": round(res.confidence, 3)}
        report.append(f"time offset: {res.offset_ms:+.1f} ms (IR + offset = visible; {res.lag_frames:+.2f} frames), "
                      f"motion correlation {res.correlation:.2f}, confidence {res.confidence:.2f}")
    pairs = list(zip(ir.frames, vis.frames))
    if method == "points":
        h, m = _points(ir_pts, vis_pts, ir.size, vis.size, opts.points, report)
    elif method == "checkerboard":
        h, m = _checkerboard(pairs, pattern, report)
    elif method == "auto":
        h, m = _auto(pairs, opts, report)
    else:
        h = previous.homography
        m = {k: v for k, v in previous.metadata.items() if k not in ("date", "tool")}  # stamped anew
        if previous.ir_size is not None:
            previous.check_sizes(ir.size, vis.size)
    meta = {**m, **meta} if method else {**m, "sync": meta.get("sync")}
    spatial = method is not None or (previous is not None and previous.ir_size is not None)
    reg = Registration(h, ir.size if spatial else None, vis.size if spatial else None,
                       opts.output_size or (previous.output_size if previous else None),
                       opts.crop or (previous.crop if previous else None), offset_ms, meta, source=str(out))
    reg = Registration.from_dict(reg.to_dict(), where=f"-o {out}")  # the same checks as loading it later
    reg.prepare(ir.frames[0].image.shape[:2], vis.frames[0].image.shape[:2])
    overlay, png = None, overlay_path(opts)
    if png is not None:
        from streamfuse.calibration.overlay import overlay_picture

        ir0, vis0 = pairs[0]
        overlay = overlay_picture(reg.warp_vis(vis0.image), reg.warp_ir(ir0.image))
    written = [reg.save(out)]
    if overlay is not None:
        written.append(write_image(png, overlay))
    return reg, report, written


def _live(uri: str) -> bool:
    from streamfuse.io.uri import parse_source

    return Path(uri).suffix.lower() not in IMAGE_EXTS and parse_source(uri).kind in ("rtsp", "v4l2")


def _half_period_ns(frames) -> float:
    return float(np.median(np.diff([f.pts_ns for f in frames]))) / 2


def _points(ir_pts, vis_pts, ir_size, vis_size, where, report):
    from streamfuse.calibration.points import check_inside, homography_from_points

    check_inside(ir_pts, ir_size, "IR", where)
    check_inside(vis_pts, vis_size, "visible", where)
    h, errors, keep = homography_from_points(ir_pts, vis_pts)
    rms = float(np.sqrt(np.mean(errors[keep] ** 2)))
    report.append(f"points: {int(keep.sum())} of {len(keep)} used, reprojection error rms {rms:.2f} px, "
                  f"max {errors[keep].max():.2f} px (visible pixels)")
    for i, (e, k) in enumerate(zip(errors, keep), 1):
        report.append(f"  point {i}: {e:.2f} px{'' if k else '  (outlier, not used)'}")
    return h, {"method": "points", "points": len(keep), "points_used": int(keep.sum()),
               "rms_error_px": rms, "max_error_px": float(errors[keep].max()),
               "point_errors_px": [round(float(e), 3) for e in errors]}


def _checkerboard(pairs, pattern, report):
    from streamfuse.calibration.checkerboard import board_homography

    h, errors, used, misses = board_homography([p[0].image for p in pairs], [p[1].image for p in pairs], pattern)
    rms = float(np.sqrt(np.mean(errors ** 2)))
    report.append(f"checkerboard {pattern[0]}x{pattern[1]}: found in both cameras in {len(used)} of {len(pairs)} "
                  f"frame pair(s), {len(errors)} corners, reprojection error rms {rms:.2f} px, max {errors.max():.2f} px")
    for miss in misses:
        report.append(f"  {miss}")
    return h, {"method": "checkerboard", "pattern": f"{pattern[0]}x{pattern[1]}", "views": len(used),
               "corners": len(errors), "rms_error_px": rms, "max_error_px": float(errors.max())}


def _auto(pairs, opts, report):
    from streamfuse.calibration.auto import MIN_INLIERS, MIN_SCORE, auto_register

    best = None
    for n, (ir, vis) in enumerate(pairs):
        res = auto_register(ir.image, vis.image, fov_ratio=opts.fov_ratio, model=opts.model)
        log.info("auto registration, frame pair %d: score %.3f, %d agreeing blocks", n, res.score, res.inliers)
        if best is None or (res.converged, res.score) > (best[1].converged, best[1].score):
            best = (n, res)
    n, res = best
    if not res.converged:
        raise StreamfuseError(
            f"--auto did not converge (edge correlation {res.score:.2f}, needs {MIN_SCORE}; {res.inliers} agreeing "
            f"blocks, needs {MIN_INLIERS}); no file written. Try --fov-ratio, frames with more structure, or --points")
    report.append(f"auto ({opts.model}): edge correlation {res.score:.3f}, {res.inliers} of {res.blocks} blocks agree, "
                  f"confidence {res.confidence:.2f} (frame pair {n} of {len(pairs)})")
    return res.homography, {"method": "auto", "model": opts.model, "fov_ratio": opts.fov_ratio,
                            "score": res.score, "confidence": res.confidence, "blocks_agreeing": res.inliers,
                            "blocks": res.blocks}

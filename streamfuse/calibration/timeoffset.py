"""``calibrate --sync``: the time offset between two cameras from motion energy.

Each stream becomes a series "where and how much did the picture change since the previous frame":
the mean absolute difference of small blurred gray frames in each cell of a 4x4 grid, at the
midpoint of the two frames' timestamps. The same movement changes both pictures at the same
moment and in about the same place whatever the modality, so the two series correlate best when
shifted by the offset (the grid makes the match specific: one global number per frame is easily
matched at a wrong lag, and codec noise in one stream drowns it). The series are compared at every lag on the
finer of the two frame periods (streams at different fps are fine: the visible series is
interpolated at the shifted IR times), and the peak is refined to sub-frame by a parabola.

Sign: ``time_offset_ms`` is what is added to an IR timestamp to get the visible timestamp of the
same moment (the pairer's convention).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamfuse import StreamfuseError

WORK_WIDTH = 160
MIN_OVERLAP = 8  # frames of the shorter series that must overlap at a lag
MIN_CORRELATION = 0.3
GRID = 4


@dataclass
class OffsetResult:
    offset_ms: float
    correlation: float  # Pearson r of the two motion series at the peak
    margin: float  # peak r minus the best r more than two frames away
    lag_frames: float  # the offset in frame periods of the finer stream

    @property
    def confidence(self) -> float:
        return float(max(0.0, min(1.0, self.correlation)) * max(0.0, min(1.0, self.margin / 0.3)))


def motion_energy(frames) -> tuple[np.ndarray, np.ndarray]:
    """Frames (with .image, .pts_ns) -> (times in s, change per frame and grid cell: T x GRID^2)."""
    prev, times, energy = None, [], []
    for f in frames:
        img = f.image
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2)
        img = img.astype(np.float32)
        h, w = img.shape
        small = cv2.resize(img, (WORK_WIDTH, max(4, round(h * WORK_WIDTH / w))), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), 1.0)
        small /= float(small.mean()) + 1e-6  # the change relative to the brightness: gains drop out
        if prev is not None:
            times.append((f.pts_ns + prev[1]) / 2e9)
            change = cv2.resize(np.abs(small - prev[0]), (GRID, GRID), interpolation=cv2.INTER_AREA)
            energy.append(change.ravel())
        prev = (small, f.pts_ns)
    return np.array(times), np.array(energy).reshape(len(times), GRID * GRID)


def estimate_offset(ir_frames, vis_frames, max_offset_s: float | None = None) -> OffsetResult:
    t_ir, e_ir = motion_energy(ir_frames)
    t_vis, e_vis = motion_energy(vis_frames)
    if len(e_ir) < MIN_OVERLAP or len(e_vis) < MIN_OVERLAP:
        raise StreamfuseError(f"--sync needs at least {MIN_OVERLAP + 1} frames from each stream "
                              f"(got {len(e_ir) + 1} IR, {len(e_vis) + 1} visible): give video or a sequence")
    step = min(np.median(np.diff(t_ir)), np.median(np.diff(t_vis)))
    span = max(t_ir[-1] - t_ir[0], t_vis[-1] - t_vis[0])
    limit = span if max_offset_s is None else max_offset_s
    # candidate offsets d: VIS time = IR time + d; the IR series is read at the VIS times - d
    lags = np.arange(-int(limit / step) - 1, int(limit / step) + 2)
    scores = np.full(len(lags), -np.inf)
    for n, k in enumerate(lags):
        d = k * step
        r = _corr_at(t_ir, e_ir, t_vis, e_vis, d)
        if r is not None:
            scores[n] = r
    if not np.isfinite(scores).any():
        raise StreamfuseError("--sync: the two streams do not overlap enough in time to compare their motion")
    i = int(np.argmax(scores))
    frac = 0.0
    if 0 < i < len(lags) - 1 and np.isfinite(scores[i - 1]) and np.isfinite(scores[i + 1]):
        den = scores[i - 1] - 2 * scores[i] + scores[i + 1]
        frac = float(np.clip(0.5 * (scores[i - 1] - scores[i + 1]) / den, -0.5, 0.5)) if den < 0 else 0.0
    far = np.abs(lags - lags[i]) > 2
    margin = float(scores[i] - scores[far].max()) if far.any() and np.isfinite(scores[far]).any() else 1.0
    offset = (lags[i] + frac) * step
    return OffsetResult(offset * 1000.0, float(scores[i]), margin, float(offset / step))


def _corr_at(t_ir, e_ir, t_vis, e_vis, d):
    """Correlation of the VIS series and the IR series moved by d over their overlap, all cells
    together (each cell's mean removed); None when the overlap is too short."""
    sel = (t_vis >= t_ir[0] + d) & (t_vis <= t_ir[-1] + d)
    if sel.sum() < MIN_OVERLAP:
        return None
    a = e_vis[sel]
    b = np.stack([np.interp(t_vis[sel] - d, t_ir, e_ir[:, c]) for c in range(e_ir.shape[1])], axis=1)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / den if den > 1e-12 else None

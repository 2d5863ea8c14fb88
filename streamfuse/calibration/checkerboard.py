"""``calibrate --checkerboard COLSxROWS``: a heated or back-lit checkerboard seen by both cameras.

COLSxROWS counts inner corners (where four squares meet), as OpenCV does: a board of 10x7 squares
is 9x6. Thermal images of a board are soft, low in contrast and often inverted (the dark squares
are the warm ones), so each frame is tried as it is, inverted, and contrast-equalised, and small
frames are also tried at twice the size. The corner order OpenCV returns can differ between the
two cameras (a 180-degree turn, or a flip when colours invert), so the grid symmetry that fits
best is used.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from streamfuse import StreamfuseError
from streamfuse.geometry import apply_homography

log = logging.getLogger("streamfuse")

SMALL_FRAME = 800  # frames narrower than this are also searched at 2x


def parse_pattern(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise StreamfuseError(f"--checkerboard '{text}': expected COLSxROWS inner corners, e.g. 9x6") from None
    if cols < 3 or rows < 3:
        raise StreamfuseError(f"--checkerboard '{text}': need at least 3x3 inner corners")
    return cols, rows


def _gray8(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY) if img.dtype == np.uint8 else img[..., :3].mean(axis=2)
    if img.dtype != np.uint8:
        f = img.astype(np.float32)
        lo, hi = np.percentile(f, (0.5, 99.5))
        img = np.clip((f - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    return img


def find_corners(img: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Inner corners (Nx2, row by row) of the board in one frame, or None."""
    gray = _gray8(img)
    lo, hi = np.percentile(gray, (1, 99))
    stretched = np.clip((gray.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255).astype(np.uint8)
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(stretched)
    scales = (1, 2) if gray.shape[1] < SMALL_FRAME else (1,)
    for scale in scales:
        for v in (stretched, 255 - stretched, clahe):
            if scale != 1:
                v = cv2.resize(v, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            ok, corners = cv2.findChessboardCornersSB(
                v, pattern, flags=cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY)
            if ok:
                return (corners.reshape(-1, 2).astype(np.float64) + 0.5) / scale - 0.5
    return None


def _symmetries(pattern: tuple[int, int]):
    """Index orders of the same grid read from another corner (and transposed when square)."""
    cols, rows = pattern
    grid = np.arange(cols * rows).reshape(rows, cols)
    views = [grid, grid[::-1], grid[:, ::-1], grid[::-1, ::-1]]
    if cols == rows:
        views += [v.T for v in views]
    return [v.ravel() for v in views]


def board_homography(ir_frames, vis_frames, pattern: tuple[int, int]):
    """Frames paired by position in the lists -> (H IR -> VIS, per-corner errors, views used, report).
    Raises when no frame pair shows the board in both cameras (naming which side failed where)."""
    src, dst, used, misses = [], [], [], []
    pairs = list(zip(ir_frames, vis_frames))
    # the exhaustive search takes seconds per frame: say what is going on
    log.info("searching %d frame pair(s) for a %dx%d checkerboard (a few seconds each)", len(pairs), *pattern)
    for n, (ir, vis) in enumerate(pairs):
        c_ir = find_corners(ir, pattern)
        c_vis = find_corners(vis, pattern)
        log.info("checkerboard: frame pair %d of %d: %s in IR, %s in visible", n + 1, len(pairs),
                 "found" if c_ir is not None else "not found", "found" if c_vis is not None else "not found")
        if c_ir is None or c_vis is None:
            misses.append(f"frame {n}: {'no board in IR' if c_ir is None else ''}"
                          f"{' and ' if c_ir is None and c_vis is None else ''}"
                          f"{'no board in visible' if c_vis is None else ''}")
            continue
        best = _best_order(c_ir, c_vis, pattern)
        src.append(c_ir[best])
        dst.append(c_vis)
        used.append(n)
    if not used:
        cols, rows = pattern
        raise StreamfuseError(f"no {cols}x{rows} checkerboard found in both cameras in {len(misses)} frame "
                              f"pair(s) ({'; '.join(misses[:3])}{'; ...' if len(misses) > 3 else ''}); check "
                              "the inner-corner count and that the board is heated or back-lit")
    src, dst = np.vstack(src), np.vstack(dst)
    h, _ = cv2.findHomography(src, dst, 0)
    if h is None:
        raise StreamfuseError("the board corners do not determine a homography")
    h = h / h[2, 2]
    errors = np.linalg.norm(apply_homography(h, src) - dst, axis=1)
    return h, errors, used, misses


def _best_order(c_ir: np.ndarray, c_vis: np.ndarray, pattern) -> np.ndarray:
    """The IR corner order that matches the visible one. A grid read from the opposite corner fits a
    homography just as exactly (turned by 180 degrees), so among the orders that fit, the one that
    keeps the cameras upright (least rotation; no mirror) wins."""
    fits = []
    for order in _symmetries(pattern):
        h, _ = cv2.findHomography(c_ir[order], c_vis, 0)
        if h is None or np.linalg.det(h[:2, :2]) <= 0:  # a mirror image cannot be the same board
            continue
        err = float(np.linalg.norm(apply_homography(h, c_ir[order]) - c_vis, axis=1).mean())
        centre = c_ir.mean(axis=0)
        a, b = apply_homography(h, [centre, centre + [10.0, 0.0]])
        fits.append((err, abs(np.arctan2(b[1] - a[1], b[0] - a[0])), order))
    if not fits:
        return _symmetries(pattern)[0]
    best_err = min(f[0] for f in fits)
    return min((f for f in fits if f[0] <= best_err + 1.0), key=lambda f: f[1])[2]

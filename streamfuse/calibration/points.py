"""``calibrate --points``: homography from corresponding points picked by a person.

File formats (>= 4 rows; pixel coordinates, OpenCV convention: integer = pixel centre):
  CSV   ``ir_x,ir_y,vis_x,vis_y`` per line (a header line and ``#`` comments are allowed)
  YAML  ``points: [[ir_x, ir_y, vis_x, vis_y], ...]``
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import yaml

from streamfuse import StreamfuseError
from streamfuse.geometry import apply_homography

RANSAC_MIN_POINTS = 8  # below this every point is kept (least squares); above, outliers are rejected
RANSAC_THRESHOLD_PX = 3.0


def load_points(path) -> tuple[np.ndarray, np.ndarray]:
    """-> (IR points Nx2, visible points Nx2)."""
    path = Path(path)
    if not path.is_file():
        raise StreamfuseError(f"{path}: points file not found")
    rows = []
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            raise StreamfuseError(f"{path}: not valid YAML") from None
        if not isinstance(data, dict) or set(data) != {"points"} or not isinstance(data["points"], list):
            raise StreamfuseError(f"{path}: expected one key 'points' with a list of [ir_x, ir_y, vis_x, vis_y]")
        rows = [(i + 1, r) for i, r in enumerate(data["points"])]
    else:
        with path.open(newline="") as f:
            for n, row in enumerate(csv.reader(f), 1):
                cells = [c.strip() for c in row]
                if not cells or not cells[0] or cells[0].startswith("#"):
                    continue
                if n == 1 and not _is_number(cells[0]):
                    continue  # header
                rows.append((n, cells))
    pts = []
    for n, row in rows:
        try:
            vals = [float(v) for v in row]
        except (TypeError, ValueError):
            vals = []
        if len(vals) != 4 or not np.isfinite(vals).all():
            raise StreamfuseError(f"{path}: row {n}: expected 4 numbers ir_x, ir_y, vis_x, vis_y, got {row!r}")
        pts.append(vals)
    if len(pts) < 4:
        raise StreamfuseError(f"{path}: {len(pts)} point pair(s); a homography needs at least 4")
    a = np.array(pts, np.float64)
    return a[:, :2], a[:, 2:]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_spread(pts: np.ndarray, what: str) -> None:
    """Refuse point sets that cannot fix a homography: all on one line, or no 4 in general position."""
    centred = pts - pts.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    if s[0] < 1e-9 or s[1] / s[0] < 1e-3:
        raise StreamfuseError(f"{what} points are collinear (all on one line); a homography needs points spread "
                              "over the image, no 3 of any 4 on a line")
    n = len(pts)
    for i in range(n):  # at least one quadruple with no 3 collinear
        for j in range(i + 1, n):
            for k in range(j + 1, n):
                for m in range(k + 1, n):
                    q = pts[[i, j, k, m]]
                    if all(abs(_area(*q[list(t)])) > 1e-3 * s[0] ** 2 / n for t in
                           ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3))):
                        return
    raise StreamfuseError(f"{what} points: no 4 of them are in general position (3 of every 4 on a line)")


def _area(a, b, c) -> float:
    return 0.5 * ((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def check_inside(pts: np.ndarray, size, what: str, where: str) -> None:
    w, h = size
    bad = np.where((pts[:, 0] < -0.5) | (pts[:, 1] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] > h - 0.5))[0]
    if len(bad):
        x, y = pts[bad[0]]
        raise StreamfuseError(f"{where}: point {bad[0] + 1} ({x:g}, {y:g}) lies outside the {what} frame "
                              f"({w}x{h}); the file does not match this stream")


def homography_from_points(ir_pts: np.ndarray, vis_pts: np.ndarray):
    """-> (H IR -> VIS, per-point reprojection error in visible pixels, inlier mask)."""
    check_spread(ir_pts, "IR")
    check_spread(vis_pts, "visible")
    if len(ir_pts) >= RANSAC_MIN_POINTS:
        h, mask = cv2.findHomography(ir_pts, vis_pts, cv2.RANSAC, RANSAC_THRESHOLD_PX)
        keep = mask.ravel().astype(bool) if h is not None else None
        if h is not None and keep.sum() >= 4:  # least squares on the inliers
            h, _ = cv2.findHomography(ir_pts[keep], vis_pts[keep], 0)
    else:
        h, _ = cv2.findHomography(ir_pts, vis_pts, 0)
        keep = np.ones(len(ir_pts), bool)
    if h is None or abs(np.linalg.det(h)) < 1e-12:
        raise StreamfuseError("the points do not determine a homography (degenerate configuration)")
    h = h / h[2, 2]
    errors = np.linalg.norm(apply_homography(h, ir_pts) - vis_pts, axis=1)
    return h, errors, keep

"""Registration of the IR frame onto the visible frame (the calibration file and its warps).

Coordinates are pixels with OpenCV's convention (integer coordinates at pixel centres), so a
homography from ``cv2.findHomography`` can be written to the file as it is. The calibration
YAML (format in ``calibration/README.md``) holds the homography IR -> VIS, the frame sizes it
was computed for, the fused output size, an optional crop of the visible frame and the time
offset between the cameras.

``Registration.prepare`` composes homography, crop and scaling once into two matrices
(IR pixel -> model IR grid, VIS pixel -> output grid) and precomputes the ``cv2.remap`` maps;
``warp_ir`` / ``warp_vis`` then cost one remap (or a resize, or nothing) per frame:

    reg = Registration.from_file("calibration/rig.yaml").prepare(ir.shape[:2], vis.shape[:2])
    ir_on_grid, vis_on_grid = reg.warp_ir(ir), reg.warp_vis(vis)
"""
from __future__ import annotations

import datetime
import difflib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from streamfuse import StreamfuseError, finite_number, read_yaml, __version__

log = logging.getLogger("streamfuse")

MIN_COVERAGE = 0.5  # a registration whose IR covers less of the output frame is most likely wrong (warned)
KEYS = ("homography", "ir_size", "vis_size", "output_size", "crop", "time_offset_ms", "metadata")
IDENTITY = np.eye(3)


def scale_matrix(src_wh, dst_wh) -> np.ndarray:
    """Pixel -> pixel map of a plain resize from src to dst size (the one cv2.resize uses)."""
    sx, sy = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def apply_homography(h: np.ndarray, pts) -> np.ndarray:
    """Nx2 points -> Nx2 points through the 3x3 homography h."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    q = np.c_[pts, np.ones(len(pts))] @ np.asarray(h, np.float64).T
    return q[:, :2] / q[:, 2:3]


MAX_SIDE = 1 << 16  # no camera or output frame is wider or taller


def _size(value, key: str, where: str) -> tuple[int, int]:
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in value)
    if not ok:
        raise StreamfuseError(f"{where}: key '{key}' must be [width, height] (two integers from 1 to {MAX_SIDE}), "
                              f"got {_short(value)}")
    return int(value[0]), int(value[1])


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_identity(h: np.ndarray) -> bool:
    return np.allclose(h / h[2, 2], IDENTITY, atol=1e-9)


@dataclass
class Registration:
    """Homography IR -> VIS and the output geometry.

    ``ir_size`` / ``vis_size`` are (w, h) the homography was computed for; both None means
    "same field of view, any sizes" (identity: IR is just resized onto the visible frame).
    ``output_size`` None means the crop size (or the visible size without a crop).
    """

    homography: np.ndarray = field(default_factory=lambda: IDENTITY.copy())
    ir_size: tuple[int, int] | None = None
    vis_size: tuple[int, int] | None = None
    output_size: tuple[int, int] | None = None
    crop: tuple[int, int, int, int] | None = None
    time_offset_ms: float = 0.0
    metadata: dict = field(default_factory=dict)
    source: str = "<identity>"
    ir_mode: str | None = field(default=None, init=False, repr=False)  # set by prepare()
    _maps: tuple | None = field(default=None, init=False, repr=False)
    # remap mode only: the IR is first area-resized to shrink_wh (None: not), then remapped by remap_matrix
    shrink_wh: tuple | None = field(default=None, init=False, repr=False)
    remap_matrix: np.ndarray | None = field(default=None, init=False, repr=False)

    # ------------------------------------------------------------ loading / saving
    @classmethod
    def identity(cls) -> "Registration":
        return cls(metadata={"method": "identity"})

    @classmethod
    def from_file(cls, path) -> "Registration":
        return cls.from_dict(read_yaml(path, "calibration file"), where=str(path))

    @classmethod
    def from_dict(cls, data, where: str = "calibration") -> "Registration":
        if data is None:
            raise StreamfuseError(f"{where}: empty calibration file (expected the keys {', '.join(KEYS)})")
        if not isinstance(data, dict):
            raise StreamfuseError(f"{where}: expected a mapping of keys ({', '.join(KEYS)}), got {type(data).__name__}")
        for key in data:
            if key not in KEYS:
                close = difflib.get_close_matches(str(key), KEYS, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(KEYS)}"
                raise StreamfuseError(f"{where}: unknown key '{key}'{hint}")
        if "homography" not in data:
            raise StreamfuseError(f"{where}: missing key 'homography' (3x3 list, IR -> visible pixels)")
        rows = data["homography"]
        if not (isinstance(rows, list) and len(rows) == 3
                and all(isinstance(r, list) and len(r) == 3 and all(map(finite_number, r)) for r in rows)):
            raise StreamfuseError(f"{where}: key 'homography' must be a 3x3 list of finite numbers, "
                                  f"got {_short(rows)}")
        h = np.array(rows, dtype=np.float64)
        if abs(h[2, 2]) < 1e-12 or abs(np.linalg.det(h / h[2, 2])) < 1e-9 or np.linalg.cond(h) > 1e12:
            raise StreamfuseError(f"{where}: key 'homography' is not invertible (determinant ~ 0)")
        h = h / h[2, 2]
        sizes = {k: _size(data[k], k, where) if data.get(k) is not None else None
                 for k in ("ir_size", "vis_size", "output_size")}
        if (sizes["ir_size"] is None) != (sizes["vis_size"] is None):
            raise StreamfuseError(f"{where}: keys 'ir_size' and 'vis_size' go together (give both or neither)")
        if sizes["ir_size"] is None and not _is_identity(h):
            raise StreamfuseError(f"{where}: key 'homography' is not the identity, so 'ir_size' and 'vis_size' "
                                  "are required (the sizes it was computed for)")
        crop = data.get("crop")
        if crop is not None:
            ok = isinstance(crop, (list, tuple)) and len(crop) == 4 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in crop)
            if not ok or crop[0] < 0 or crop[1] < 0 or crop[2] <= 0 or crop[3] <= 0:
                raise StreamfuseError(f"{where}: key 'crop' must be [x, y, width, height] in visible pixels, got {_short(crop)}")
            vs = sizes["vis_size"]
            if vs is not None and (crop[0] + crop[2] > vs[0] or crop[1] + crop[3] > vs[1]):
                raise StreamfuseError(f"{where}: key 'crop' {list(crop)} reaches outside vis_size {list(vs)}")
            crop = tuple(int(v) for v in crop)
        offset = data.get("time_offset_ms", 0.0)
        if offset is None:
            offset = 0.0
        if not finite_number(offset):
            raise StreamfuseError(f"{where}: key 'time_offset_ms' must be a finite number (milliseconds), got {_short(offset)}")
        meta = data.get("metadata") or {}
        if not isinstance(meta, dict):
            raise StreamfuseError(f"{where}: key 'metadata' must be a mapping")
        reg = cls(h, sizes["ir_size"], sizes["vis_size"], sizes["output_size"], crop, float(offset), meta, where)
        if reg.ir_size is not None:
            covered = reg.ir_coverage(reg.ir_size, reg.vis_size)
            if covered < MIN_COVERAGE:
                log.warning("%s: the IR image covers only %.0f%% of the output frame (the homography maps most of it "
                            "outside the visible frame; check the calibration)", where, 100 * covered)
        return reg

    def to_dict(self) -> dict:
        def size(v):
            return None if v is None else [int(v[0]), int(v[1])]

        meta = {"tool": f"streamfuse {__version__}",
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        meta.update(self.metadata)
        return {
            "homography": [[float(f"{v:.10g}") for v in row] for row in self.homography],
            "ir_size": size(self.ir_size),
            "vis_size": size(self.vis_size),
            "output_size": size(self.output_size),
            "crop": None if self.crop is None else [int(v) for v in self.crop],
            "time_offset_ms": float(self.time_offset_ms),
            "metadata": _plain(meta),
        }

    def save(self, path) -> Path:
        """Write the YAML atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        meta = {"metadata": data.pop("metadata")}
        text = ("# streamfuse calibration (format: calibration/README.md)\n"
                + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)  # matrix rows on one line each
                + yaml.safe_dump(meta, sort_keys=False, default_flow_style=False))
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    # ------------------------------------------------------------ geometry
    def output_wh(self, vis_wh) -> tuple[int, int]:
        if self.output_size is not None:
            return self.output_size
        return (self.crop[2], self.crop[3]) if self.crop is not None else tuple(vis_wh)

    def vis_matrix(self, vis_wh) -> np.ndarray:
        """VIS pixel -> output pixel (crop, then resize)."""
        out = self.output_wh(vis_wh)
        if self.crop is None:
            return scale_matrix(vis_wh, out)
        x, y, w, h = self.crop
        return scale_matrix((w, h), out) @ np.array([[1, 0, -x], [0, 1, -y], [0, 0, 1.0]])

    def ir_matrix(self, ir_wh, vis_wh) -> np.ndarray:
        """IR pixel -> output pixel."""
        h = self.homography if self.ir_size is not None else scale_matrix(ir_wh, vis_wh)
        return self.vis_matrix(vis_wh) @ h

    def ir_coverage(self, ir_wh, vis_wh, samples: int = 64) -> float:
        """Fraction (0..1) of the output frame the IR image lands on, from a samples x samples grid."""
        out_w, out_h = self.output_wh(vis_wh)
        xs, ys = np.meshgrid(np.linspace(0, out_w - 1, samples), np.linspace(0, out_h - 1, samples))
        p = np.linalg.inv(self.ir_matrix(ir_wh, vis_wh)) @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = p[0] / p[2], p[1] / p[2]
        # p[2] > 0: in front of the IR camera (a point behind it would map to a mirrored spot)
        inside = (p[2] > 0) & (x >= -0.5) & (x <= ir_wh[0] - 0.5) & (y >= -0.5) & (y <= ir_wh[1] - 0.5)
        return float(inside.mean())

    def check_sizes(self, ir_wh, vis_wh) -> None:
        if self.ir_size is None:
            return
        for name, have, want in (("IR", ir_wh, self.ir_size), ("visible", vis_wh, self.vis_size)):
            if tuple(have) != tuple(want):
                raise StreamfuseError(
                    f"{self.source}: calibrated for {name} frames of {want[0]}x{want[1]}, but the {name} "
                    f"stream is {have[0]}x{have[1]} (recalibrate with `run.py calibrate` or use the matching file)")

    def prepare(self, ir_hw, vis_hw, ir_out_hw=None) -> "Registration":
        """Compute the per-frame warps once for these frame sizes (h, w); ``ir_out_hw`` is the model's
        IR grid (default: the output size; e.g. 1/4 of it for DDcGAN). Returns self.

        Afterwards ``ir_to_model`` (IR pixel -> model IR grid pixel) and ``vis_to_output`` (VIS pixel
        -> output pixel) hold the 3x3 matrices a GPU path needs (see ``sampling_grid``)."""
        ir_wh, vis_wh = (int(ir_hw[1]), int(ir_hw[0])), (int(vis_hw[1]), int(vis_hw[0]))
        self.check_sizes(ir_wh, vis_wh)
        self.out_wh = tuple(self.output_wh(vis_wh))
        self.ir_out_wh = self.out_wh if ir_out_hw is None else (int(ir_out_hw[1]), int(ir_out_hw[0]))
        self.ir_wh, self.vis_wh = ir_wh, vis_wh
        self.ir_to_model = scale_matrix(self.out_wh, self.ir_out_wh) @ self.ir_matrix(ir_wh, vis_wh)
        self.vis_to_output = self.vis_matrix(vis_wh)
        self.ir_mode = _mode(self.ir_to_model, ir_wh, self.ir_out_wh)
        self._maps = self.shrink_wh = self.remap_matrix = None
        if self.ir_mode == "remap":
            m = self.ir_to_model
            scale = math.sqrt(abs(np.linalg.det(m[:2, :2] - np.outer(m[:2, 2], m[2, :2]))))  # at the origin
            if scale < 0.75:  # the IR gets much smaller: area-average first, or the remap aliases
                self.shrink_wh = (max(1, round(ir_wh[0] * scale)), max(1, round(ir_wh[1] * scale)))
                m = m @ np.linalg.inv(scale_matrix(ir_wh, self.shrink_wh))
            self.remap_matrix = m
            mx, my = _maps(m, self.ir_out_wh)
            self._maps = cv2.convertMaps(mx, my, cv2.CV_16SC2)  # fixed-point maps: about 2x faster remap
        return self

    def _prepared(self):
        if self.ir_mode is None:
            raise RuntimeError("Registration.prepare(ir_hw, vis_hw) must be called before warping")

    def float_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """For each model-grid pixel, the pixel it samples (x map, y map), float32, of the IR as the remap
        sees it (area-resized to ``shrink_wh`` first when that is set)."""
        self._prepared()
        return _maps(self.ir_to_model if self.remap_matrix is None else self.remap_matrix, self.ir_out_wh)

    def sampling_grid(self) -> np.ndarray:
        """HxWx2 float32 grid for torch ``grid_sample(ir, grid, align_corners=False)`` (x, y in [-1, 1]),
        on the IR as the remap sees it (see ``float_maps``)."""
        mx, my = self.float_maps()
        w, h = self.shrink_wh or self.ir_wh
        return np.stack([(2 * mx + 1) / w - 1, (2 * my + 1) / h - 1], axis=-1).astype(np.float32)

    def warp_ir(self, ir: np.ndarray) -> np.ndarray:
        """IR frame -> IR on the model IR grid (outside the IR field of view: 0)."""
        self._prepared()
        if self.ir_mode == "identity":
            return ir
        if self.ir_mode == "resize":
            shrink = self.ir_out_wh[0] < ir.shape[1]
            return cv2.resize(ir, self.ir_out_wh, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if self.shrink_wh is not None:
            ir = cv2.resize(ir, self.shrink_wh, interpolation=cv2.INTER_AREA)
        return cv2.remap(ir, self._maps[0], self._maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def warp_vis(self, vis: np.ndarray) -> np.ndarray:
        """Visible frame -> visible on the output grid (crop, resize)."""
        self._prepared()
        if self.crop is not None:
            x, y, w, h = self.crop
            vis = vis[y:y + h, x:x + w]
        if vis.shape[1] == self.out_wh[0] and vis.shape[0] == self.out_wh[1]:
            return vis
        shrink = self.out_wh[0] < vis.shape[1]
        return cv2.resize(vis, self.out_wh, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _maps(m: np.ndarray, dst_wh) -> tuple[np.ndarray, np.ndarray]:
    """For each destination pixel of the matrix m (source pixel -> destination pixel), the source
    pixel it samples: (x map, y map), float32."""
    w, h = dst_wh
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    src = np.linalg.inv(m) @ np.stack([xs.ravel(), ys.ravel(), np.ones(w * h)])
    src = src[:2] / src[2]
    return src[0].reshape(h, w).astype(np.float32), src[1].reshape(h, w).astype(np.float32)


def _mode(m: np.ndarray, src_wh, dst_wh) -> str:
    """'identity', 'resize' (m is exactly the plain resize between the sizes) or 'remap'."""
    if np.allclose(m, scale_matrix(src_wh, dst_wh), atol=1e-9):
        return "identity" if tuple(src_wh) == tuple(dst_wh) else "resize"
    return "remap"


def _plain(value):
    """numpy scalars/arrays -> plain Python for yaml.safe_dump."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value

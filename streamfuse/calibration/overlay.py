"""Pictures for a person to check an alignment: IR edges in colour over the visible frame, and a
checkerboard blend (tiles alternate between IR and visible, so a misaligned edge jumps at tile seams)."""
from __future__ import annotations

import cv2
import numpy as np

from streamfuse.color import auto_gain, to_uint8

EDGE_COLOUR = (255, 0, 255)  # magenta (BGR): rare in real scenes


def _ir_u8(ir: np.ndarray, size) -> np.ndarray:
    """IR on the visible grid as 8-bit gray, contrast-stretched (uint8/uint16/float input)."""
    if ir.ndim == 3:
        ir = ir[..., 0]
    if ir.shape[1] != size[0] or ir.shape[0] != size[1]:
        ir = cv2.resize(ir, size, interpolation=cv2.INTER_LINEAR)
    return ir if ir.dtype == np.uint8 else to_uint8(auto_gain(ir, (1.0, 99.0)))


def _bgr(vis: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(vis, cv2.COLOR_GRAY2BGR) if vis.ndim == 2 else vis


def draw_overlay(vis_bgr: np.ndarray, ir_registered: np.ndarray) -> np.ndarray:
    """Visible frame with the registered IR's edges drawn in magenta (any IR grid size is resized
    to the visible frame). Cheap enough per frame: one blur, two Sobels, one Canny."""
    out = _bgr(vis_bgr).copy()
    ir = cv2.GaussianBlur(_ir_u8(ir_registered, (out.shape[1], out.shape[0])), (0, 0), 1.5)
    # thresholds from this frame's own gradient spread (thermal contrast varies a lot): the
    # strongest ~8% of gradients start an edge
    mag = np.abs(cv2.Sobel(ir, cv2.CV_16S, 1, 0)) + np.abs(cv2.Sobel(ir, cv2.CV_16S, 0, 1))
    lo, hi = np.percentile(mag[::4, ::4], (85, 92))
    edges = cv2.Canny(ir, max(4.0, float(lo)), max(8.0, float(hi)))
    out[edges > 0] = EDGE_COLOUR
    return out


def checker_blend(vis_bgr: np.ndarray, ir_registered: np.ndarray, tiles: int = 8) -> np.ndarray:
    out = _bgr(vis_bgr).copy()
    h, w = out.shape[:2]
    ir = cv2.cvtColor(_ir_u8(ir_registered, (w, h)), cv2.COLOR_GRAY2BGR)
    yy, xx = np.mgrid[0:h, 0:w]
    take_ir = ((yy * tiles // h + xx * tiles // w) % 2) == 1
    out[take_ir] = ir[take_ir]
    return out


def overlay_picture(vis_bgr: np.ndarray, ir_registered: np.ndarray) -> np.ndarray:
    """Both views side by side, for the PNG that ``calibrate`` writes."""
    return np.hstack([draw_overlay(vis_bgr, ir_registered), checker_blend(vis_bgr, ir_registered)])

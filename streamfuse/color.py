"""Colour and IR handling.

Visible: BGR uint8 -> YCrCb (BT.601, full range, OpenCV's convention, as the fusion papers' code
uses); the model fuses Y with the IR and the visible Cr/Cb go back unchanged. A gray visible
frame stays gray.

IR: 8-bit frames are scaled by 1/255; 16-bit radiometric frames (thermal cores, Y16) go through
percentile AGC (the ``agc`` percentiles map to 0 and 1); 3-channel files whose channels are equal
are read as gray.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from streamfuse import StreamfuseError

log = logging.getLogger("streamfuse")

DEFAULT_AGC = (1.0, 99.0)  # percentiles of a 16-bit IR frame mapped to 0 and 1

# OpenCV's BGR <-> YCrCb for 8-bit images (BT.601, full range, chroma offset 128) in the 14-bit fixed
# point cv2.cvtColor computes them with: cv2 applies them on the CPU, the GPU stage (streamfuse.stage)
# the same integers with torch ops, so both give the same pixels.
YCRCB_SHIFT = 14
Y_FROM_BGR = (1868, 9617, 4899)  # 0.114, 0.587, 0.299
CR_FROM_R_MINUS_Y, CB_FROM_B_MINUS_Y = 11682, 9241  # 0.713, 0.564
R_FROM_CR, G_FROM_CR, G_FROM_CB, B_FROM_CB = 22987, -11698, -5636, 29049  # 1.403, -0.714, -0.344, 1.773


def split_luma(vis: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Visible BGR (HxWx3) or gray (HxW) uint8 -> (Y float32 in [0,1], CrCb uint8 HxWx2 or None)."""
    if vis.ndim == 2:
        return vis.astype(np.float32) / 255.0, None
    if vis.ndim != 3 or vis.shape[2] != 3:
        raise StreamfuseError(f"visible frame must be HxW gray or HxWx3 BGR, got shape {vis.shape}")
    ycrcb = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)
    return ycrcb[..., 0].astype(np.float32) / 255.0, ycrcb[..., 1:]


def merge_luma(fused_y: np.ndarray, crcb: np.ndarray | None) -> np.ndarray:
    """Fused Y float in [0,1] + visible CrCb -> BGR uint8 (or gray uint8 when there is no chroma)."""
    y = to_uint8(fused_y)
    if crcb is None:
        return y
    return cv2.cvtColor(np.dstack([y, crcb]), cv2.COLOR_YCrCb2BGR)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_gray(img: np.ndarray, name: str = "IR") -> np.ndarray:
    """A 1- or 3-channel image as HxW; 3 equal channels are taken as gray (most IR files are)."""
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0]
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., :3]
        if not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])):
            log.debug("%s has unequal colour channels (false-colour palette?); converted to gray", name)
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.dtype == np.uint8 else img.mean(axis=2).astype(img.dtype)
    raise StreamfuseError(f"{name}: expected a gray or 3-channel image, got shape {img.shape}")


def normalize_ir(ir: np.ndarray, agc: tuple[float, float] = DEFAULT_AGC) -> np.ndarray:
    """IR frame (uint8, uint16 radiometric, or float in [0,1]) -> float32 HxW in [0,1]."""
    ir = to_gray(ir)
    if ir.dtype == np.uint8:
        return ir.astype(np.float32) / 255.0
    if ir.dtype == np.uint16:
        return auto_gain(ir, agc)
    if np.issubdtype(ir.dtype, np.floating):
        return np.clip(ir.astype(np.float32), 0.0, 1.0)
    raise StreamfuseError(f"IR frame dtype must be uint8, uint16 or float, got {ir.dtype}")


def auto_gain(ir, percentiles: tuple[float, float] = DEFAULT_AGC):
    """Percentile AGC: the frame's ``percentiles`` map to 0 and 1, values outside are clipped; a flat
    frame gives zeros. A numpy array gives float32; a torch tensor is computed on its device (the GPU
    stage), with the same linear-interpolation percentiles."""
    if isinstance(ir, np.ndarray):
        x = ir.astype(np.float32)
        lo, hi = (np.float32(v) for v in np.percentile(ir, percentiles))
    else:
        import torch

        x = ir.float()
        lo, hi = torch.quantile(x.flatten(), x.new_tensor([p / 100 for p in percentiles])).tolist()
    if hi <= lo:  # flat frame: nothing to stretch
        return x * 0
    return ((x - lo) / (hi - lo)).clip(0.0, 1.0)

"""Fusing one IR/visible pair end to end: read, normalise, fuse the luma, put the colour back."""
from __future__ import annotations

import numpy as np

from streamfuse.backends.base import Fuser
from streamfuse.color import DEFAULT_AGC, merge_luma, normalize_ir, split_luma, to_gray
from streamfuse.io.images import read_image, write_image


def fuse_images(fuser: Fuser, ir: np.ndarray, vis: np.ndarray, agc=DEFAULT_AGC) -> np.ndarray:
    """IR (uint8/uint16, gray or 3 equal channels) + visible (BGR or gray uint8) -> fused uint8, visible's layout.

    The IR is brought to the size the model expects next to this visible frame (the visible size,
    or 1/ir_scale of it) by the Fuser, with a one-line warning when it had to be resized.
    """
    vis_y, crcb = split_luma(vis)
    fused_y = fuser.fuse(normalize_ir(ir, agc), vis_y)
    return merge_luma(fused_y, crcb)


def fuse_files(fuser: Fuser, ir_path, vis_path, out_path, agc=DEFAULT_AGC):
    ir = to_gray(read_image(ir_path, "IR image"), name=str(ir_path))
    vis = read_image(vis_path, "visible image")
    if vis.dtype != np.uint8:
        vis = (vis / 257).astype(np.uint8)
    return write_image(out_path, fuse_images(fuser, ir, vis, agc))

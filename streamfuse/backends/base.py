"""The one interface every backend implements.

``Fuser.fuse(ir, vis)`` takes the IR and the visible luma as float32 arrays in [0, 1] and returns
the fused luma, float32 in [0, 1], at the visible size. Inputs may be HxW or NxHxW (a batch of
frames of one size). Padding to the model's size multiple and the IR size check happen here, once,
so the backends only run the graph on N x 1 x H x W tensors.
"""
from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod

import cv2
import numpy as np

from streamfuse import StreamfuseError
from streamfuse.models.registry import ModelSpec

log = logging.getLogger("streamfuse")


class Fuser(ABC):
    backend = "?"

    def __init__(self, spec: ModelSpec, variant: str, device: str = "cpu", precision: str = "fp32"):
        self.spec = spec
        self.variant = variant
        self.device = device
        self.precision = precision
        self._warned_ir_size = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.spec.name}, variant={self.variant}, device={self.device}, precision={self.precision})"

    @property
    def ir_scale(self) -> int:
        return self.spec.ir_scale_for(self.variant)

    def ir_shape(self, vis_shape: tuple[int, int]) -> tuple[int, int]:
        """(h, w) the IR frame should have next to a visible frame of ``vis_shape`` (h, w)."""
        h, w = vis_shape[:2]
        return math.ceil(h / self.ir_scale), math.ceil(w / self.ir_scale)

    def fuse(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        single = vis.ndim == 2
        vis_b = vis[None] if single else vis
        ir_b = ir[None] if ir.ndim == 2 else ir
        if vis_b.ndim != 3 or ir_b.ndim != 3 or len(ir_b) != len(vis_b):
            raise StreamfuseError(f"fuse expects IR and visible as HxW or NxHxW of one batch size, got {ir.shape} and {vis.shape}")
        n, h, w = vis_b.shape
        ir_b = self._fit_ir(ir_b, (h, w))
        m = math.lcm(self.spec.pad_multiple, self.ir_scale)
        hp, wp = -(-h // m) * m, -(-w // m) * m
        vis_p = _reflect_pad(vis_b, hp, wp)
        ir_p = _reflect_pad(ir_b, hp // self.ir_scale, wp // self.ir_scale)
        out = self._run(np.ascontiguousarray(ir_p[:, None], np.float32), np.ascontiguousarray(vis_p[:, None], np.float32))
        out = np.clip(out[:, 0, :h, :w], 0.0, 1.0)
        return out[0] if single else out

    def _fit_ir(self, ir: np.ndarray, vis_hw: tuple[int, int]) -> np.ndarray:
        want = self.ir_shape(vis_hw)
        if ir.shape[1:] == want:
            return ir
        if not self._warned_ir_size:
            log.warning("IR %dx%d resized to %dx%d for %s next to visible %dx%d",
                        ir.shape[2], ir.shape[1], want[1], want[0], self.spec.name, vis_hw[1], vis_hw[0])
            self._warned_ir_size = True
        interp = cv2.INTER_AREA if ir.shape[1] > want[0] else cv2.INTER_LINEAR
        return np.stack([cv2.resize(f, (want[1], want[0]), interpolation=interp) for f in ir])

    @abstractmethod
    def _run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """N x 1 x h x w float32 IR and N x 1 x H x W float32 visible -> N x 1 x H x W fused (per backend)."""

    def close(self) -> None:
        pass


def _reflect_pad(x: np.ndarray, hp: int, wp: int) -> np.ndarray:
    ph, pw = hp - x.shape[1], wp - x.shape[2]
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[1] and pw < x.shape[2] else "edge"
    return np.pad(x, ((0, 0), (0, ph), (0, pw)), mode=mode)

"""The one interface every backend implements.

``Fuser.fuse(ir, vis)`` takes the IR and the visible luma as float32 arrays in [0, 1] and returns
the fused luma, float32 in [0, 1], at the visible size. Inputs may be HxW or NxHxW (a batch of
frames of one size). ``Fuser.fuse_tensor(ir, vis)`` does the same on torch tensors N x 1 x H x W
that stay on their device (the GPU stage): the torch backend runs its module on them, TensorRT its
engine buffers on the current CUDA stream, host-only runtimes make one round trip through the host.
Padding to the model's size multiple and the IR size check happen here, once, so the backends only
run the graph on N x 1 x H x W inputs (``_run`` on numpy, ``_run_tensor`` on torch).
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

    def padded_shape(self, vis_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) the visible input is padded to: a multiple of the model's size multiple and IR scale."""
        m = math.lcm(self.spec.pad_multiple, self.ir_scale)
        return -(-vis_hw[0] // m) * m, -(-vis_hw[1] // m) * m

    def fuse(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """IR and visible luma, float32 in [0, 1], HxW or NxHxW -> fused luma, float32 in [0, 1], visible size.
        An IR of another size than ``ir_shape`` is resized to it (one warning)."""
        single = vis.ndim == 2
        vis_b = vis[None] if single else vis
        ir_b = ir[None] if ir.ndim == 2 else ir
        if vis_b.ndim != 3 or ir_b.ndim != 3 or len(ir_b) != len(vis_b):
            raise StreamfuseError(f"fuse expects IR and visible as HxW or NxHxW of one batch size, got {ir.shape} and {vis.shape}")
        n, h, w = vis_b.shape
        ir_b = self._fit_ir(ir_b, (h, w))
        hp, wp = self.padded_shape((h, w))
        vis_p = pad_bottom_right(vis_b, hp, wp)
        ir_p = pad_bottom_right(ir_b, hp // self.ir_scale, wp // self.ir_scale)
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

    def fuse_tensor(self, ir, vis):
        """torch tensors, IR N x 1 x h x w on the model's IR grid (``ir_shape``) and visible luma
        N x 1 x H x W, float in [0, 1] -> fused luma N x 1 x H x W float32 in [0, 1] on the visible's device.

        The result may share memory with the backend (TensorRT's output buffer): use it before the next call."""
        h, w = vis.shape[-2:]
        if ir.ndim != 4 or vis.ndim != 4 or ir.shape[:2] != vis.shape[:2] or ir.shape[1] != 1:
            raise StreamfuseError(f"fuse_tensor expects IR and visible as N x 1 x H x W tensors, got "
                                  f"{tuple(ir.shape)} and {tuple(vis.shape)}")
        if tuple(ir.shape[-2:]) != self.ir_shape((h, w)):
            raise StreamfuseError(f"fuse_tensor: {self.spec.name} takes the IR at {self.ir_shape((h, w))} next to a "
                                  f"visible of {(h, w)}, got {tuple(ir.shape[-2:])} (register or resize it first)")
        hp, wp = self.padded_shape((h, w))
        out = self._run_tensor(pad_bottom_right(ir, hp // self.ir_scale, wp // self.ir_scale), pad_bottom_right(vis, hp, wp))
        return out[..., :h, :w].float().clamp(0.0, 1.0)

    @abstractmethod
    def _run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """N x 1 x h x w float32 IR and N x 1 x H x W float32 visible -> N x 1 x H x W fused (per backend)."""

    def _run_tensor(self, ir, vis):
        """``_run`` on torch tensors; this default (host-only runtimes) makes one round trip through the host."""
        import torch

        out = self._run(np.ascontiguousarray(ir.detach().float().cpu().numpy()),
                        np.ascontiguousarray(vis.detach().float().cpu().numpy()))
        return torch.from_numpy(out).to(vis.device)

    def close(self) -> None:
        pass


def pad_bottom_right(x, hp: int, wp: int):
    """Reflect-pad the last two axes of ``x`` (numpy array or N x C x H x W torch tensor) at the bottom
    and right to hp x wp; edge padding where the frame is too small to reflect."""
    ph, pw = hp - x.shape[-2], wp - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    reflect = ph < x.shape[-2] and pw < x.shape[-1]
    if isinstance(x, np.ndarray):
        return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)], mode="reflect" if reflect else "edge")
    import torch.nn.functional as F

    return F.pad(x, (0, pw, 0, ph), mode="reflect" if reflect else "replicate")

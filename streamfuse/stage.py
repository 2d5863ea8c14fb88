"""The per-pair work, written once: register the IR onto the visible frame, normalise it, take the
visible luma, run the model, put the visible colour back.

    stage = make_stage(fuser, registration)   # CpuStage, or GpuStage when the fuser runs on CUDA
    result = stage.process(ir, vis)           # numpy frames in (IR uint8/uint16/float gray, visible BGR/gray uint8)
    result.fused                              # uint8 BGR (gray for a gray visible) on the output grid

- ``CpuStage``: the cv2 warps of ``Registration``, ``streamfuse.color`` and ``Fuser.fuse``.
- ``GpuStage``: the same steps with torch ops on the fuser's device. The raw frames go up once
  (uint8/uint16), the IR is registered with ``grid_sample`` on ``Registration.sampling_grid()`` (the
  pixel convention of cv2.remap), the model runs through ``Fuser.fuse_tensor`` and only the fused
  frame comes back. Without a GPU it runs with torch on the CPU, which is how it is tested against
  ``CpuStage``.

The pipeline, ``fuse``, ``eval``, ``bench`` (the serial loop, and ``CpuStage.model_inputs`` for the
model-only timing), the FP16 check and ``streamfuse.Fusion`` all go through here.
"""
from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.color import (B_FROM_CB, CB_FROM_B_MINUS_Y, CR_FROM_R_MINUS_Y, DEFAULT_AGC, G_FROM_CB, G_FROM_CR,
                              R_FROM_CR, Y_FROM_BGR, YCRCB_SHIFT, auto_gain, merge_luma, normalize_ir, split_luma,
                              to_gray)
from streamfuse.geometry import Registration

log = logging.getLogger("streamfuse")

KINDS = ("auto", "cpu", "gpu")


@dataclass
class StageResult:
    """One fused pair. ``ir``/``vis`` (for mosaic and overlay) are always set by CpuStage, by GpuStage
    only when it was made with ``keep_inputs=True`` (they cost a download)."""
    fused: np.ndarray  # uint8 HxWx3 BGR, or HxW gray when the visible frame is gray, on the output grid
    ir: np.ndarray | None = None  # registered, normalised IR: float32 in [0, 1] on the model's IR grid
    vis: np.ndarray | None = None  # registered visible frame: uint8 on the output grid
    seconds: dict[str, float] = field(default_factory=dict)  # step (prepare, model, colour) -> seconds of this pair


class Stage(ABC):
    """What every stage shares: the fuser, the registration (prepared once per pair of frame sizes),
    the IR auto gain, the input checks and a count of the pairs it has processed."""

    kind = ""

    def __init__(self, fuser, registration: Registration | None = None, agc: tuple[float, float] = DEFAULT_AGC,
                 keep_inputs: bool = False):
        self.fuser = fuser
        self.registration = registration or Registration.identity()
        self.agc = (float(agc[0]), float(agc[1]))
        self.keep_inputs = keep_inputs
        self.frames = 0  # pairs processed
        self._sizes = None

    @abstractmethod
    def process(self, ir: np.ndarray, vis: np.ndarray) -> StageResult:
        """IR (uint8/uint16 or float in [0, 1]; gray or 3 equal channels) + visible (BGR or gray uint8) -> fused."""

    def _check(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ir = np.ascontiguousarray(to_gray(ir))
        if ir.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
            raise StreamfuseError(f"IR frame must be uint8, uint16 or float, got {ir.dtype}")
        if vis.dtype != np.uint8 or vis.ndim not in (2, 3) or (vis.ndim == 3 and vis.shape[2] != 3):
            raise StreamfuseError(f"visible frame must be HxWx3 BGR or HxW gray uint8, got {vis.shape} {vis.dtype}")
        sizes = (ir.shape[:2], vis.shape[:2])
        if sizes != self._sizes:
            self._prepare(*sizes)
            self._sizes = sizes
        return ir, np.ascontiguousarray(vis)

    def _prepare(self, ir_hw, vis_hw) -> None:
        """Warps for these frame sizes; the IR goes straight to the model's IR grid (1/ir_scale for DDcGAN-style models)."""
        reg = self.registration
        out_w, out_h = reg.output_wh((vis_hw[1], vis_hw[0]))
        reg.prepare(ir_hw, vis_hw, ir_out_hw=self.fuser.ir_shape((out_h, out_w)))
        calibrated = reg.source != Registration.identity().source
        if reg.ir_mode == "resize" and not calibrated:
            log.warning("IR %dx%d resized to %dx%d for %s next to visible %dx%d (no calibration file)",
                        ir_hw[1], ir_hw[0], *reg.ir_out_wh, self.fuser.spec.name, vis_hw[1], vis_hw[0])
        log.log(logging.INFO if calibrated else logging.DEBUG, "%s stage: IR %dx%d -> %s, visible %dx%d -> output %dx%d",
                self.kind, ir_hw[1], ir_hw[0], reg.ir_mode, vis_hw[1], vis_hw[0], out_w, out_h)


class CpuStage(Stage):
    """cv2 warps, streamfuse.color and ``Fuser.fuse`` on numpy frames."""

    kind = "cpu"

    def model_inputs(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the model takes for this pair: (IR float32 [0, 1] on the model's IR grid, visible luma
        float32 [0, 1] on the output grid). For model-only timing (bench) and the FP16 check."""
        ir_f, _, vis_y, _ = self._inputs(*self._check(ir, vis))
        return ir_f, vis_y

    def _inputs(self, ir, vis):
        reg = self.registration
        vis_img = reg.warp_vis(vis)
        vis_y, crcb = split_luma(vis_img)
        return normalize_ir(reg.warp_ir(ir), self.agc), vis_img, vis_y, crcb

    def process(self, ir: np.ndarray, vis: np.ndarray) -> StageResult:
        ir, vis = self._check(ir, vis)
        t0 = time.perf_counter()
        ir_f, vis_img, vis_y, crcb = self._inputs(ir, vis)
        t1 = time.perf_counter()
        fused_y = self.fuser.fuse(ir_f, vis_y)
        t2 = time.perf_counter()
        fused = merge_luma(fused_y, crcb)
        self.frames += 1
        return StageResult(fused, ir_f, vis_img,
                           {"prepare": t1 - t0, "model": t2 - t1, "colour": time.perf_counter() - t2})


class GpuStage(Stage):
    """The same steps with torch ops on ``device`` (default: the fuser's); the model runs through
    ``Fuser.fuse_tensor``, so any backend works (host-only runtimes make one round trip)."""

    kind = "gpu"

    def __init__(self, fuser, registration: Registration | None = None, agc: tuple[float, float] = DEFAULT_AGC,
                 keep_inputs: bool = False, device: str | None = None):
        super().__init__(fuser, registration, agc, keep_inputs)
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            raise StreamfuseError("the GPU stage needs PyTorch: pip install -e '.[torch]'") from None
        self.torch, self.F = torch, F
        self.device = torch.device(device or fuser.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise StreamfuseError("GPU stage asked for on 'cuda', but torch sees no CUDA device")
        self.grid = None
        self._area: dict = {}

    def _prepare(self, ir_hw, vis_hw) -> None:
        super()._prepare(ir_hw, vis_hw)
        reg = self.registration
        self.grid = self.torch.from_numpy(reg.sampling_grid())[None].to(self.device) if reg.ir_mode == "remap" else None

    def process(self, ir: np.ndarray, vis: np.ndarray) -> StageResult:
        ir, vis = self._check(ir, vis)
        t0 = time.perf_counter()
        torch = self.torch
        ir_t = torch.from_numpy(ir.view(np.int16) if ir.dtype == np.uint16 else ir).to(self.device)
        if ir.dtype == np.uint16:
            ir_t = ir_t.to(torch.int32) & 0xFFFF  # torch has no uint16 arithmetic: its bits went up as int16
        fused, ir_f, vis_out = self.compute(ir_t, torch.from_numpy(vis).to(self.device), ir.dtype)
        result = StageResult(fused.cpu().numpy())  # waits for the device
        if self.keep_inputs:
            result.ir, result.vis = ir_f[0, 0].cpu().numpy(), vis_out.cpu().numpy()
        result.seconds["model"] = time.perf_counter() - t0  # one number: the device queue runs asynchronously
        self.frames += 1
        return result

    def compute(self, ir_raw, vis_raw, ir_dtype=np.uint8):
        """Device tensors: IR h x w (raw values), visible H x W x 3 BGR or H x W (0..255) -> (fused uint8
        H x W x 3 BGR or H x W, normalised IR 1 x 1 x h x w on the model grid, visible uint8 on the output grid)."""
        torch = self.torch
        ir = self._normalize_ir(self._warp_ir(ir_raw.float()[None, None]), ir_dtype)
        if vis_raw.ndim == 2:
            y = self._vis_to_output(vis_raw.float()[None, None])
            fused = self.fuser.fuse_tensor(ir, y / 255.0)[0, 0]
            return (fused * 255.0 + 0.5).floor().to(torch.uint8), ir, y[0, 0].to(torch.uint8)  # as color.to_uint8
        bgr = self._vis_to_output(vis_raw.float().permute(2, 0, 1)[None])[0]
        b, g, r = bgr
        y = _fixed(Y_FROM_BGR[0] * b + Y_FROM_BGR[1] * g + Y_FROM_BGR[2] * r)
        cr = (_fixed((r - y) * CR_FROM_R_MINUS_Y) + 128).clamp(0, 255)
        cb = (_fixed((b - y) * CB_FROM_B_MINUS_Y) + 128).clamp(0, 255)
        fused = self.fuser.fuse_tensor(ir, (y / 255.0)[None, None])[0, 0]
        fy = (fused * 255.0 + 0.5).floor()  # as color.to_uint8
        out = torch.stack([fy + _fixed(B_FROM_CB * (cb - 128)),
                           fy + _fixed(G_FROM_CR * (cr - 128) + G_FROM_CB * (cb - 128)),
                           fy + _fixed(R_FROM_CR * (cr - 128))], dim=-1)
        return out.clamp(0, 255).to(torch.uint8), ir, bgr.permute(1, 2, 0).to(torch.uint8)

    def _resize(self, x, out_wh):
        """N x C x H x W float -> out size as cv2.resize does it: pixel-area weights when shrinking
        (INTER_AREA, also for non-integer ratios), bilinear with pixel centres otherwise (INTER_LINEAR)."""
        w, h = out_wh
        if (x.shape[-1], x.shape[-2]) == (w, h):
            return x
        if w < x.shape[-1]:
            return self._area_matrix(x.shape[-2], h) @ x @ self._area_matrix(x.shape[-1], w).T
        return self.F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

    def _area_matrix(self, n_in: int, n_out: int):
        """n_out x n_in weights: output pixel i averages the input over [i, i + 1) * n_in / n_out (cached)."""
        key = (n_in, n_out)
        if key not in self._area:
            edges = np.arange(n_out + 1) * (n_in / n_out)
            lo, hi = edges[:-1, None], edges[1:, None]
            j = np.arange(n_in)[None]
            overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None) / (n_in / n_out)
            self._area[key] = self.torch.from_numpy(overlap.astype(np.float32)).to(self.device)
        return self._area[key]

    def _warp_ir(self, ir):
        """1 x 1 x h x w float (raw IR values) -> IR on the model's IR grid (0 outside the IR view)."""
        reg = self.registration
        if reg.ir_mode == "identity":
            return ir
        if reg.ir_mode == "resize":
            return self._resize(ir, reg.ir_out_wh)
        if reg.shrink_wh is not None:  # as Registration.warp_ir: area-average first when the IR gets much smaller
            ir = self._resize(ir, reg.shrink_wh)
        return self.F.grid_sample(ir, self.grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _normalize_ir(self, ir, dtype):
        if dtype in (np.uint8, np.uint16):
            ir = (ir + 0.5).floor()  # cv2 warps keep the integer type: round (halves up) like they do
        if dtype == np.uint8:
            return ir / 255.0
        if dtype == np.uint16:
            return auto_gain(ir, self.agc)
        return ir.clamp(0.0, 1.0)

    def _vis_to_output(self, vis):
        """1 x C x H x W float (0..255) -> crop + resize to the output grid, rounded to integers like cv2."""
        reg = self.registration
        if reg.crop is not None:
            x, y, w, h = reg.crop
            vis = vis[..., y:y + h, x:x + w]
        return (self._resize(vis, reg.out_wh) + 0.5).floor().clamp(0, 255)  # cv2 rounds halves up


def _fixed(x):
    """cv2's fixed-point step: (x + half) >> YCRCB_SHIFT, exact in float32 for these 8-bit sums."""
    return ((x + (1 << (YCRCB_SHIFT - 1))) / (1 << YCRCB_SHIFT)).floor()


def make_stage(fuser, registration: Registration | None = None, agc: tuple[float, float] = DEFAULT_AGC,
               kind: str = "auto", keep_inputs: bool = False) -> Stage:
    """The stage for ``fuser``: ``kind`` "auto" is GpuStage when the fuser runs on CUDA, else CpuStage;
    "gpu" forces GpuStage on the fuser's device (torch on the CPU for a CPU fuser), "cpu" CpuStage."""
    if kind not in KINDS:
        raise StreamfuseError(f"stage '{kind}': expected one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "gpu" if fuser.device == "cuda" else "cpu"
    if kind == "gpu":
        return GpuStage(fuser, registration, agc, keep_inputs)
    return CpuStage(fuser, registration, agc, keep_inputs)

"""GPU-resident prepare -> fuse -> colour stage: each frame crosses the bus twice (uint8 up, BGR down).

The CPU path (``streamfuse.pipeline``) does per pair: ``Registration.warp_ir`` / ``warp_vis``
(cv2.remap / cv2.resize), ``split_luma`` (BGR -> YCrCb), ``normalize_ir``, ``Fuser.fuse`` and
``merge_luma``. ``GpuFusion`` does the same steps with torch ops on the fuser's device:

- upload the raw uint8 (or uint16) frames from pinned host buffers, once;
- IR registration with ``grid_sample`` on ``Registration.sampling_grid()`` (the same homography
  and pixel convention as cv2.remap), or a plain resize / nothing when that is all it is;
- visible crop + resize, BGR -> YCrCb with OpenCV's BT.601 full-range coefficients;
- IR normalisation (1/255, or percentile AGC for 16-bit);
- reflect padding to the model's size multiple, inference (``run_torch`` of the TensorRT backend,
  the torch module itself, or, for host-only runtimes, one round trip);
- fused Y + visible Cr/Cb -> BGR uint8, then download that frame only.

``run(pairs)`` overlaps the upload of frame k+1 (a separate CUDA stream, two pinned slots) with the
compute of frame k. On a CPU-only machine the same code runs with torch on the CPU, which is how
its numerics are tested against the cv2 path.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.color import DEFAULT_AGC, to_gray

log = logging.getLogger("streamfuse")

# OpenCV's YCrCb (BT.601, full range, delta 128) for 8-bit images
KR, KG, KB = 0.299, 0.587, 0.114
CR_SCALE, CB_SCALE = 0.713, 0.564
R_FROM_CR, G_FROM_CR, G_FROM_CB, B_FROM_CB = 1.403, -0.714, -0.344, 1.773


@dataclass
class _Slot:
    """Pinned host and device buffers for one frame in flight, with the events that guard them."""
    host_ir: object
    host_vis: object
    dev_ir: object
    dev_vis: object
    host_out: object | None = None
    uploaded: object | None = None  # event: the host -> device copy finished (pinned input reusable)
    consumed: object | None = None  # event: compute has read the device inputs (device input reusable)
    downloaded: object | None = None  # event: the fused frame is in host_out


class GpuFusion:
    """Prepare, fuse and colour IR/visible frames on ``fuser.device`` (or ``device``)."""

    def __init__(self, fuser, registration=None, agc=DEFAULT_AGC, device: str | None = None):
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            raise StreamfuseError("the GPU pipeline stage needs PyTorch: pip install -e '.[torch]'") from None
        from streamfuse.geometry import Registration

        self.torch, self.F = torch, F
        self.fuser = fuser
        self.registration = registration or Registration.identity()
        self.agc = tuple(agc)
        self.device = torch.device(device or getattr(fuser, "device", "cpu"))
        self.cuda = self.device.type == "cuda"
        if self.cuda and not torch.cuda.is_available():
            raise StreamfuseError("GPU stage asked for on 'cuda', but torch sees no CUDA device")
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._sizes = None
        self._slots: list[_Slot] = []
        self._count = 0

    # ------------------------------------------------------------ geometry, once per frame size
    def _prepare(self, ir_hw, vis_hw) -> None:
        torch = self.torch
        reg = self.registration
        out_w, out_h = reg.output_wh((vis_hw[1], vis_hw[0]))
        reg.prepare(ir_hw, vis_hw, ir_out_hw=self.fuser.ir_shape((out_h, out_w)))
        self.grid = torch.from_numpy(reg.sampling_grid())[None].to(self.device) if reg.ir_mode == "remap" else None
        self._sizes = (tuple(ir_hw), tuple(vis_hw))
        self._slots = []
        log.info("GPU stage on %s: IR %dx%d -> %s, visible %dx%d -> %dx%d", self.device, ir_hw[1], ir_hw[0],
                 reg.ir_mode, vis_hw[1], vis_hw[0], out_w, out_h)

    def _resize(self, x, out_wh):
        """N x C x H x W float -> out size: area averaging when shrinking, bilinear (cv2's pixel centres) otherwise."""
        w, h = out_wh
        if (x.shape[-1], x.shape[-2]) == (w, h):
            return x
        if w < x.shape[-1]:
            return self.F.interpolate(x, size=(h, w), mode="area")
        return self.F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

    # ------------------------------------------------------------ per-frame compute (device tensors)
    def _warp_ir(self, ir):
        """1 x 1 x h x w float (raw IR values) -> IR on the model's IR grid (0 outside the IR view)."""
        reg = self.registration
        if reg.ir_mode == "identity":
            return ir
        if reg.ir_mode == "resize":
            return self._resize(ir, reg.ir_out_wh)
        return self.F.grid_sample(ir, self.grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _normalize_ir(self, ir, dtype: np.dtype):
        if dtype == np.uint8:
            return ir.round() / 255.0  # cv2 warps keep uint8: round like they do
        if dtype == np.uint16:
            ir = ir.round()
            q = self.torch.tensor([self.agc[0] / 100, self.agc[1] / 100], device=ir.device)
            lo, hi = self.torch.quantile(ir.flatten(), q).tolist()  # linear interpolation, as np.percentile
            if hi <= lo:
                return self.torch.zeros_like(ir)
            return ((ir - lo) / (hi - lo)).clamp(0.0, 1.0)
        return ir.clamp(0.0, 1.0)

    def _vis_to_output(self, vis):
        """1 x C x H x W float (0..255) -> crop + resize to the output grid, rounded to integers like cv2."""
        reg = self.registration
        if reg.crop is not None:
            x, y, w, h = reg.crop
            vis = vis[..., y:y + h, x:x + w]
        return self._resize(vis, reg.out_wh).round().clamp(0, 255)

    def _infer(self, ir, vis):
        """N x 1 x h x w float32 tensors on the device -> fused N x 1 x H x W float32, padded like Fuser.fuse."""
        torch, F, fuser = self.torch, self.F, self.fuser
        h, w = vis.shape[-2:]
        scale = fuser.ir_scale
        m = math.lcm(fuser.spec.pad_multiple, scale)
        hp, wp = -(-h // m) * m, -(-w // m) * m
        vis = _pad(F, vis, hp, wp)
        ir = _pad(F, ir, hp // scale, wp // scale)
        if hasattr(fuser, "run_torch"):  # TensorRT: engine IO buffers on the same stream
            out = fuser.run_torch(ir, vis)
        elif getattr(fuser, "module", None) is not None:  # torch backend: the module itself
            with torch.inference_mode():
                out = fuser.module(ir.to(fuser.dtype), vis.to(fuser.dtype))
        else:  # host-only runtimes (ONNX Runtime, OpenVINO): one round trip
            out = torch.from_numpy(fuser._run(ir.cpu().numpy(), vis.cpu().numpy())).to(self.device)
        return out[..., :h, :w].float().clamp(0.0, 1.0)

    def compute(self, ir_raw, vis_raw, ir_dtype=np.uint8):
        """Device tensors: IR h x w (raw values), visible H x W x 3 BGR or H x W (0..255) -> fused uint8
        H x W x 3 BGR (or H x W gray) on the device."""
        torch = self.torch
        ir = self._warp_ir(ir_raw.float()[None, None])
        ir = self._normalize_ir(ir, ir_dtype)
        if vis_raw.ndim == 2:
            y = self._vis_to_output(vis_raw.float()[None, None])[0]
            fused = self._infer(ir, y[None] / 255.0)[0, 0]
            return (fused * 255.0 + 0.5).floor().to(torch.uint8)
        bgr = self._vis_to_output(vis_raw.float().permute(2, 0, 1)[None])[0]
        b, g, r = bgr
        y = (KR * r + KG * g + KB * b).round()
        cr = ((r - y) * CR_SCALE + 128).round().clamp(0, 255)
        cb = ((b - y) * CB_SCALE + 128).round().clamp(0, 255)
        fused = self._infer(ir, (y / 255.0)[None, None])[0, 0]
        fy = (fused * 255.0 + 0.5).floor()  # as color.to_uint8
        out = torch.stack([fy + B_FROM_CB * (cb - 128),
                           fy + G_FROM_CR * (cr - 128) + G_FROM_CB * (cb - 128),
                           fy + R_FROM_CR * (cr - 128)], dim=-1)
        return out.round().clamp(0, 255).to(torch.uint8)

    # ------------------------------------------------------------ host <-> device
    def _host_tensor(self, shape, dtype):
        torch = self.torch
        return torch.empty(shape, dtype=dtype, pin_memory=self.cuda)

    def _slot(self, k: int, ir: np.ndarray, vis: np.ndarray) -> _Slot:
        torch = self.torch
        while len(self._slots) < 2:
            ir_dtype = torch.int16 if ir.dtype == np.uint16 else torch.from_numpy(ir[:1]).dtype  # uint16 as its bits
            vis_dtype = torch.from_numpy(vis[:1]).dtype
            self._slots.append(_Slot(
                host_ir=self._host_tensor(ir.shape, ir_dtype), host_vis=self._host_tensor(vis.shape, vis_dtype),
                dev_ir=torch.empty(ir.shape, dtype=ir_dtype, device=self.device),
                dev_vis=torch.empty(vis.shape, dtype=vis_dtype, device=self.device)))
        return self._slots[k % 2]

    def _upload(self, k: int, ir: np.ndarray, vis: np.ndarray) -> _Slot:
        torch = self.torch
        slot = self._slot(k, ir, vis)
        if slot.uploaded is not None:
            slot.uploaded.synchronize()  # this slot's pinned buffers are free again
        slot.host_ir.numpy()[...] = ir.view(np.int16) if ir.dtype == np.uint16 else ir
        slot.host_vis.numpy()[...] = vis
        if not self.cuda:
            slot.dev_ir.copy_(slot.host_ir)
            slot.dev_vis.copy_(slot.host_vis)
            return slot
        with torch.cuda.stream(self.copy_stream):
            if slot.consumed is not None:
                self.copy_stream.wait_event(slot.consumed)  # compute of frame k-2 has read these inputs
            slot.dev_ir.copy_(slot.host_ir, non_blocking=True)
            slot.dev_vis.copy_(slot.host_vis, non_blocking=True)
            slot.uploaded = torch.cuda.Event()
            slot.uploaded.record(self.copy_stream)
        return slot

    def _launch(self, slot: _Slot, ir_dtype) -> _Slot:
        torch = self.torch
        if self.cuda:
            torch.cuda.current_stream(self.device).wait_event(slot.uploaded)
        ir_raw = slot.dev_ir.to(torch.int32) & 0xFFFF if ir_dtype == np.uint16 else slot.dev_ir
        fused = self.compute(ir_raw, slot.dev_vis, ir_dtype)
        if not self.cuda:
            slot.host_out = fused
            return slot
        slot.consumed = torch.cuda.Event()
        slot.consumed.record()
        if slot.host_out is None or tuple(slot.host_out.shape) != tuple(fused.shape):
            slot.host_out = self._host_tensor(tuple(fused.shape), torch.uint8)
        slot.host_out.copy_(fused, non_blocking=True)
        slot.downloaded = torch.cuda.Event()
        slot.downloaded.record()
        return slot

    def _finish(self, slot: _Slot) -> np.ndarray:
        if slot.downloaded is not None:
            slot.downloaded.synchronize()
        return slot.host_out.numpy().copy()

    def _check(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ir = np.ascontiguousarray(to_gray(ir))
        if ir.dtype not in (np.uint8, np.uint16):
            raise StreamfuseError(f"GPU stage: IR frames must be uint8 or uint16, got {ir.dtype}")
        if vis.dtype != np.uint8 or vis.ndim not in (2, 3) or (vis.ndim == 3 and vis.shape[2] != 3):
            raise StreamfuseError(f"GPU stage: visible frames must be HxWx3 BGR or HxW uint8, got {vis.shape} {vis.dtype}")
        sizes = (ir.shape[:2], vis.shape[:2])
        if sizes != self._sizes:
            self._prepare(*sizes)
        return ir, np.ascontiguousarray(vis)

    # ------------------------------------------------------------ public
    def process(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """One pair (IR uint8/uint16 gray, visible BGR/gray uint8) -> fused BGR (or gray) uint8 on the output grid."""
        ir, vis = self._check(ir, vis)
        slot = self._launch(self._upload(self._count, ir, vis), ir.dtype)
        self._count += 1
        return self._finish(slot)

    def run(self, pairs):
        """Fuse an iterable of (ir, vis) pairs, yielding fused frames in order; the upload of the next pair
        overlaps the compute of the current one."""
        pending = None
        for ir, vis in pairs:
            ir, vis = self._check(ir, vis)
            if pending is not None and self._sizes != pending[1]:
                yield self._finish(pending[0])
                pending = None
            slot = self._upload(self._count, ir, vis)
            self._count += 1
            if pending is not None:
                yield self._finish(pending[0])
            pending = (self._launch(slot, ir.dtype), self._sizes)
        if pending is not None:
            yield self._finish(pending[0])


def _pad(F, x, hp: int, wp: int):
    """Reflect-pad N x 1 x h x w at the bottom/right to hp x wp (edge padding when too small to reflect)."""
    ph, pw = hp - x.shape[-2], wp - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)

"""PyTorch backend: the trained module itself (CPU or CUDA; fp32, or fp16 on CUDA)."""
from __future__ import annotations

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.backends.base import Fuser


class TorchFuser(Fuser):
    backend = "torch"

    def __init__(self, spec, variant, device="cpu", precision="fp32", threads=None, module=None):
        super().__init__(spec, variant, device, precision)
        try:
            import torch
        except ImportError as exc:
            raise StreamfuseError("the torch backend needs PyTorch: pip install -e '.[torch]'") from exc
        if device == "cuda" and not torch.cuda.is_available():
            raise StreamfuseError("device 'cuda' asked for, but torch sees no CUDA device (install a CUDA build of torch on a GPU machine)")
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16}.get(precision)
        if self.dtype is None:
            raise StreamfuseError(f"torch backend precision must be fp32 or fp16, not '{precision}'")
        self.module = (module or spec.build(variant)).to(device=device, dtype=self.dtype).eval()

    def _run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        return self._run_tensor(self.torch.from_numpy(ir), self.torch.from_numpy(vis)).float().cpu().numpy()

    def _run_tensor(self, ir, vis):
        with self.torch.inference_mode():
            return self.module(ir.to(self.device, self.dtype), vis.to(self.device, self.dtype))

"""ONNX Runtime backend (CPU, or CUDA with onnxruntime-gpu)."""
from __future__ import annotations

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.backends.base import Fuser


class OnnxRuntimeFuser(Fuser):
    backend = "onnxruntime"

    def __init__(self, spec, variant, device="cpu", precision="fp32", threads=None, onnx_path=None):
        super().__init__(spec, variant, device, precision)
        import onnxruntime as ort

        path = onnx_path or spec.onnx_path(variant)
        if not path.exists():
            raise StreamfuseError(f"{path}: ONNX graph for '{spec.name}' not found (export it: python run.py export --model {spec.name})")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise StreamfuseError("onnxruntime has no CUDA provider here: pip install onnxruntime-gpu (and a CUDA driver)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.path = path

    def _run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        return self.session.run(["fused"], {"ir": ir, "vis": vis})[0]

"""ONNX Runtime backend (CPU, or CUDA with onnxruntime-gpu).

The graph's own metadata (model, variant, IR scale, pad multiple) decides how frames are fed to it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.backends.base import Fuser
from streamfuse.models.registry import graph_not_found, spec_for_graph


class OnnxRuntimeFuser(Fuser):
    backend = "onnxruntime"

    def __init__(self, spec, variant, device="cpu", precision="fp32", threads=None, onnx_path=None):
        super().__init__(spec, variant, device, precision)
        import onnxruntime as ort

        path = Path(onnx_path) if onnx_path else spec.onnx_path(variant)
        if not path.is_file():
            raise StreamfuseError(graph_not_found(path, None if onnx_path else spec))
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise StreamfuseError("onnxruntime has no CUDA provider here: pip install onnxruntime-gpu (and a CUDA driver)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]

        def session(cpu_arena: bool):
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.enable_cpu_mem_arena = cpu_arena
            try:
                return ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
                raise StreamfuseError(f"{path}: ONNX Runtime cannot load this graph ({str(exc).splitlines()[0]})") from None

        self.session = session(spec.cpu_arena)
        self.spec, self.variant = spec_for_graph(self.session.get_modelmeta().custom_metadata_map, spec, variant, path)
        if self.spec.cpu_arena != spec.cpu_arena:  # the graph is another model than the one asked for
            self.session = session(self.spec.cpu_arena)
        self.path = path

    def _run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        return self.session.run(["fused"], {"ir": ir, "vis": vis})[0]

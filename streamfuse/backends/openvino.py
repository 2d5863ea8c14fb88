"""OpenVINO backend (Intel CPUs and iGPUs), reading the same ONNX graph.

OpenVINO's ONNX reader keeps the graph's ``metadata_props`` under ``rt_info["framework"]``; those
facts (model, variant, IR scale, pad multiple) decide how frames are fed to it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.backends.base import Fuser
from streamfuse.models.registry import GRAPH_FACTS, graph_not_found, install_hint, spec_for_graph


class OpenVinoFuser(Fuser):
    backend = "openvino"

    def __init__(self, spec, variant, device="cpu", precision="fp32", threads=None, onnx_path=None):
        super().__init__(spec, variant, device, precision)
        try:
            import openvino as ov
        except ImportError as exc:
            raise StreamfuseError(f"the openvino backend needs OpenVINO: {install_hint('openvino')}") from exc
        if device != "cpu":
            raise StreamfuseError(f"the openvino backend runs on device 'cpu' here, not '{device}'")
        path = Path(onnx_path) if onnx_path else spec.onnx_path(variant)
        if not path.is_file():
            raise StreamfuseError(graph_not_found(path, None if onnx_path else spec))
        core = ov.Core()
        model = core.read_model(str(path))
        meta = {k: model.get_rt_info(["framework", k]).astype(str) for k in GRAPH_FACTS
                if model.has_rt_info(["framework", k])}
        self.spec, self.variant = spec_for_graph(meta, spec, variant, path)
        hints = {"fp32": "f32", "fp16": "f16"}
        if precision not in hints:
            raise StreamfuseError(f"the openvino backend runs fp32 or fp16, not '{precision}'")
        if precision == "fp16" and "FP16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            # OpenVINO would quietly run fp32 on such a CPU; say so instead of claiming fp16
            raise StreamfuseError("precision 'fp16': this CPU has no FP16 arithmetic for OpenVINO "
                                  "(use fp32, or --backend torch / tensorrt)")
        config = {"INFERENCE_PRECISION_HINT": hints[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.path = path

    def _run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        result = self.request.infer({"ir": ir, "vis": vis})
        return np.asarray(result[self.compiled.output("fused")])

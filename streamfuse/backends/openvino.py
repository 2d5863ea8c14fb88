"""OpenVINO backend (Intel CPUs and iGPUs), reading the same ONNX graph."""
from __future__ import annotations

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.backends.base import Fuser


class OpenVinoFuser(Fuser):
    backend = "openvino"

    def __init__(self, spec, variant, device="cpu", precision="fp32", threads=None, onnx_path=None):
        super().__init__(spec, variant, device, precision)
        try:
            import openvino as ov
        except ImportError as exc:
            raise StreamfuseError("the openvino backend needs OpenVINO: pip install -e '.[openvino]'") from exc
        if device != "cpu":
            raise StreamfuseError(f"the openvino backend runs on device 'cpu' here, not '{device}'")
        path = onnx_path or spec.onnx_path(variant)
        if not path.exists():
            raise StreamfuseError(f"{path}: ONNX graph for '{spec.name}' not found (export it: python run.py export --model {spec.name})")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "f16"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.path = path

    def _run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        result = self.request.infer({"ir": ir, "vis": vis})
        return np.asarray(result[self.compiled.output("fused")])

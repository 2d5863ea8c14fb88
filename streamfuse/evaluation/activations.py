"""Largest |activation| of every layer of a float32 ONNX graph on real frames, against the FP16 range.

``activation_ranges`` runs the graph on ONNX Runtime with every float intermediate tensor added as
an output and keeps each tensor's largest finite |value| (inf when a tensor is not finite).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamfuse.export.fp16 import FP16_MAX, tensor_types


@dataclass
class LayerRange:
    tensor: str
    op: str
    max_abs: float

    @property
    def fraction(self) -> float:
        return self.max_abs / FP16_MAX


def _probe_model(model):
    """The float32 graph with every float intermediate tensor added as an output."""
    import onnx
    from onnx import TensorProto, helper

    types = tensor_types(model)
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in probe.graph.output}
    producers = {}
    for node in probe.graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if out and out not in have and types.get(out) == TensorProto.FLOAT:
                probe.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
                producers[out] = node.op_type
    for node in probe.graph.node:
        for out in node.output:
            if out in have:
                producers[out] = node.op_type
    return probe, producers


def activation_ranges(spec, variant: str, onnx_path: str | Path, pairs) -> list[LayerRange]:
    """Largest |value| of every float tensor of the float32 graph over ``pairs`` of (ir, vis_y) float frames.

    Frames go through the same IR sizing and padding as every backend (``Fuser.fuse``).
    """
    import onnx
    import onnxruntime as ort

    from streamfuse.backends.base import Fuser

    probe, producers = _probe_model(onnx.load(str(onnx_path)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor as exported
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    peak = dict.fromkeys(names, 0.0)

    class Probe(Fuser):
        def _run(self, ir, vis):
            outs = session.run(names, {"ir": ir, "vis": vis})
            for name, value in zip(names, outs):
                finite = np.abs(value[np.isfinite(value)]) if value.size else value
                peak[name] = max(peak[name], float(finite.max()) if finite.size else 0.0)
                if not np.isfinite(value).all():
                    peak[name] = math.inf
            return outs[names.index("fused")]

    fuser = Probe(spec, variant)  # Fuser.fuse: the IR sizing and padding every backend applies
    for ir, vis in pairs:
        fuser.fuse(ir, vis)
    return [LayerRange(n, producers.get(n, "?"), peak[n]) for n in names]

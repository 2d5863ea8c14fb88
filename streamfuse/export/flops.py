"""Compute cost of an ONNX graph: multiply-accumulates of its Conv, ConvTranspose, Gemm and MatMul nodes.

The graph's dynamic inputs are pinned to one frame size, shape inference (ONNX Runtime's symbolic
shape inference, which follows Shape/Slice chains) fills in every tensor shape, and each node's MACs follow from its weight and output shapes. Element-wise ops,
pooling and activations are left out: in these CNNs they are a few percent of the work and
GPUs' FP16 figures are quoted for multiply-adds. ``gflops`` reports 2 x MACs (one multiply and
one add), the convention of GPU datasheets, so the estimate in docs/gpu.md divides like by like.
"""
from __future__ import annotations

import math
from pathlib import Path

from streamfuse import StreamfuseError

COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def pin_input_shapes(model, vis_hw: tuple[int, int], ir_hw: tuple[int, int] | None = None, batch: int = 1):
    """Set the dims of inputs ``vis`` and ``ir`` (N x 1 x H x W) in place; ``ir_hw`` defaults to ``vis_hw``."""
    sizes = {"vis": vis_hw, "ir": ir_hw or vis_hw}
    for inp in model.graph.input:
        if inp.name not in sizes:
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise StreamfuseError(f"ONNX input '{inp.name}' has {len(dims)} dims; expected N x 1 x H x W")
        for dim, value in zip(dims, (batch, 1, *sizes[inp.name])):
            dim.dim_value = value  # setting dim_value clears any symbolic dim_param
    return model


def ir_hw_for(onnx_path: str | Path, vis_hw: tuple[int, int]) -> tuple[int, int]:
    """IR size next to ``vis_hw``: the registry's ir_scale for a model named like the file, else vis_hw."""
    from streamfuse.models.registry import _REGISTRY, _load_builtin

    _load_builtin()
    stem = Path(onnx_path).stem
    spec = _REGISTRY.get(stem) or _REGISTRY.get(stem.rsplit("-", 1)[0])
    variant = stem.rsplit("-", 1)[1] if spec and stem != spec.name else None
    scale = spec.ir_scale_for(variant if variant in spec.variants else None) if spec else 1
    return -(-vis_hw[0] // scale), -(-vis_hw[1] // scale)


def shapes_of(model) -> dict[str, tuple[int, ...]]:
    """Every tensor name -> static shape after shape inference (tensors with unknown dims left out)."""
    from onnx import numpy_helper
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # ONNX Runtime's symbolic inference, not onnx.shape_inference: the latter loses the shapes
    # after the Shape -> Slice chains torch.chunk exports to (Res2Net's splits).
    g = SymbolicShapeInference.infer_shapes(model, auto_merge=True).graph
    shapes = {t.name: tuple(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    for node in g.node:  # weights stored as Constant nodes instead of initializers
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            shapes[node.output[0]] = tuple(numpy_helper.to_array(node.attribute[0].t).shape)
    return shapes


def node_macs(node, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of one node (0 for ops not counted)."""
    if node.op_type not in COUNTED_OPS:
        return 0

    def shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise StreamfuseError(f"ONNX node '{node.name}' ({node.op_type}): shape of '{name}' unknown after shape inference")
        return shapes[name]

    if node.op_type == "Conv":
        w = shape(node.input[1])  # Cout x Cin/group x k...
        return math.prod(shape(node.output[0])) * math.prod(w[1:])
    if node.op_type == "ConvTranspose":
        w = shape(node.input[1])  # Cin x Cout/group x k...: every input element feeds Cout/group x k outputs
        return math.prod(shape(node.input[0])) * math.prod(w[1:])
    if node.op_type == "Gemm":
        a = shape(node.input[0])
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        k = a[0] if trans_a else a[1]
        return math.prod(shape(node.output[0])) * k
    a = shape(node.input[0])  # MatMul, numpy semantics: output elements x K
    return math.prod(shape(node.output[0])) * a[-1]


def macs(onnx_path: str | Path, vis_hw: tuple[int, int] = (512, 640), ir_hw: tuple[int, int] | None = None) -> int:
    """Total MACs of one inference at a visible frame of ``vis_hw`` (h, w), batch 1."""
    import onnx

    path = Path(onnx_path)
    if not path.exists():
        raise StreamfuseError(f"{path}: ONNX file not found")
    model = pin_input_shapes(onnx.load(str(path)), vis_hw, ir_hw or ir_hw_for(path, vis_hw))
    shapes = shapes_of(model)
    return sum(node_macs(node, shapes) for node in model.graph.node)


def gflops(onnx_path: str | Path, vis_hw: tuple[int, int] = (512, 640), ir_hw: tuple[int, int] | None = None) -> float:
    """GFLOPs (2 x MACs / 1e9) of one inference at a visible frame of ``vis_hw`` (h, w), default 640x512.

    ``ir_hw`` defaults to the registry's IR size for the model the file is named after
    (``engines/<model>[-variant].onnx``), else the visible size.
    """
    return 2 * macs(onnx_path, vis_hw, ir_hw) / 1e9

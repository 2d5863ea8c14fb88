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


def ir_hw_for(model, vis_hw: tuple[int, int]) -> tuple[int, int]:
    """IR size next to ``vis_hw``: from the graph's ``ir_scale`` metadata (what export writes), else ``vis_hw``."""
    meta = {p.key: p.value for p in model.metadata_props}
    scale = int(meta.get("ir_scale", 1))
    return -(-vis_hw[0] // scale), -(-vis_hw[1] // scale)


def load_pinned(onnx_path: str | Path, vis_hw: tuple[int, int], ir_hw: tuple[int, int] | None = None):
    """The graph at ``onnx_path`` with its inputs pinned to ``vis_hw`` and ``ir_hw`` (default: its own IR scale)."""
    import onnx

    path = Path(onnx_path)
    if not path.exists():
        raise StreamfuseError(f"{path}: ONNX file not found")
    model = onnx.load(str(path))
    return pin_input_shapes(model, vis_hw, ir_hw or ir_hw_for(model, vis_hw))


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
    model = load_pinned(onnx_path, vis_hw, ir_hw)
    shapes = shapes_of(model)
    return sum(node_macs(node, shapes) for node in model.graph.node)


def gflops(onnx_path: str | Path, vis_hw: tuple[int, int] = (512, 640), ir_hw: tuple[int, int] | None = None) -> float:
    """GFLOPs (2 x MACs / 1e9) of one inference at a visible frame of ``vis_hw`` (h, w), default 640x512.

    ``ir_hw`` defaults to the IR size the graph's metadata gives (``ir_scale``), else the visible size.
    """
    return 2 * macs(onnx_path, vis_hw, ir_hw) / 1e9


def traffic_bytes(onnx_path: str | Path, vis_hw: tuple[int, int] = (512, 640), ir_hw: tuple[int, int] | None = None,
                  bytes_per_element: int = 2) -> int:
    """Activation bytes the counted ops read and write at ``vis_hw`` (FP16 by default): a lower bound on
    memory traffic, since element-wise ops fused into convolutions by TensorRT add little."""
    model = load_pinned(onnx_path, vis_hw, ir_hw)
    shapes = shapes_of(model)
    weights = {t.name for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type in COUNTED_OPS:
            names = [node.input[0], node.output[0]]
            if node.op_type == "MatMul" and node.input[1] not in weights:
                names.append(node.input[1])
            total += sum(math.prod(shapes.get(n, ())) for n in names)
    return total * bytes_per_element


# ---------------------------------------------------------------- GPU estimates (not measurements)
# Peak dense FP16 tensor-core throughput and memory bandwidth from the vendors' published figures:
# Jetson: the datasheets' sparse INT8 TOPS of the GPU / 4 (dense is half of sparse, FP16 half of INT8);
# GeForce: SMs x FP16 FMA per SM per clock with FP32 accumulate x 2 x boost clock (Ampere/Ada whitepapers).
GPUS = {
    "Orin Nano 8GB": (10.2, 68.0),         # Jetson, 15 W: 40 sparse INT8 TOPS; 8 SMs @ 625 MHz; LPDDR5 68 GB/s
    "Orin Nano 8GB Super": (16.7, 102.0),  # Jetson, 25 W (JetPack 6.1+): 67 sparse INT8 TOPS; 1020 MHz; 102 GB/s
    "AGX Orin 64GB": (42.5, 204.8),        # Jetson, MAXN: 170 sparse INT8 TOPS (GPU); 16 SMs @ 1.3 GHz; 204.8 GB/s
    "RTX 3060 12GB": (25.5, 360.0),        # 28 SMs x 256 x 2 x 1.777 GHz; GDDR6 360 GB/s
    "RTX 4090": (165.2, 1008.0),           # 128 SMs x 256 x 2 x 2.52 GHz; GDDR6X 1008 GB/s
}
COMPUTE_EFFICIENCY = 0.30  # assumed share of peak FP16 tensor throughput reached by these narrow (16-64 channel) CNNs
MEMORY_EFFICIENCY = 0.60   # assumed share of peak memory bandwidth


def estimate_ms(gflop: float, gbyte: float, tflops: float, gbs: float) -> float:
    """Roofline-style estimate of model-only latency: the slower of compute and memory at the assumed efficiencies."""
    return 1000 * max(gflop / (tflops * 1000 * COMPUTE_EFFICIENCY), gbyte / (gbs * MEMORY_EFFICIENCY))


def graphs_for_estimates(tmp_dir: Path) -> list[tuple[str, Path]]:
    """(model/variant, ONNX path) for every registered model: the shipped graph, or the untrained
    architecture exported to ``tmp_dir`` (compute cost does not depend on the weights)."""
    from streamfuse.export.onnx import export_onnx
    from streamfuse.models import list_models

    out = []
    for spec in list_models():
        for v in spec.variants:
            path = spec.onnx_path(v)
            if not path.exists():
                if not spec.trained:
                    continue
                path = export_onnx(spec.name, v, out=tmp_dir / path.name, module=spec.build(v, load_weights=False))
            out.append((f"{spec.name}/{v}", path))
    return out


def estimate_rows(graphs: list[tuple[str, Path]]) -> list[dict]:
    """Per graph: GFLOPs at 640x512 and 1280x1024, FP16 activation traffic at 640x512 and the estimated
    model-only fps per GPU at 640x512 (None for graphs with almost no conv/matmul work, such as the
    element-wise and pyramid baselines: their time goes to memory-bound ops this estimate ignores)."""
    rows = []
    for label, path in graphs:
        g = gflops(path, (512, 640))
        mb = traffic_bytes(path, (512, 640)) / 1e6
        fps = {n: None if g < 0.1 else round(1000 / estimate_ms(g, mb / 1000, *GPUS[n]), 1) for n in GPUS}
        rows.append({"model": label, "gflops_640x512": round(g, 2), "gflops_1280x1024": round(gflops(path, (1024, 1280)), 2),
                     "fp16_traffic_mb_640x512": round(mb), "estimated_fps_640x512": fps})
    return rows


def estimate_table(rows: list[dict]) -> str:
    """Markdown table of ``estimate_rows``."""
    names = list(GPUS)
    lines = ["| model | GFLOPs 640x512 | GFLOPs 1280x1024 | FP16 traffic 640x512 (MB) | "
             + " | ".join(names) + " |", "|---|---:|---:|---:|" + "---:|" * len(names)]
    for r in rows:
        cells = ["n/a (little conv work)" if f is None else f"~{f:,.0f}" for f in r["estimated_fps_640x512"].values()]
        lines.append(f"| {r['model']} | {r['gflops_640x512']:.2f} | {r['gflops_1280x1024']:.2f} | "
                     f"{r['fp16_traffic_mb_640x512']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m streamfuse.evaluation.flops: the estimate table of docs/gpu.md
    import tempfile

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        print(estimate_table(estimate_rows(graphs_for_estimates(Path(tmp)))))

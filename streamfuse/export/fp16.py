"""FP16 ONNX graphs and the checks that tell whether a model survives FP16.

``to_fp16`` rewrites a float32 graph so that every activation and weight is float16, while the
inputs ``ir``/``vis`` and the output ``fused`` stay float32 (a Cast after each input and before
the output). TensorRT 11 builds FP16 engines only from such a graph (strongly typed networks: no
BuilderFlag.FP16), and ONNX Runtime runs it on the CPU, which is how FP16 numerics are checked on
machines without a GPU.

Which tensors become float16: those computed from the inputs' *values*. Tensors that only depend
on the inputs' shapes (torch's Shape -> Gather -> Div chains for chunk/interpolate sizes) stay
float32, so frame sizes above 2048 (the largest integer float16 holds exactly) stay exact, and
inputs that ONNX requires to be float32 (Resize roi/scales) are left alone.

``activation_ranges`` runs the float32 graph on real frames with every intermediate tensor as an
extra output and reports each layer's largest |value| against the FP16 limit (65504).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamfuse import StreamfuseError

log = logging.getLogger("streamfuse")

FP16_MAX = 65504.0  # largest finite float16
SHAPE_OPS = {"Shape", "Size"}  # outputs depend on the input's shape, not its values
# (op, input index) that ONNX requires to stay float32 whatever the data type
KEEP_FP32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def _tensor_types(model) -> dict[str, int]:
    """Tensor name -> ONNX elem type, from shape/type inference plus initializers and inputs."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for node in g.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


def _value_dependent(model) -> set[str]:
    """Tensors computed from the graph inputs' values (not only from their shapes)."""
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    dep = set(inputs)
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        if node.op_type not in SHAPE_OPS and any(i in dep for i in node.input if i):
            dep.update(o for o in node.output if o)
    return dep


def to_fp16(model):
    """float32 ONNX ModelProto -> new ModelProto with float16 compute and float32 inputs/outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    model = onnx.ModelProto.FromString(model.SerializeToString())  # work on a copy
    g = model.graph
    types = _tensor_types(model)
    dep = _value_dependent(model)
    half = {name for name in dep if types.get(name) == FLOAT}  # the tensors that become float16

    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    new_inits, casts_in, clamped = {}, {}, 0

    def half_copy(name: str) -> str:
        """Name of a float16 version of the float32 tensor ``name`` (weight copy or a Cast node)."""
        nonlocal clamped
        key = f"{name}__fp16"
        if key in new_inits or key in casts_in:
            return key
        src = inits.get(name)
        if src is None and name in consts and consts[name].attribute[0].name == "value":
            src = consts[name].attribute[0].t
        if src is not None:
            arr = numpy_helper.to_array(src)
            clamped += int(np.count_nonzero(np.abs(arr) > FP16_MAX))
            new_inits[key] = numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), key)
        else:  # a float32 tensor computed from shapes: cast it where float16 data needs it
            casts_in[key] = helper.make_node("Cast", [name], [key], to=HALF, name=f"{key}_cast")
        return key

    nodes = []
    for inp in g.input:  # float32 graph inputs -> float16 right after entering
        if inp.name in half:
            nodes.append(helper.make_node("Cast", [inp.name], [f"{inp.name}__fp16"], to=HALF, name=f"{inp.name}_to_fp16"))
    renamed = {i.name: f"{i.name}__fp16" for i in g.input if i.name in half}
    outputs = {o.name for o in g.output if o.name in half}

    for node in g.node:
        if node.op_type == "Constant":  # kept as is; float16 copies are made where needed
            nodes.append(node)
            continue
        takes_half = any(x in half for x in node.input)
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
            elif (name and takes_half and types.get(name) == FLOAT and name not in half
                  and (node.op_type, i) not in KEEP_FP32_INPUTS):
                node.input[i] = half_copy(name)
                if node.input[i] in casts_in:
                    nodes.append(casts_in.pop(node.input[i]))
        if node.op_type == "Cast" and node.output[0] in half:
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = HALF
        back = []  # graph outputs: computed in float16, cast back to float32 under the old name
        for i, name in enumerate(node.output):
            if name in outputs:
                node.output[i] = f"{name}__fp16"
                back.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=FLOAT, name=f"{name}_to_fp32"))
        nodes.append(node)
        nodes.extend(back)

    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits.values())
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.value_info[:]  # stale float32 types; re-inferred below
    if clamped:
        log.warning("fp16: %d weight value(s) beyond +-%g clamped", clamped, FP16_MAX)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def convert_onnx_fp16(src: str | Path, dst: str | Path | None = None) -> Path:
    """Write the FP16 version of the ONNX file ``src`` (default ``<stem>.fp16.onnx`` next to it)."""
    import onnx

    src = Path(src)
    if not src.exists():
        raise StreamfuseError(f"{src}: ONNX file not found")
    dst = Path(dst) if dst else src.with_name(f"{src.stem}.fp16.onnx")
    tmp = dst.with_name(f".tmp-{dst.name}")
    onnx.save(to_fp16(onnx.load(str(src))), str(tmp))
    tmp.replace(dst)
    return dst


# ---------------------------------------------------------------- checks on real data
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

    types = _tensor_types(model)
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

    fuser = Probe(spec, variant)
    for ir, vis in pairs:
        fuser.fuse(ir, vis)
    return [LayerRange(n, producers.get(n, "?"), peak[n]) for n in names]


def load_pairs(data_dir: str | Path, limit: int = 4, max_side: int = 320) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Up to ``limit`` real pairs (stem, IR uint8/uint16 gray, visible BGR/gray uint8) from every
    ``<dataset>/{ir,vis}`` folder under ``data_dir`` (or ``data_dir/{ir,vis}`` itself), shrunk with
    INTER_AREA so the longer side is at most ``max_side`` (0 = native size)."""
    import cv2

    from streamfuse.color import to_gray
    from streamfuse.io.images import pair_folders, read_image

    data_dir = Path(data_dir)
    if (data_dir / "ir").is_dir():
        roots = [data_dir]
    elif data_dir.is_dir():
        roots = sorted(p for p in data_dir.iterdir() if (p / "ir").is_dir() and (p / "vis").is_dir())
    else:
        roots = []
    if not roots:
        raise StreamfuseError(f"{data_dir}: expected ir/ and vis/ folders (or <dataset>/ir, <dataset>/vis)")
    per_root = max(1, math.ceil(limit / len(roots)))
    out = []
    for root in roots:
        pairs, _, _ = pair_folders(root / "ir", root / "vis")
        for stem, ir_path, vis_path in pairs[:per_root]:
            ir = to_gray(read_image(ir_path, "IR image"), name=str(ir_path))
            vis = read_image(vis_path, "visible image")
            if vis.dtype != np.uint8:
                vis = (vis / 257).astype(np.uint8)
            scale = max_side / max(vis.shape[:2]) if max_side else 1.0
            if scale < 1:
                size = (max(1, round(vis.shape[1] * scale)), max(1, round(vis.shape[0] * scale)))
                ir = cv2.resize(ir, size, interpolation=cv2.INTER_AREA)
                vis = cv2.resize(vis, size, interpolation=cv2.INTER_AREA)
            out.append((f"{root.name}/{stem}", ir, vis))
    return out[:limit]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


@dataclass
class Fp16Report:
    model: str
    variant: str
    layers: list[LayerRange]
    psnr_db: dict[str, float]  # pair -> PSNR of the fp16 fused image against the fp32 one

    @property
    def worst(self) -> LayerRange:
        return max(self.layers, key=lambda r: r.max_abs)

    @property
    def min_psnr(self) -> float:
        return min(self.psnr_db.values())

    def text(self, top: int = 10) -> str:
        lines = [f"{self.model}/{self.variant}: largest |activation| per layer on {len(self.psnr_db)} real pair(s) "
                 f"(FP16 limit {FP16_MAX:g})",
                 f"  {'tensor':60s} {'op':18s} {'max |x|':>12s} {'of FP16 max':>12s}"]
        for r in sorted(self.layers, key=lambda r: -r.max_abs)[:top]:
            lines.append(f"  {r.tensor[-60:]:60s} {r.op:18s} {r.max_abs:12.4g} {100 * r.fraction:11.4f}%")
        over = [r for r in self.layers if r.max_abs > FP16_MAX]
        lines.append(f"  {len(self.layers)} layers, {len(over)} beyond the FP16 range"
                     + (": " + ", ".join(r.tensor for r in over) if over else ""))
        lines.append(f"  fused fp16 vs fp32 PSNR: min {self.min_psnr:.2f} dB, "
                     + ", ".join(f"{k} {v:.1f}" for k, v in self.psnr_db.items()))
        return "\n".join(lines)


def fp16_report(model: str, variant: str | None = None, data_dir: str | Path | None = None,
                onnx_path: str | Path | None = None, limit: int = 4, max_side: int = 320) -> Fp16Report:
    """Activation ranges of the float32 graph and fp16-vs-fp32 PSNR of the fused images, on real pairs."""
    import tempfile

    from streamfuse import SAMPLE_DIR
    from streamfuse.backends.onnxruntime import OnnxRuntimeFuser
    from streamfuse.models import get_model
    from streamfuse.stage import CpuStage

    spec = get_model(model)
    variant = spec.check_variant(variant)
    onnx_path = Path(onnx_path) if onnx_path else spec.onnx_path(variant)
    if not onnx_path.exists():
        raise StreamfuseError(f"{onnx_path}: ONNX graph for '{spec.name}' not found (export it: python run.py export --model {spec.name})")
    pairs = load_pairs(data_dir or SAMPLE_DIR / "images", limit, max_side)
    scale = spec.ir_scale_for(variant)
    if scale > 1:  # these models take a smaller IR: give it the size a real low-res IR camera would
        import cv2

        pairs = [(stem, cv2.resize(ir, (-(-ir.shape[1] // scale), -(-ir.shape[0] // scale)), interpolation=cv2.INTER_AREA), vis)
                 for stem, ir, vis in pairs]
    f32 = CpuStage(OnnxRuntimeFuser(spec, variant, threads=1, onnx_path=onnx_path))
    layers = activation_ranges(spec, variant, onnx_path, [f32.model_inputs(ir, vis) for _, ir, vis in pairs])
    with tempfile.TemporaryDirectory() as tmp:
        half_path = convert_onnx_fp16(onnx_path, Path(tmp) / "fp16.onnx")
        f16 = CpuStage(OnnxRuntimeFuser(spec, variant, precision="fp16", threads=1, onnx_path=half_path))
        scores = {stem: psnr(f32.process(ir, vis).fused, f16.process(ir, vis).fused) for stem, ir, vis in pairs}
    return Fp16Report(spec.name, variant, layers, scores)

"""FP16 ONNX graphs: float16 compute, float32 inputs and output.

``to_fp16`` rewrites a float32 graph so that every activation and weight is float16, while the
inputs ``ir``/``vis`` and the output ``fused`` stay float32 (a Cast after each input and before
the output). TensorRT 11 builds FP16 engines only from such a graph (strongly typed networks: no
BuilderFlag.FP16), and ONNX Runtime runs it on the CPU, which is how FP16 numerics are checked on
machines without a GPU.

Which tensors become float16: those computed from the inputs' *values*. Tensors that only depend
on the inputs' shapes (torch's Shape -> Gather -> Div chains for chunk/interpolate sizes) stay
float32, so frame sizes above 2048 (the largest integer float16 holds exactly) stay exact, and
inputs that ONNX requires to be float32 (Resize roi/scales) are left alone.

Whether a model survives FP16 on real frames is a diagnostic, not an artefact: see
``streamfuse.evaluation.fp16_report``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamfuse import StreamfuseError

log = logging.getLogger("streamfuse")

FP16_MAX = 65504.0  # largest finite float16
SHAPE_OPS = {"Shape", "Size"}  # outputs depend on the input's shape, not its values
# (op, input index) that ONNX requires to stay float32 whatever the data type
KEEP_FP32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def tensor_types(model) -> dict[str, int]:
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
    types = tensor_types(model)
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

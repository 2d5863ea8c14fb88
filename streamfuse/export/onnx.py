"""ONNX export with the fixed IO contract every backend relies on, and the facts to run the graph.

Inputs ``ir`` (N x 1 x h x w) and ``vis`` (N x 1 x H x W), output ``fused`` (N x 1 x H x W), float32,
dynamic N, H and W. IR and visible get their own H/W axes because DDcGAN and MetaFusion take a
smaller IR.

Each graph carries ``metadata_props`` (``streamfuse.models.registry.GRAPH_FACTS``): model, variant,
IR scale, pad multiple, training record, opset and producer, so a graph file alone is enough to run it.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from streamfuse import StreamfuseError, __version__
from streamfuse.models.registry import ModelSpec, get_model

log = logging.getLogger("streamfuse")
OPSET = 17  # TensorRT 8.5 (JetPack 5) parses opset 17; ORT and OpenVINO too


def record_id(git_commit: str, weights: str | Path) -> str:
    """The training record id a graph carries: the training's git commit and the weights file's sha256."""
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:16]
    return f"git {git_commit}, weights sha256 {digest}"


def training_record_id(spec: ModelSpec) -> str:
    """The record id of the shipped weights (from ``engines/<model>.json`` and ``<model>.pt``)."""
    if spec.speed_only:
        return "speed reference (seeded random weights)"
    if not spec.trained:
        return "baseline (no weights)"
    return record_id((spec.training_record() or {}).get("git_commit", "unknown"), spec.weights_path())


def export_onnx(model: str, variant: str | None = None, out: str | Path | None = None, opset: int = OPSET,
                module=None, sample_hw: tuple[int, int] = (128, 160), training_record: str | None = None) -> Path:
    """Export ``model`` (shipped weights, or ``module`` if given) to ONNX and return the path.

    ``training_record`` names the training that made the weights, e.g. ``record_id(commit, weights)``
    from a training's ship step (default: the shipped weights' record; "not recorded" for a ``module``
    given without one)."""
    import onnx
    import torch

    spec = get_model(model)
    variant = spec.check_variant(variant)
    out = Path(out) if out else spec.onnx_path(variant)
    if training_record is None:
        training_record = "not recorded (module given to export_onnx)" if module is not None else None
    module = (module or spec.build(variant)).eval().float()
    if training_record is None:  # the shipped weights were just loaded
        training_record = training_record_id(spec)
    h, w = sample_hw
    s = spec.ir_scale_for(variant)
    ir = torch.rand(1, 1, h // s, w // s)
    vis = torch.rand(1, 1, h, w)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    torch.onnx.export(
        module, (ir, vis), str(tmp), input_names=["ir", "vis"], output_names=["fused"], opset_version=opset,
        dynamic_axes={"ir": {0: "n", 2: "ir_h", 3: "ir_w"}, "vis": {0: "n", 2: "h", 3: "w"}, "fused": {0: "n", 2: "h", 3: "w"}},
        dynamo=False,
    )
    graph = onnx.load(str(tmp))
    facts = {**spec.graph_facts(variant), "training_record": training_record, "opset": str(opset),
             "producer": f"streamfuse {__version__}, torch {torch.__version__}"}
    set_metadata(graph, facts)
    onnx.save(graph, str(tmp))
    tmp.replace(out)
    log.info("exported %s (%s) -> %s", spec.name, variant, out)
    return out


def set_metadata(graph, facts: dict[str, str]) -> None:
    """Write ``facts`` into the ModelProto's ``metadata_props`` in place (existing keys replaced)."""
    kept = [p for p in graph.metadata_props if p.key not in facts]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    for key, value in facts.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = key, str(value)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file ``path`` (needs the onnx package; ONNX Runtime and OpenVINO read it their own way)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise StreamfuseError(f"{path}: ONNX file not found")
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}

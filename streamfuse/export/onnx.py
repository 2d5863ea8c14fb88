"""ONNX export with the fixed IO contract every backend relies on.

Inputs ``ir`` (N x 1 x h x w) and ``vis`` (N x 1 x H x W), output ``fused`` (N x 1 x H x W), float32,
dynamic N, H and W. IR and visible get their own H/W axes because DDcGAN and MetaFusion take a
smaller IR.
"""
from __future__ import annotations

import logging
from pathlib import Path

from streamfuse.models.registry import get_model

log = logging.getLogger("streamfuse")
OPSET = 17  # TensorRT 8.5 (JetPack 5) parses opset 17; ORT and OpenVINO too


def export_onnx(model: str, variant: str | None = None, out: str | Path | None = None, opset: int = OPSET,
                module=None, sample_hw: tuple[int, int] = (128, 160)) -> Path:
    """Export ``model`` (shipped weights, or ``module`` if given) to ONNX and return the path."""
    import torch

    spec = get_model(model)
    variant = spec.check_variant(variant)
    out = Path(out) if out else spec.onnx_path(variant)
    module = (module or spec.build(variant)).eval().float()
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
    tmp.replace(out)
    log.info("exported %s (%s) -> %s", spec.name, variant, out)
    return out

"""The FP16 report: does a model survive FP16 on real pairs?

``fp16_report`` prepares each pair with the per-pair stage (``streamfuse.stage.CpuStage``) and gives
each layer's largest |activation| of the float32 graph (``activations``) and the PSNR of the FP16
graph's fused images against the float32 ones, run on ONNX Runtime's CPU, so
FP16 numerics are checked on machines without a GPU (``python run.py export --check-fp16``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.evaluation.activations import LayerRange, activation_ranges
from streamfuse.export.fp16 import FP16_MAX, convert_onnx_fp16


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
    from streamfuse.models.registry import graph_not_found
    from streamfuse.stage import CpuStage

    spec = get_model(model)
    variant = spec.check_variant(variant)
    onnx_path = Path(onnx_path) if onnx_path else spec.onnx_path(variant)
    if not onnx_path.exists():
        raise StreamfuseError(graph_not_found(onnx_path, spec))
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

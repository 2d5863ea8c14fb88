"""The Python API for programs that embed fusion (a detector, a ROS node, their own capture code).

    import streamfuse

    fusion = streamfuse.Fusion(model="pyrfuse", backend="auto", calib="calibration/rig.yaml")
    fused_bgr = fusion(ir_frame, vis_frame)          # numpy in, numpy out

    stats = streamfuse.run(ir="ir.mp4", vis="vis.mp4", output="out/fused.mp4")

``Fusion`` runs the same stage as the pipeline (``streamfuse.stage``); ``run`` is the pipeline of
``run.py run`` with the same options.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamfuse.color import DEFAULT_AGC
from streamfuse.models.registry import DEFAULT_MODEL

if TYPE_CHECKING:
    from streamfuse.backends.base import Fuser
    from streamfuse.pipeline import Stats
    from streamfuse.stage import Stage


class Fusion:
    """A model on a backend, with an optional rig calibration: ``fusion(ir, vis) -> fused BGR``.

    ``model``/``variant``: a registered model (``streamfuse models`` lists them). ``backend``: "auto",
    "onnxruntime", "openvino", "torch" or "tensorrt"; ``device``: "auto", "cpu" or "cuda" (on CUDA the
    frames are registered, fused and coloured on the GPU). ``calib``: a calibration YAML (IR ->
    visible homography, output size, crop); None fuses frames of the same view, the IR resized onto
    the visible grid. ``agc``: percentiles of a 16-bit IR frame mapped to black and white. ``onnx``:
    run this ONNX graph instead of the shipped one (onnxruntime, openvino, tensorrt).

    ``fusion.fuser`` is the loaded ``Fuser``; ``fusion.stage`` the stage (``stage.process(ir, vis)``
    also returns the step times, and on the CPU the registered IR and visible frames).
    """

    def __init__(self, model: str = DEFAULT_MODEL, backend: str = "auto", device: str = "auto",
                 precision: str = "fp32", variant: str | None = None, calib: str | Path | None = None,
                 agc: tuple[float, float] = DEFAULT_AGC, threads: int | None = None, onnx: str | Path | None = None):
        from streamfuse.backends import DEFAULT_THREADS, load_fuser
        from streamfuse.geometry import Registration
        from streamfuse.stage import make_stage

        extra = {"onnx_path": Path(onnx)} if onnx else {}
        self.fuser: Fuser = load_fuser(model, backend=backend, device=device, precision=precision, variant=variant,
                                       threads=threads or DEFAULT_THREADS, **extra)
        registration = Registration.from_file(calib) if calib else None
        self.stage: Stage = make_stage(self.fuser, registration, agc=agc)

    def __call__(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """IR frame (HxW uint8, uint16 radiometric, or float in [0, 1]) + visible frame (HxWx3 BGR or HxW
        gray uint8) -> fused uint8 frame on the output grid (BGR, or gray for a gray visible frame)."""
        return self.stage.process(ir, vis).fused

    def __repr__(self) -> str:
        return f"Fusion({self.fuser!r}, stage={self.stage.kind})"


def run(ir: str, vis: str, output: str | list[str], config: str | Path | None = None, **options: Any) -> Stats:
    """Run the video pipeline (``run.py run``) and return its statistics (frames read, paired, fused,
    written, fps, per-stage latency). ``ir``/``vis``: sources (video file, image folder, rtsp://,
    /dev/videoN); ``output``: sink, or a list of sinks fed the same frames (out.mp4, images://dir,
    display://, rtsp://, http://host:port for the browser view, null://);
    ``config``: a YAML file of options; ``options``: any key of ``streamfuse.config.RunConfig``
    (``model``, ``backend``, ``calib``, ``max_frames``, ``mosaic``, ...), which win over the file.
    Unknown keys raise StreamfuseError."""
    from streamfuse.config import make_config
    from streamfuse.pipeline import Pipeline

    options.setdefault("progress", False)
    return Pipeline(make_config(config, ir=ir, vis=vis, output=output, **options)).run()

"""Real test clips: M3SVD frames (../shared/data) encoded to H.264 files with PyAV.

M3SVD is a real 30-fps IR + visible video set (640x480, registered); the evaluation set has one
20-frame sequence and the training set six more, so clips longer than 20 frames run through the
sequences one after another. Frames are downscaled (default 160x120) to keep tests fast.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamfuse import REPO_DIR

SHARED_DATA = REPO_DIR.parent / "shared" / "data"
M3SVD_DIRS = (SHARED_DATA / "M3SVD", SHARED_DATA / "train" / "M3SVD")
TIME_BASE = Fraction(1, 90000)  # 30 fps, 25 fps and 0.5 s are whole ticks


def m3svd_stems() -> list[tuple[Path, Path]]:
    pairs = []
    for root in M3SVD_DIRS:
        if (root / "ir").is_dir():
            pairs += [(p, root / "vis" / p.name) for p in sorted((root / "ir").glob("*.png"))]
    if not pairs:
        pytest.skip(f"real M3SVD frames not present under {SHARED_DATA} (the project's shared data)")
    return pairs


def m3svd_frames(n: int, size: tuple[int, int] = (160, 120)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` consecutive (IR gray uint8 HxW, visible BGR uint8 HxWx3) frames at ``size`` (w, h)."""
    pairs = m3svd_stems()
    if n > len(pairs):
        raise ValueError(f"only {len(pairs)} M3SVD frames available, asked for {n}")
    irs, viss = [], []
    for ir_path, vis_path in pairs[:n]:
        ir = cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE)
        vis = cv2.imread(str(vis_path), cv2.IMREAD_COLOR)
        irs.append(cv2.resize(ir, size, interpolation=cv2.INTER_AREA))
        viss.append(cv2.resize(vis, size, interpolation=cv2.INTER_AREA))
    return irs, viss


def write_clip(path, images, fps: float, start_s: float = 0.0, crf: int = 12) -> Path:
    """Encode ``images`` (gray or BGR uint8) to H.264; frame i gets pts start_s + i / fps."""
    import av

    path = Path(path)
    h, w = images[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        stream.options = {"crf": str(crf), "preset": "ultrafast", "bf": "0"}
        for i, img in enumerate(images):
            frame = av.VideoFrame.from_ndarray(img, format="gray" if img.ndim == 2 else "bgr24")
            frame.pts = round((start_s + i / fps) / TIME_BASE)
            frame.time_base = TIME_BASE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_clip(path) -> tuple[list[np.ndarray], list[float]]:
    """All frames (BGR) and their pts in seconds."""
    import av

    frames, times = [], []
    with av.open(str(path)) as inp:
        for frame in inp.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            times.append(float(frame.pts * frame.time_base))
    return frames, times


def res2netfuse_onnx(tmp_dir) -> Path:
    """The shipped res2netfuse graph (engines/res2netfuse.onnx) if present, else the architecture with
    untrained weights exported to ``tmp_dir`` (the pipeline's behaviour does not depend on the weights)."""
    from streamfuse.models import get_model

    shipped = get_model("res2netfuse").onnx_path()
    if shipped.exists():
        return shipped
    pytest.importorskip("torch", reason="exporting a res2netfuse graph for the test needs torch")
    import torch

    from streamfuse.export.onnx import export_onnx

    torch.manual_seed(0)
    module = get_model("res2netfuse").build(load_weights=False)
    return export_onnx("res2netfuse", out=Path(tmp_dir) / "res2netfuse.onnx", module=module)


def expected_nearest(ir_fps, vis_fps, n_ir, n_vis, ir_start=0.0, vis_start=0.0, offset_s=0.0):
    """Brute force: pairs (i, j) that are each other's nearest frame and within half the slower period."""
    t_ir = ir_start + np.arange(n_ir) / ir_fps + offset_s
    t_vis = vis_start + np.arange(n_vis) / vis_fps
    tol = 0.5 / min(ir_fps, vis_fps) + 1e-9
    pairs = []
    for j, tv in enumerate(t_vis):
        i = int(np.argmin(np.abs(t_ir - tv)))
        if abs(t_ir[i] - tv) <= tol and int(np.argmin(np.abs(t_vis - t_ir[i]))) == j:
            pairs.append((i, j))
    return pairs

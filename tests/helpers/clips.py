"""Real test clips: the bundled M3SVD sample (streamfuse/data/sample/{ir,vis}.mp4, 20 frames of a
registered 30-fps IR + visible sequence, 640x480) decoded with PyAV and re-encoded to H.264 with PyAV
at whatever rate, size and length a test needs. Clips longer than 20 frames play the sequence back and
forth (0..19, 18..1, 0..), so consecutive frames always differ. Frames are downscaled (default 160x120)
to keep tests fast.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamfuse import SAMPLE_DIR

TIME_BASE = Fraction(1, 90000)  # 30 fps, 25 fps and 0.5 s are whole ticks


@lru_cache(maxsize=None)
def _sample(kind: str) -> tuple[np.ndarray, ...]:
    """The 20 full-size frames of the bundled sample: IR gray (luma plane) or visible BGR."""
    from streamfuse.io.sources import open_source

    with open_source(str(SAMPLE_DIR / f"{kind}.mp4"), kind=kind) as src:
        frames = tuple(f.image for f in src)
    for f in frames:
        f.setflags(write=False)  # shared by every test: nobody may change them
    return frames


def sample_sequence(n: int) -> list[int]:
    """Indices of ``n`` frames of the 20-frame sample played back and forth."""
    period = 2 * len(_sample("ir")) - 2
    return [i % period if i % period < len(_sample("ir")) else period - i % period for i in range(n)]


def m3svd_frames(n: int, size: tuple[int, int] = (160, 120)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` consecutive (IR gray uint8 HxW, visible BGR uint8 HxWx3) frames of the bundled M3SVD sample
    at ``size`` (w, h)."""
    irs, viss = _sample("ir"), _sample("vis")
    order = sample_sequence(n)
    return ([cv2.resize(irs[i], size, interpolation=cv2.INTER_AREA) for i in order],
            [cv2.resize(viss[i], size, interpolation=cv2.INTER_AREA) for i in order])


def kaist_images() -> tuple[np.ndarray, np.ndarray]:
    """The bundled KAIST still pair (640x512): IR gray uint8 HxW, visible BGR uint8 HxWx3."""
    from streamfuse.color import to_gray
    from streamfuse.io.images import read_image

    images = SAMPLE_DIR / "images"
    return (to_gray(read_image(images / "ir" / "set08_V000_I02159.png")),
            read_image(images / "vis" / "set08_V000_I02159.png"))


def write_m3svd_folders(root, n: int = 20) -> tuple[list[Path], list[Path]]:
    """The sample written as M3SVD lays it out: ``root/{ir,vis}/0111_1716_NNNN.png`` at 640x480, the IR as
    gray stored in three equal channels. Returns the sorted IR and visible paths."""
    root = Path(root)
    irs, viss = m3svd_frames(n, size=(640, 480))
    paths = {"ir": [], "vis": []}
    for side, images in (("ir", irs), ("vis", viss)):
        (root / side).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            path = root / side / f"0111_1716_{i:04d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img)
            paths[side].append(path)
    return paths["ir"], paths["vis"]


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

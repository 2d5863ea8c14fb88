"""Frames for calibration from any input the pipeline reads (image file, sequence, video, RTSP, V4L2)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamfuse import StreamfuseError
from streamfuse.io.frame import EndOfStream, Frame
from streamfuse.io.images import IMAGE_EXTS, read_image

LIVE_TIMEOUT_S = 10.0
MOTION_WIDTH = 320  # frames kept for --sync are shrunk to this width (memory: 4000x3000 cameras)


@dataclass
class Capture:
    uri: str
    size: tuple[int, int]  # (w, h) of the full frames
    frames: list[Frame]  # full-size frames, evenly sampled
    small: list[Frame]  # every frame read, shrunk (for motion energy)
    fps: float | None


def capture(uri: str, kind: str, keep: int, max_frames: int, fps: float | None = None,
            near_ns: list[int] | None = None) -> Capture:
    """Read up to ``max_frames`` frames; keep ``keep`` of them at full size, evenly spaced, or with
    ``near_ns`` the frame nearest each of those timestamps (to match the other camera's frames)."""
    path = Path(uri)
    if path.is_file() and path.suffix.lower() in IMAGE_EXTS:
        img = read_image(path, f"{'IR' if kind == 'ir' else 'visible'} image")
        if kind == "ir" and img.ndim == 3:
            img = img[..., 0] if np.array_equal(img[..., 0], img[..., 1]) else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        f = Frame(img, 0, 0, uri)
        return Capture(uri, (img.shape[1], img.shape[0]), [f], [_shrink(f)], None)
    from streamfuse.io.sources import open_source
    from streamfuse.io.uri import parse_source, redact_uri

    options = {"kind": kind}
    if fps is not None and parse_source(uri).kind == "images":
        options["fps"] = fps
    with open_source(uri, **options) as src:
        total = src.frame_count if src.frame_count else max_frames
        stride = max(1, min(total, max_frames) // max(keep, 1))
        frames, small, n = [], [], 0
        nearest = [None] * len(near_ns or [])
        while n < max_frames:
            try:
                f = src.read(timeout=LIVE_TIMEOUT_S if src.is_live else None)
            except EndOfStream:
                break
            if f is None:
                raise StreamfuseError(f"{redact_uri(uri)}: no frame within {LIVE_TIMEOUT_S:.0f} s")
            if near_ns is not None:
                for i, t in enumerate(near_ns):
                    if nearest[i] is None or abs(f.pts_ns - t) < abs(nearest[i].pts_ns - t):
                        nearest[i] = f
            elif n % stride == 0 and len(frames) < keep:
                frames.append(f)
            small.append(_shrink(f))
            n += 1
        src_fps = src.fps
    if near_ns is not None:
        frames = [f for f in nearest if f is not None]
    if not frames:
        raise StreamfuseError(f"{redact_uri(uri)}: no frames to calibrate from")
    h, w = frames[0].image.shape[:2]
    return Capture(uri, (w, h), frames, small, src_fps)


def _shrink(f: Frame) -> Frame:
    h, w = f.image.shape[:2]
    if w <= MOTION_WIDTH:
        return f
    img = cv2.resize(f.image, (MOTION_WIDTH, max(4, round(h * MOTION_WIDTH / w))), interpolation=cv2.INTER_AREA)
    return Frame(img, f.pts_ns, f.seq, f.source)



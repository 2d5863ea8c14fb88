"""calibrate --sync: a known offset between two clips cut from the same real sequence."""

import cv2
import pytest

from streamfuse import StreamfuseError
from streamfuse.calibration.timeoffset import estimate_offset
from streamfuse.io.frame import Frame
from tests.helpers.clips import m3svd_frames

NS = 1_000_000_000


def m3svd():
    """The bundled 20-frame M3SVD sample at full size (640x480)."""
    return m3svd_frames(20, size=(640, 480))


def llvip(shared_data):
    folder = shared_data / "LLVIP"
    if not (folder / "ir").is_dir():
        pytest.skip(f"real data {folder} not present (../shared/data is the project's evaluation set)")
    irs = sorted((folder / "ir").iterdir())
    viss = sorted((folder / "vis").iterdir())
    return ([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in irs], [cv2.imread(str(p)) for p in viss])


def clip(images, first: int, last: int, fps: float, kind: str):
    """Frames first..last of the sequence as a clip of its own (timestamps from 0, like a file)."""
    return [Frame(img, round(i * NS / fps), i, kind) for i, img in enumerate(images[first:last + 1])]


@pytest.mark.parametrize("dataset, lag", [("M3SVD", 7), pytest.param("LLVIP", 5, marks=pytest.mark.realdata)])
def test_known_offset_recovered(dataset, lag, request):
    """IR clip = frames 0..N-1, visible clip = frames lag..N-1: the visible camera 'started' lag frames
    late, so an IR timestamp + (-lag / fps) is the visible timestamp of the same moment."""
    ir, vis = m3svd() if dataset == "M3SVD" else llvip(request.getfixturevalue("shared_data"))
    fps = 30.0
    res = estimate_offset(clip(ir, 0, len(ir) - 1, fps, "ir"), clip(vis, lag, len(vis) - 1, fps, "vis"))
    assert res.offset_ms == pytest.approx(-lag * 1000 / fps, abs=0.5 * 1000 / fps)
    assert res.correlation > 0.35 and res.margin > 0.1


def test_opposite_sign_and_different_frame_rates(shared_data):
    """The IR camera starts 6 frames late instead (positive offset), and the visible clip keeps only
    every other frame (15 fps against 30 fps), so the two series are sampled differently."""
    ir, vis = llvip(shared_data)
    ir_clip = clip(ir, 6, len(ir) - 1, 30.0, "ir")
    vis_frames = [Frame(img, round(i * NS / 30.0), i, "vis") for i, img in enumerate(vis) if i % 2 == 0]
    res = estimate_offset(ir_clip, vis_frames)
    assert res.offset_ms == pytest.approx(6 * 1000 / 30.0, abs=1000 / 30.0)


def test_too_few_frames():
    ir, vis = m3svd()
    with pytest.raises(StreamfuseError, match="--sync needs at least 9 frames from each stream"):
        estimate_offset(clip(ir, 0, 4, 30.0, "ir"), clip(vis, 0, 19, 30.0, "vis"))

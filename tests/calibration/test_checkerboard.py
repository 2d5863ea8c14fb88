"""calibrate --checkerboard on boards rendered into both modalities with a known homography:
the visible view sharp, the IR view inverted, blurred, low in contrast and noisy, at another size."""
import cv2
import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.calibration.checkerboard import board_homography, find_corners, parse_pattern
from streamfuse.geometry import apply_homography

PATTERN = (9, 6)  # inner corners
SQUARE = 40  # board pixels per square


def board() -> np.ndarray:
    cols, rows = PATTERN[0] + 1, PATTERN[1] + 1
    img = np.full(((rows + 2) * SQUARE, (cols + 2) * SQUARE), 255, np.uint8)  # one white square of margin
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                img[(r + 1) * SQUARE:(r + 2) * SQUARE, (c + 1) * SQUARE:(c + 2) * SQUARE] = 0
    return img


def pose(angle_deg, scale, tx, ty, px=0.0) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty],
                     [px, 0, 1.0]])


def render(board_to_image, size, rng, ir=False):
    img = cv2.warpPerspective(board(), board_to_image, size, flags=cv2.INTER_AREA, borderValue=128).astype(np.float32)
    if ir:  # warm dark squares: inverted, soft, 25 grey levels of contrast, noisy
        img = 255 - img
        img = cv2.GaussianBlur(img, (0, 0), 1.5)
        img = 100 + img * (25 / 255)
        img += rng.normal(0, 2.0, img.shape)
    else:
        img = 30 + img * 0.8 + rng.normal(0, 3.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def views(n_views=4):
    """(IR frames 320x256, visible frames 640x480, true H IR -> visible); the rig: visible = IR x2, shifted."""
    rig = np.array([[1.9, 0.03, 12.0], [-0.02, 1.88, 5.0], [0, 0, 1.0]])
    rng = np.random.default_rng(0)
    irs, viss = [], []
    spots = [(20, 15), (100, 25), (25, 95), (95, 90)]  # the board moved around the IR frame
    for k in range(n_views):
        b2ir = pose(-6 + 4 * k, 0.42 + 0.02 * k, *spots[k], px=1e-5 * k)
        irs.append(render(b2ir, (320, 256), rng, ir=True))
        viss.append(render(rig @ b2ir, (640, 480), rng))
    return irs, viss, rig


def test_board_found_in_a_low_contrast_inverted_thermal_view():
    irs, _, _ = views(1)
    assert find_corners(irs[0], PATTERN) is not None


def test_checkerboard_recovers_the_known_homography():
    irs, viss, rig = views(4)
    h, errors, used, misses = board_homography(irs, viss, PATTERN)
    assert used == [0, 1, 2, 3] and not misses
    c = np.array([[0, 0], [319, 0], [319, 255], [0, 255]], float)  # IR frame corners, in visible pixels
    corner_err = np.linalg.norm(apply_homography(h, c) - apply_homography(rig, c), axis=1)
    assert corner_err.mean() < 1.5 and corner_err.max() < 3, corner_err
    assert np.sqrt(np.mean(errors ** 2)) < 0.6


def test_no_board_says_where():
    irs, viss, _ = views(1)
    blank = np.full_like(irs[0], 110)
    with pytest.raises(StreamfuseError, match=r"no 9x6 checkerboard found in both cameras in 1 frame pair\(s\) "
                                              r"\(frame 0: no board in IR\)"):
        board_homography([blank], viss, PATTERN)


@pytest.mark.parametrize("text", ["9", "9x", "axb", "2x6"])
def test_bad_pattern(text):
    with pytest.raises(StreamfuseError, match="--checkerboard"):
        parse_pattern(text)


def test_calibrate_command_on_board_sequences(tmp_path, capsys, caplog):
    """The same views as two image sequences through `run.py calibrate --checkerboard`."""
    from streamfuse.cli import main
    from streamfuse.geometry import Registration

    caplog.set_level("INFO", logger="streamfuse")
    irs, viss, rig = views(4)
    for kind, frames in (("ir", irs), ("vis", viss)):
        (tmp_path / kind).mkdir()
        for k, img in enumerate(frames):
            cv2.imwrite(str(tmp_path / kind / f"{k:04d}.png"), img)
    out = tmp_path / "rig.yaml"
    code = main(["calibrate", "--ir", str(tmp_path / "ir"), "--vis", str(tmp_path / "vis"),
                 "--checkerboard", "9x6", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "found in both cameras in 4 of 4 frame pair(s), 216 corners" in text
    progress = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]  # said before the long search
    assert progress[:2] == ["searching 4 frame pair(s) for a 9x6 checkerboard (a few seconds each)",
                            "checkerboard: frame pair 1 of 4: found in IR, found in visible"]
    reg = Registration.from_file(out)
    c = np.array([[0, 0], [319, 0], [319, 255], [0, 255]], float)
    assert np.linalg.norm(apply_homography(reg.homography, c) - apply_homography(rig, c), axis=1).mean() < 1.5
    assert reg.metadata["method"] == "checkerboard" and reg.metadata["rms_error_px"] < 0.6
    assert reg.ir_size == (320, 256) and reg.vis_size == (640, 480)

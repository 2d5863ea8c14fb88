"""calibrate --points: exact recovery, outliers, and the bad-input refusals."""
import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.calibration.points import homography_from_points, load_points
from streamfuse.geometry import apply_homography

H = np.array([[1.62, 0.04, 35.0], [-0.03, 1.58, 20.0], [2e-5, -1e-5, 1.0]])  # 640x512 IR -> 1280x1024 visible


def corners_error(h_est, h_true, w=640, h=512) -> float:
    c = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    return float(np.linalg.norm(apply_homography(h_est, c) - apply_homography(h_true, c), axis=1).max())


def write_csv(path, ir, vis, header=True):
    rows = ["ir_x,ir_y,vis_x,vis_y"] if header else []
    rows += [f"{a:.6f},{b:.6f},{c:.6f},{d:.6f}" for (a, b), (c, d) in zip(ir, vis)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("n", [4, 12])
def test_exact_points_recover_the_homography(tmp_path, n):
    ir = np.random.default_rng(n).uniform([20, 20], [620, 490], (n, 2))
    path = write_csv(tmp_path / "pts.csv", ir, apply_homography(H, ir))
    h, errors, keep = homography_from_points(*load_points(path))
    assert corners_error(h, H) < 1e-3 and errors.max() < 1e-3 and keep.all()


def test_yaml_points_and_one_outlier_rejected(tmp_path):
    rng = np.random.default_rng(1)
    ir = rng.uniform([20, 20], [620, 490], (10, 2))
    vis = apply_homography(H, ir) + rng.normal(0, 0.3, (10, 2))
    vis[3] += [40, -25]  # a mis-clicked point
    path = tmp_path / "pts.yaml"
    path.write_text("points:\n" + "".join(f"  - [{a}, {b}, {c}, {d}]\n" for (a, b), (c, d) in zip(ir, vis)))
    h, errors, keep = homography_from_points(*load_points(path))
    assert not keep[3] and keep.sum() == 9
    assert errors[3] > 30 and errors[keep].max() < 1.5
    assert corners_error(h, H) < 3


def test_fewer_than_four_points(tmp_path):
    ir = np.array([[10, 10], [600, 20], [300, 400]], float)
    path = write_csv(tmp_path / "pts.csv", ir, apply_homography(H, ir))
    with pytest.raises(StreamfuseError, match=r"pts.csv: 3 point pair\(s\); a homography needs at least 4"):
        load_points(path)


def test_collinear_points(tmp_path):
    ir = np.array([[10, 10], [110, 60], [210, 110], [310, 160], [410, 210]], float)
    with pytest.raises(StreamfuseError, match="IR points are collinear"):
        homography_from_points(ir, apply_homography(H, ir))
    ir = np.array([[10, 10], [110, 60], [210, 110], [500, 400]], float)  # 3 of the 4 on a line
    with pytest.raises(StreamfuseError, match="no 4 of them are in general position"):
        homography_from_points(ir, apply_homography(H, ir))


def test_bad_row_names_the_row(tmp_path):
    path = tmp_path / "pts.csv"
    path.write_text("ir_x,ir_y,vis_x,vis_y\n1,2,3,4\n5,6,seven,8\n")
    with pytest.raises(StreamfuseError, match=r"pts.csv: row 3: expected 4 numbers"):
        load_points(path)

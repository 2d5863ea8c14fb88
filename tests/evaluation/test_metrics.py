"""Fusion metrics against values known without running the code: closed forms and hand sums."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.evaluation import metrics as M
from streamfuse.io.images import read_image

# 4 x 4 test image: a 2 x 2 block of 8s in a field of 0s
BLOCK = np.array([[0, 0, 0, 0],
                  [0, 8, 8, 0],
                  [0, 8, 8, 0],
                  [0, 0, 0, 0]], dtype=np.float64)


def h(*counts):
    """Entropy in bits of a 16-pixel histogram given by its counts."""
    return -sum(c / 16 * math.log2(c / 16) for c in counts)


def scene(h_px=64, w_px=80, seed=0):
    """A deterministic gray test scene: gradient, rectangle, disc and mild texture (uint8)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h_px, 0:w_px]
    img = 40 + 100 * x / w_px + 30 * np.sin(y / 5.0)
    img[h_px // 4:h_px // 2, w_px // 5:w_px // 2] = 220
    img[(y - 2 * h_px // 3) ** 2 + (x - 3 * w_px // 4) ** 2 < (h_px // 6) ** 2] = 15
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def test_constant_image_has_no_information():
    flat = np.full((9, 7), 77.0)
    assert M.entropy(flat) == 0
    assert M.std_dev(flat) == 0
    assert M.spatial_frequency(flat) == 0
    assert M.average_gradient(flat) == 0


def test_hand_computed_4x4_values():
    # histogram: 12 zeros, 4 eights
    assert M.entropy(BLOCK) == pytest.approx(2 - 0.75 * math.log2(3), abs=1e-12)
    # mean 2, squared deviations 12 x 4 + 4 x 36 over 16 pixels = 12
    assert M.std_dev(BLOCK) == pytest.approx(math.sqrt(12), abs=1e-12)
    # rows 2 and 3 have differences 8, 0, -8: 256 over 12 horizontal differences, same vertically
    assert M.spatial_frequency(BLOCK) == pytest.approx(math.sqrt(2 * 256 / 12), abs=1e-12)
    # MATLAB-style gradient: 8 pixels with sqrt(8^2 / 2), 4 pixels with sqrt((4^2 + 4^2) / 2) = 4, rest 0
    assert M.average_gradient(BLOCK) == pytest.approx((8 * 8 / math.sqrt(2) + 4 * 4) / 16, abs=1e-12)
    # MI with the same block plus one more 8 in the corner: joint counts (0,0) 11, (0,8) 1, (8,8) 4
    other = BLOCK.copy()
    other[0, 0] = 8
    assert M.mutual_information(BLOCK, other) == pytest.approx(h(12, 4) + h(11, 5) - h(11, 1, 4), abs=1e-12)
    assert M.mi(BLOCK, BLOCK, other) == pytest.approx(h(12, 4) + h(12, 4) + h(11, 5) - h(11, 1, 4), abs=1e-12)


def test_mi_of_an_image_with_itself_is_its_entropy():
    img = scene().astype(np.float64)
    assert M.mutual_information(img, img) == pytest.approx(M.entropy(img), abs=1e-9)


def test_ssim_of_an_image_with_itself_is_one():
    img = scene().astype(np.float64)
    assert M.ssim_index(img, img) == pytest.approx(1.0, abs=1e-12)
    assert M.ssim(img, img, img) == pytest.approx(2.0, abs=1e-12)  # sum over the two sources
    big = scene(176, 200).astype(np.float64)
    assert M.ms_ssim_index(big, big) == pytest.approx(1.0, abs=1e-12)


def test_vif_of_identical_images_is_one_per_source():
    img = scene().astype(np.float64)
    assert M.vif(img, img, img) == pytest.approx(2.0, abs=1e-6)


def test_qabf_of_identical_images_is_the_constants_optimum():
    # All non-zero Sobel strengths are multiples of 100 here, so the strength sigmoid sits at Tg.
    img = np.zeros((24, 24))
    img[6:18, 4:14] = 100
    img[10:20, 12:22] = 200
    perfect = 0.9994 * 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))
    assert M.qabf(img, img, img) == pytest.approx(perfect, abs=1e-12)
    assert M.nabf(img, img, img) == 0  # nothing in f is stronger than in the sources


def test_cc_and_scd_are_symmetric_in_the_sources():
    ir, vis = scene(seed=1).astype(np.float64), scene(seed=2)[::-1].astype(np.float64)
    fused = np.maximum(ir, vis)
    assert M.cc(fused, ir, vis) == M.cc(fused, vis, ir)
    assert M.scd(fused, ir, vis) == M.scd(fused, vis, ir)


def test_evaluate_returns_every_metric_and_converts_colour(tmp_path):
    ir, vis = scene(seed=1), scene(seed=2)[::-1].copy()
    fused = ((ir.astype(np.uint16) + vis) // 2).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "f.png"), cv2.cvtColor(fused, cv2.COLOR_GRAY2BGR))  # colour file: gray-converted
    values = M.evaluate(read_image(tmp_path / "f.png"), ir, vis)
    assert list(values) == list(M.METRICS)
    np.testing.assert_equal(values, M.evaluate(fused, ir, vis))  # NaN == NaN here (MS-SSIM needs > 160 px)
    assert M.evaluate(fused, ir, vis, metrics=["en", "Qabf"]) == {"EN": values["EN"], "Qabf": values["Qabf"]}


def test_evaluate_rejects_bad_input(tmp_path):
    a, b = scene(), scene(32, 40)
    with pytest.raises(StreamfuseError, match="differ in size: fused 80x64, IR 80x64, visible 40x32"):
        M.evaluate(a, a, b)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(StreamfuseError, match="broken.png: cannot decode"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(StreamfuseError, match="fused image: expected an image array, got the path .*broken.png"):
        M.evaluate(tmp_path / "broken.png", a, a)
    with pytest.raises(StreamfuseError, match="expected an 8-bit image"):
        M.evaluate(a.astype(np.float32), a, a)
    with pytest.raises(StreamfuseError, match="unknown metric 'QABF2'"):
        M.evaluate(a, a, a, metrics=["QABF2"])


def test_temporal_metrics_are_zero_on_a_still_video():
    ir, vis = scene(seed=1), scene(seed=2)
    fused = np.maximum(ir, vis)
    assert M.temporal_metrics([(fused, ir, vis)] * 5) == {"Flicker": 0.0, "FlickerRatio": 0.0, "TSI": 0.0}


def test_temporal_metrics_separate_a_fixed_blend_from_flicker():
    # moving sources (even grey levels, so the average is exact); a fixed blend adds no change
    frames = [(np.roll(scene(seed=1), 3 * t, axis=1) & 0xFE, np.roll(scene(seed=2), -2 * t, axis=0) & 0xFE)
              for t in range(6)]
    blend = [((i.astype(np.uint16) + v) // 2).astype(np.uint8) for i, v in frames]
    stable = M.temporal_metrics([(f, i, v) for f, (i, v) in zip(blend, frames)])
    assert stable["Flicker"] == 0
    assert stable["TSI"] == pytest.approx(0, abs=1e-9)
    assert 0 < stable["FlickerRatio"] <= 1
    # the same blend with its brightness pumping by 30 grey levels every other frame
    pumped = [np.clip(f.astype(np.int16) + 30 * (t % 2), 0, 255).astype(np.uint8) for t, f in enumerate(blend)]
    flicker = M.temporal_metrics([(f, i, v) for f, (i, v) in zip(pumped, frames)])
    assert flicker["Flicker"] > 5
    assert flicker["TSI"] > 0.1
    assert flicker["FlickerRatio"] > stable["FlickerRatio"]


def test_temporal_metrics_need_two_frames_of_one_size():
    a = scene()
    with pytest.raises(StreamfuseError, match="at least 2 frames"):
        M.temporal_metrics([(a, a, a)])
    with pytest.raises(StreamfuseError, match="changes size"):
        M.temporal_metrics([(a, a, a), (a[:32], a[:32], a[:32])])


def test_qcb_and_qcv_of_identical_images():
    img = scene().astype(np.float64)
    assert M.qcb(img, img, img) == pytest.approx(1.0, abs=1e-12)  # every contrast preserved
    assert M.qcv(img, img, img) == 0  # no difference to weigh


def fmi_window_direct(a, f):
    """Fast-FMI of one pair of 3 x 3 windows, cell by cell over the 9 x 9 joint pdf (the paper's
    recipe, written out plainly), to check the vectorised staircase computation."""
    if np.array_equal(a, f):
        return 1.0

    def pdf(w):
        w = w.T.ravel()  # column-major, as MATLAB
        x = np.ones(9) if w.max() == w.min() else (w - w.min()) / (w.max() - w.min())
        return x / x.sum()

    pa, pf = pdf(a), pdf(f)
    ca, cf = np.cumsum(pa), np.cumsum(pf)
    c = np.corrcoef(pa, pf)[0, 1] if pa.std() > 0 and pf.std() > 0 else 0.0
    idx = np.arange(1, 10)
    sd = lambda p: math.sqrt(max(p @ idx ** 2 - (p @ idx) ** 2, 0))  # noqa: E731
    if c >= 0:
        bound = np.minimum.outer(cf, ca)
    else:
        bound = np.maximum(np.add.outer(cf, ca) - 1, 0)
    cov = (bound - np.outer(cf, ca)).sum()
    k = 0.0 if c == 0 or sd(pa) * sd(pf) == 0 else c / (cov / (sd(pa) * sd(pf)))
    cells = np.diff(np.diff(np.pad(bound, ((1, 0), (1, 0))), axis=0), axis=1)
    joint = k * cells + (1 - k) * np.outer(pf, pa)
    ent = lambda p: -sum(x * math.log2(abs(x)) for x in p.ravel() if x != 0)  # noqa: E731
    mi = ent(pa) + ent(pf) - ent(joint)
    return 0.0 if mi == 0 else 2 * mi / (ent(pa) + ent(pf))


def test_fmi_matches_the_cell_by_cell_recipe():
    rng = np.random.default_rng(3)
    ir = rng.integers(0, 256, (6, 7)).astype(np.float64)
    vis = 255 - ir + rng.integers(0, 40, (6, 7))  # negatively correlated windows too
    vis[:3, :3] = 50  # a flat window
    fused = np.rint((ir + vis) / 2)
    fused[3:, 4:] = ir[3:, 4:]  # windows identical to the IR's
    want = np.mean([(fmi_window_direct(ir[y:y + 3, x:x + 3], fused[y:y + 3, x:x + 3])
                     + fmi_window_direct(vis[y:y + 3, x:x + 3], fused[y:y + 3, x:x + 3])) / 2
                    for y in range(4) for x in range(5)])
    assert M.fmi_pixel(fused, ir, vis) == pytest.approx(want, abs=1e-12)
    img = scene().astype(np.float64)
    assert M.fmi_pixel(img, img, img) == 1.0


def test_thermal_target_contrast_and_cc_max_known_values():
    from streamfuse.evaluation.metrics import evaluate

    ir = np.zeros((20, 20), np.uint8)
    ir[:2, :10] = 200  # 20 of 400 pixels = the hottest 5%
    vis = np.full((20, 20), 100, np.uint8)
    vis[10:, :] = 50
    r = evaluate(ir, ir, vis, ["TTC", "CCmax"])
    assert r["TTC"] == pytest.approx(1.0) and r["CCmax"] == pytest.approx(1.0)
    half = (ir // 2 + vis // 2).astype(np.uint8)  # hot region: 100 + 50 = 150 over a background of 50..100
    expected = (150 - (np.sum(half) - 20 * 150) / 380) / 200
    assert evaluate(half, ir, vis, ["TTC"])["TTC"] == pytest.approx(expected)

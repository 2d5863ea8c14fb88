"""GFF and HMSD against direct numpy versions of their papers' formulas; the MMDRFuse student speed
reference; the shipped graphs on ONNX Runtime and OpenVINO; the registry and the CLI by name."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamfuse import SAMPLE_DIR
from streamfuse.backends import available_backends, load_fuser
from streamfuse.models import get_model, list_models
from streamfuse.models.classical import GuidedFilterFusion, HybridMSDFusion, box_mean, window_mean
from streamfuse.models.mmdrfuse import build as build_student

STEM = "set08_V000_I02159"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def real_pair() -> tuple[np.ndarray, np.ndarray]:
    """The bundled KAIST pair: IR and visible luma, float32 in [0, 1], 512 x 640."""
    ir = cv2.imread(str(SAMPLE_DIR / "images" / "ir" / f"{STEM}.png"), cv2.IMREAD_GRAYSCALE)
    vis = cv2.imread(str(SAMPLE_DIR / "images" / "vis" / f"{STEM}.png"), cv2.IMREAD_COLOR)
    vis_y = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)[..., 0]
    return ir.astype(np.float32) / 255, vis_y.astype(np.float32) / 255


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float64))[None, None]


def rng_image(h, w, seed):
    return np.random.default_rng(seed).random((h, w))


# ------------------------------------------------------------------ direct numpy references


def np_window(a: np.ndarray, i: int, j: int, r: int) -> tuple[slice, slice]:
    return slice(max(i - r, 0), i + r + 1), slice(max(j - r, 0), j + r + 1)


def np_box_mean(a: np.ndarray, r: int) -> np.ndarray:
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = a[np_window(a, i, j, r)].mean()
    return out


def np_weighted_mean(a: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Weighted mean with the 2-D weights taps x taps over the window cut at the border."""
    r = len(taps) // 2
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            rows, cols = np_window(a, i, j, r)
            ky = taps[rows.start - i + r:min(rows.stop, a.shape[0]) - i + r]
            kx = taps[cols.start - j + r:min(cols.stop, a.shape[1]) - j + r]
            k = np.outer(ky, kx)
            out[i, j] = (a[rows, cols] * k).sum() / k.sum()
    return out


def np_guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter written per window: a linear model src ~ a_k guide + b_k fitted in
    every window k (least squares with ridge eps), then each pixel averages the models of the
    windows that contain it."""
    h, w = guide.shape
    a, b = np.empty_like(guide), np.empty_like(guide)
    for i in range(h):
        for j in range(w):
            win = np_window(guide, i, j, r)
            g, p = guide[win].ravel(), src[win].ravel()
            a[i, j] = (np.mean(g * p) - g.mean() * p.mean()) / (np.var(g) + eps)
            b[i, j] = p.mean() - a[i, j] * g.mean()
    return np_box_mean(a, r) * guide + np_box_mean(b, r)


def np_gff(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """GFF, Li, Kang, Hu (2013), eqs. (5)-(12), with the paper's parameters."""
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float)
    gauss = np.exp(-np.arange(-5, 6) ** 2 / (2 * 5.0**2))
    bases, saliency = [], []
    for img in (ir, vis):
        bases.append(np_box_mean(img, 15))
        padded = np.pad(img, 1, mode="edge")
        h = np.abs(sum(lap[dy, dx] * padded[dy:dy + img.shape[0], dx:dx + img.shape[1]] for dy in range(3) for dx in range(3)))
        saliency.append(np_weighted_mean(h, gauss))
    p_ir = (saliency[0] >= saliency[1]).astype(float)
    fused = 0
    for r, eps, layers in ((45, 0.3, bases), (7, 1e-6, [ir - bases[0], vis - bases[1]])):
        w = [np_guided_filter(img, p, r, eps) + 1e-12 for img, p in ((ir, p_ir), (vis, 1 - p_ir))]
        fused = fused + (w[0] * layers[0] + w[1] * layers[1]) / (w[0] + w[1])
    return np.clip(fused, 0, 1)


# ------------------------------------------------------------------ GFF


@pytest.mark.parametrize("r", [2, 8])  # direct sums (r <= 7) and running sums (r > 7)
def test_box_mean_is_the_mean_over_the_window_inside_the_image(r):
    a = rng_image(13, 19, seed=r)
    np.testing.assert_allclose(box_mean(t(a), r)[0, 0].numpy(), np_box_mean(a, r), atol=1e-12)


def test_window_mean_weights_the_window_inside_the_image():
    a = rng_image(9, 12, seed=3)
    taps = np.exp(-np.arange(-5, 6) ** 2 / 50.0)
    got = window_mean(t(a), torch.from_numpy(taps))[0, 0].numpy()
    np.testing.assert_allclose(got, np_weighted_mean(a, taps), atol=1e-12)


@pytest.mark.parametrize("r, eps", [(2, 1e-6), (2, 0.3), (8, 0.01), (45, 0.3)])
def test_guided_filter_matches_the_per_window_formula(r, eps):
    guide, src = rng_image(14, 17, seed=1), (rng_image(14, 17, seed=2) > 0.5).astype(float)
    got = GuidedFilterFusion.guided_filter(t(guide), t(src), r, eps)[0, 0].numpy()
    np.testing.assert_allclose(got, np_guided_filter(guide, src, r, eps), atol=1e-9)


def test_gff_matches_the_paper_formula_on_a_small_pair():
    ir, vis = rng_image(24, 30, seed=4) ** 2, 0.2 + 0.6 * rng_image(24, 30, seed=5)
    ir[8:14, 10:16] = 1.0  # a hot target
    got = GuidedFilterFusion().double()(t(ir), t(vis))[0, 0].numpy()
    np.testing.assert_allclose(got, np_gff(ir, vis), atol=1e-9)


def test_gff_weights_sum_to_one_and_self_fusion_is_identity(real_pair):
    ir, vis = (t(a[:48, :64]) for a in real_pair)
    model = GuidedFilterFusion().double()
    sources = torch.cat([ir, vis], 0)
    p_ir = (torch.rand_like(ir) > 0.5).double()
    for r, eps in ((45, 0.3), (7, 1e-6)):
        w_ir, w_vis = model.weights(sources, torch.cat([p_ir, 1 - p_ir], 0), r, eps)
        torch.testing.assert_close(w_ir + w_vis, torch.ones_like(w_ir), atol=1e-12, rtol=0)
    torch.testing.assert_close(model(vis, vis), vis, atol=1e-12, rtol=0)


# ------------------------------------------------------------------ HMSD


def np_bilateral_1d(a: np.ndarray, step: int, sigma_s: float, sigma_r: float, axis: int, n: int = 6) -> np.ndarray:
    """Bilateral filter along one axis over taps k * step, |k| <= n, inside the image."""
    b = a if axis == 1 else a.T
    out = np.empty_like(b)
    for i in range(b.shape[0]):
        for j in range(b.shape[1]):
            num = den = 0.0
            for k in range(-n, n + 1):
                q = j + k * step
                if 0 <= q < b.shape[1]:
                    w = math.exp(-((k * step) ** 2) / (2 * sigma_s**2) - (b[i, q] - b[i, j]) ** 2 / (2 * sigma_r**2))
                    num, den = num + w * b[i, q], den + w
            out[i, j] = num / den
    return out if axis == 1 else out.T


@pytest.mark.parametrize("level", [0, 2])
def test_hmsd_bilateral_matches_the_direct_sum(level):
    model = HybridMSDFusion().double()
    a = rng_image(11, 37, seed=level)
    a[:, 20:] += 0.5  # an edge the filter must keep
    sigma_s, sigma_r, step = 2.0 * 2**level, 0.05 / 2**level, max(1, 2**level)
    want = np_bilateral_1d(np_bilateral_1d(a, step, sigma_s, sigma_r, axis=1), step, sigma_s, sigma_r, axis=0)
    np.testing.assert_allclose(model.bilateral(t(a), level)[0, 0].numpy(), want, atol=1e-10)


def test_hmsd_decomposition_reconstructs_the_source_exactly(real_pair):
    x = t(real_pair[1][:120, :150])
    textures, edges, base = HybridMSDFusion().double().decompose(x)
    assert len(textures) == len(edges) == 4
    torch.testing.assert_close(base + sum(textures) + sum(edges), x, atol=1e-12, rtol=0)
    # the bilateral keeps edges the Gaussian blurs: the edge layers carry real content
    assert all(e.abs().mean() > 1e-3 for e in edges)


def test_hmsd_ir_weight_is_the_papers_arctan_of_the_normalised_excess():
    e_ir = np.array([[0.0, 0.1, -0.4], [0.2, 0.05, 0.0]])
    e_vis = np.array([[0.1, -0.05, 0.1], [0.3, 0.0, 0.0]])
    r = np.maximum(np.abs(e_ir) - np.abs(e_vis), 0)  # [[0, .05, .3], [0, .05, 0]]
    want = np.arctan(30 * r / 0.3) / np.arctan(30)
    got = HybridMSDFusion().double().ir_weight(t(e_ir), t(e_vis))[0, 0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[0, 2] == pytest.approx(1.0) and got[0, 0] == 0.0


def test_hmsd_combination_follows_the_paper_rules(real_pair):
    """The fused image re-assembled in numpy from the module's own layers with the paper's rules."""
    ir, vis = (a[200:260, 100:180].astype(np.float64) for a in real_pair)
    model = HybridMSDFusion().double()
    with torch.no_grad():
        textures, edges, base = model.decompose(torch.cat([t(ir), t(vis)], 0))
        got = model(t(ir), t(vis))[0, 0].numpy()
    split = lambda x: (x[0, 0].numpy(), x[1, 0].numpy())  # noqa: E731
    textures, edges, (base_ir, base_vis) = [split(x) for x in textures], [split(x) for x in edges], split(base)

    def c_weight(e_ir, e_vis, sigma):
        r = np.maximum(np.abs(e_ir) - np.abs(e_vis), 0)
        c = np.arctan(30 * r / max(r.max(), 1e-6)) / np.arctan(30)
        return np_weighted_mean(c, np.exp(-np.arange(-int(3 * sigma), int(3 * sigma) + 1) ** 2 / (2 * sigma**2)))

    c_base = c_weight(*edges[3], sigma=64.0)
    want = c_base * base_ir + (1 - c_base) * base_vis
    for j in (1, 2, 3):
        c = c_weight(*edges[j], sigma=1.0)
        for a, b in (edges[j], textures[j]):
            want += c * a + (1 - c) * b
    for a, b in (edges[0], textures[0]):
        want += np.where(np.abs(a) > np.abs(b), a, b)
    np.testing.assert_allclose(got, np.clip(want, 0, 1), atol=1e-10)


def test_hmsd_self_fusion_is_identity_and_a_hot_target_survives():
    vis = t(0.4 + 0.1 * rng_image(48, 64, seed=7))
    model = HybridMSDFusion().double()
    torch.testing.assert_close(model(vis, vis), vis, atol=1e-12, rtol=0)
    ir = torch.full_like(vis, 0.2)
    ir[..., 20:30, 25:35] = 0.95  # hot, and absent from the visible image
    fused = model(ir, vis)[0, 0]
    assert fused[22:28, 27:33].mean() > vis[0, 0, 22:28, 27:33].mean() + 0.3


# ------------------------------------------------------------------ both, any size, every backend


@pytest.mark.parametrize("name", ["gff", "hmsd"])
@pytest.mark.parametrize("hw", [(1, 1), (5, 3), (61, 75)])
def test_any_size_gives_a_finite_image_in_range(name, hw):
    g = torch.Generator().manual_seed(0)
    ir, vis = torch.rand(2, 1, 1, *hw, generator=g)
    with torch.inference_mode():
        out = get_model(name).build()(ir, vis)
    assert out.shape == (1, 1, *hw) and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("name, crop", [("gff", None), ("hmsd", (slice(150, 406), slice(0, 320)))])
def test_shipped_onnx_matches_torch_on_the_real_pair(name, crop, real_pair):
    ir, vis = (a if crop is None else np.ascontiguousarray(a[crop]) for a in real_pair)  # hmsd: a 320x256 crop keeps it quick
    spec = get_model(name)
    assert spec.onnx_path().is_file() and not spec.trained and not spec.speed_only
    out = load_fuser(name, backend="onnxruntime", device="cpu").fuse(ir, vis)
    with torch.inference_mode():
        want = spec.build()(torch.from_numpy(ir)[None, None], torch.from_numpy(vis)[None, None])[0, 0].numpy()
    assert out.shape == ir.shape
    np.testing.assert_allclose(out, want, atol=1e-4)
    # the IR's people are kept: the fused image differs from the visible one
    assert np.abs(out - vis).mean() > 1e-3


@pytest.mark.parametrize("name", ["gff", "hmsd", "mmdrfuse-student"])
@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_other_backends_match_onnxruntime(name, backend, real_pair):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed here (pip install -e '.[{backend}]')")
    ir, vis = (np.ascontiguousarray(a[100:161, 200:275]) for a in real_pair)  # odd size
    want = load_fuser(name, backend="onnxruntime", device="cpu").fuse(ir, vis)
    got = load_fuser(name, backend=backend, device="cpu").fuse(ir, vis)
    np.testing.assert_allclose(got, want, atol=1e-4)


# ------------------------------------------------------------------ MMDRFuse student (speed only)


def test_mmdrfuse_student_structure_has_113_seeded_parameters():
    a, b = build_student(), build_student()
    assert sum(p.numel() for p in a.parameters()) == 113
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)  # same seed, same weights
    ir, vis = torch.rand(2, 1, 1, 7, 9)
    out = a(ir, vis)
    assert out.shape == (1, 1, 7, 9) and 0 <= out.min() and out.max() <= 1


def test_speed_reference_is_left_out_of_evaluation_and_model_lists():
    from streamfuse.evaluation.runner import resolve_models

    spec = get_model("mmdrfuse-student")
    assert spec.speed_only and not spec.trained and spec.onnx_path().is_file()
    assert "mmdrfuse-student" not in [s.name for s in list_models()]
    assert [s.name for s in list_models(speed_only=True)] == ["mmdrfuse-student"]
    chosen = [name for name, _ in resolve_models("all")]
    assert "mmdrfuse-student" not in chosen and {"gff", "hmsd"} <= set(chosen)


# ------------------------------------------------------------------ CLI by name


def test_cli_lists_and_fuses_by_name(tmp_path: Path, capsys):
    from streamfuse.cli import main

    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "baseline" in lines["gff"] and "baseline" in lines["hmsd"]
    assert "speed reference, random weights" in lines["mmdrfuse-student"]
    ir = cv2.imread(str(SAMPLE_DIR / "images" / "ir" / f"{STEM}.png"), cv2.IMREAD_GRAYSCALE)[:101, :133]
    vis = cv2.imread(str(SAMPLE_DIR / "images" / "vis" / f"{STEM}.png"))[:101, :133]
    cv2.imwrite(str(tmp_path / "ir.png"), ir)
    cv2.imwrite(str(tmp_path / "vis.png"), vis)
    for name in ("gff", "hmsd"):
        out = tmp_path / f"{name}.png"
        assert main(["fuse", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vis.png"), "-o", str(out), "--model", name]) == 0
        assert cv2.imread(str(out)).shape == (101, 133, 3)

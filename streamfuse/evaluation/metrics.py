"""Fusion quality metrics (no reference image): the numbers fusion papers argue with.

Pure functions of arrays: reading files is the caller's business (``streamfuse.evaluation.runner``).

Every metric works on grayscale images as float64 in 0..255. ``evaluate(fused, ir, vis)``
returns all of them (or a chosen subset) for one triple; ``temporal_metrics(frames)`` scores a
fused video against its two source videos.

Public evaluators disagree on details (log base, border handling, normalisation), so each
docstring states the convention used here. The reference points, in order of precedence:
the VIFB toolbox (Zhang et al., CVPRW 2020, MATLAB), Tang's Evaluation-for-Image-Fusion
(MATLAB) and its Python ports, and the CDDFuse ``utils/Evaluator.py``. Where they agree
(EN, SD, CC, SCD, Qabf, VIF) the formulas here match them; where they split the choice
is named in the docstring.

Colour images are converted with OpenCV's BGR->gray (BT.601 luma, the Y the models fuse).
"""
from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from streamfuse import StreamfuseError

# ------------------------------------------------------------------ input handling


def to_gray_f64(img: np.ndarray, name: str = "image") -> np.ndarray:
    """A uint8 array (HxW, HxWx3 BGR or HxWx4) -> HxW float64 in 0..255."""
    if isinstance(img, (str, Path)):
        raise StreamfuseError(f"{name}: expected an image array, got the path {img} "
                              "(metrics take arrays; read files with streamfuse.io.images.read_image)")
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise StreamfuseError(f"{name}: expected an 8-bit image (uint8), got dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[2] in (3, 4):
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    elif img.ndim != 2:
        raise StreamfuseError(f"{name}: expected a gray or BGR image, got shape {img.shape}")
    return img.astype(np.float64)


def _u8(img: np.ndarray) -> np.ndarray:
    """Grey levels as integers 0..255 for histogram metrics (rounded, as CDDFuse does)."""
    return np.clip(np.rint(img), 0, 255).astype(np.intp)


def _check_same_shape(**images: np.ndarray) -> None:
    shapes = {name: im.shape for name, im in images.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{n} {s[1]}x{s[0]}" for n, s in shapes.items())
        raise StreamfuseError(f"images differ in size: {desc}")


# ------------------------------------------------------------------ filtering helpers


def _gauss1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian', size, sigma)
    for the sizes used here (no tap falls below eps*max, so fspecial's cut-off never applies)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable symmetric filter, MATLAB ``filter2(w, img, 'valid')`` (output shrinks by len-1)."""
    r = len(g) // 2
    h, w = img.shape
    if h <= 2 * r or w <= 2 * r:
        return np.empty((max(h - 2 * r, 0), max(w - 2 * r, 0)))
    out = cv2.sepFilter2D(img, cv2.CV_64F, g, g, borderType=cv2.BORDER_CONSTANT)
    return out[r:h - r, r:w - r]


def _filter_same_zero(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(img, kernel, 'same')``: true convolution, zero padding."""
    return cv2.filter2D(img, cv2.CV_64F, np.ascontiguousarray(kernel[::-1, ::-1]), borderType=cv2.BORDER_CONSTANT)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images (MATLAB corr2). NaN when either is constant."""
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else float("nan")


def _xlog2x(p: np.ndarray) -> np.ndarray:
    """p * log2(p), with 0 where p == 0."""
    out = np.zeros_like(p)
    nz = p > 0
    out[nz] = p[nz] * np.log2(p[nz])
    return out


# ------------------------------------------------------------------ single-image metrics


def entropy(img: np.ndarray) -> float:
    """EN = -sum_k p_k log2 p_k over the 256-bin histogram of the image rounded to 0..255 (bits).

    All peers agree (VIFB, Tang, CDDFuse); Tang's Python adds 1e-7 inside the log, which moves
    the 5th decimal at most.
    """
    hist = np.bincount(_u8(img).ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    return float(-_xlog2x(p).sum())


def std_dev(img: np.ndarray) -> float:
    """SD = population standard deviation sqrt(mean((x - mean x)^2)) (divide by H*W, not H*W-1)."""
    return float(np.std(img))


def spatial_frequency(img: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2), RF = sqrt(mean over (H)(W-1) of (x[i,j] - x[i,j-1])^2) and CF
    the same for vertical differences over (H-1)(W); no diagonal terms.

    This is CDDFuse's and Tang's Python convention (mean over the differences that exist). VIFB
    divides both sums by H*W instead, which gives a slightly smaller value on small images.
    """
    rf2 = np.mean(np.diff(img, axis=1) ** 2)
    cf2 = np.mean(np.diff(img, axis=0) ** 2)
    return float(math.sqrt(rf2 + cf2))


def average_gradient(img: np.ndarray) -> float:
    """AG = mean over all H*W pixels of sqrt((gx^2 + gy^2) / 2), gx and gy from MATLAB's
    ``gradient``: central differences (x[i+1] - x[i-1]) / 2 inside, one-sided differences on
    the first and last row/column.

    The mean over H*W is CDDFuse's convention; VIFB and Tang's Python divide the same sum by
    (H-1)(W-1), i.e. they report H*W / ((H-1)(W-1)) times this value (0.4 % more at 640x480).
    """
    gy, gx = np.gradient(img)
    return float(np.mean(np.sqrt((gx * gx + gy * gy) / 2)))


# ------------------------------------------------------------------ information metrics


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """MI(a, b) = H(a) + H(b) - H(a, b) from the 256 x 256 joint histogram of the images rounded
    to 0..255, in bits.

    VIFB (which min-max stretches first) and CDDFuse (sklearn) report nats: multiply by ln 2 =
    0.693 to compare. Stretching does not change MI, because distinct grey levels stay distinct.
    """
    joint = np.bincount((_u8(a) * 256 + _u8(b)).ravel(), minlength=256 * 256).astype(np.float64)
    p = joint / joint.sum()
    pa = p.reshape(256, 256).sum(axis=1)
    pb = p.reshape(256, 256).sum(axis=0)
    return float(_xlog2x(p).sum() - _xlog2x(pa).sum() - _xlog2x(pb).sum())


def mi(fused, ir, vis) -> float:
    """MI = MI(f, ir) + MI(f, vis), bits (see ``mutual_information``)."""
    return mutual_information(fused, ir) + mutual_information(fused, vis)


_FMI_CHUNK = 8192  # windows per vectorised block: bounds memory, stays in cache
_POSITIONS = np.arange(18)


class _FmiWindows:
    """Per-window quantities of Fast-FMI (3 x 3 windows, 9-bin pdfs) for one image."""

    L = 9
    IDX = np.arange(1, 10, dtype=np.float64)

    def __init__(self, img: np.ndarray):
        win = np.lib.stride_tricks.sliding_window_view(img, (3, 3))
        # MATLAB flattens a window column-major; the order matters for the CDFs and moments.
        self.raw = win.transpose(0, 1, 3, 2).reshape(-1, self.L)
        self._all = None

    def stats(self, rows: slice):
        """pdf, log2 pdf (0 where the pdf is 0), sum p log2 p, centred pdf and its sum of squares,
        mean and sd of the index."""
        if self._all is not None:
            return tuple(s[rows] for s in self._all)
        return self._stats(self.raw[rows])

    def cache_all(self) -> "_FmiWindows":
        """Compute the stats of every window once (the fused image is compared with two sources)."""
        self._all = self._stats(self.raw)
        return self

    def _stats(self, w: np.ndarray):
        lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
        flat = hi == lo
        x = np.where(flat, 1.0, (w - lo) / np.where(flat, 1.0, hi - lo))  # flat window -> ones
        p = x / x.sum(axis=1, keepdims=True)
        logp = np.log2(np.where(p > 0, p, 1.0))
        plogp = (p * logp).sum(axis=1)
        centred = p - p.mean(axis=1, keepdims=True)
        ss = (centred * centred).sum(axis=1)
        e = p @ self.IDX
        sd = np.sqrt(np.maximum(p @ (self.IDX * self.IDX) - e * e, 0.0))
        return p, logp, plogp, centred, ss, e, sd


def _fmi_pair_map(src: _FmiWindows, fused: _FmiWindows) -> np.ndarray:
    """Per-window normalised feature MI between a source and the fused image (Fast-FMI, w = 3).

    The reference code's joint pdf is k * B + (1 - k) * f_i a_j, B the cell masses of a
    Frechet bound. A bound's mass sits on at most 17 of the 81 cells (a staircase found by
    merging the two CDFs), so the joint entropy is the closed-form entropy sum of the
    independent part plus a correction on those cells: the same number (to ~1e-14) for a
    fraction of the work of filling all 81 cells per window.
    """
    l = _FmiWindows.L
    out = np.empty(len(src.raw))
    for start in range(0, len(out), _FMI_CHUNK):
        rows = slice(start, start + _FMI_CHUNK)  # contiguous blocks: views, no gathers
        a, la, aloga, at, ss_a, e_a, sd_a = src.stats(rows)
        f, lf, floga, ft, ss_f, e_f, sd_f = fused.stats(rows)
        num = (at * ft).sum(axis=1)
        den = np.sqrt(ss_a * ss_f)
        c = np.where(num == 0, 0.0, num / np.where(den > 0, den, 1.0))  # Pearson of the pdfs
        sdd = sd_a * sd_f
        # Upper bound (c >= 0): comonotone coupling of f and a. Lower bound (c < 0): the
        # comonotone coupling of f and the reversed a, read back with j -> l + 1 - j.
        neg = c < 0
        merged = np.concatenate([np.cumsum(f, axis=1), np.cumsum(np.where(neg[:, None], a[:, ::-1], a), axis=1)], axis=1)
        order = np.argsort(merged, axis=1, kind="stable")
        base = np.arange(len(a))[:, None] * l  # flat gathers are much faster than take_along_axis
        d = np.diff(merged.ravel()[order + 2 * base], axis=1, prepend=0.0)  # interval masses
        from_f = order < l
        before_f = np.cumsum(from_f, axis=1) - from_f  # F breakpoints passed before each interval
        i = np.minimum(before_f, l - 1)  # 0-based cell of each interval
        m = np.minimum(_POSITIONS - before_f, l - 1)  # the other breakpoints passed are A's
        j = np.where(neg[:, None], l - 1 - m, m)
        cov = (d * (i + 1) * (j + 1)).sum(axis=1) - e_f * e_a  # Hoeffding: covariance of the indices
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where((sdd == 0) | (c == 0), 0.0, c / (cov / sdd))
        one_k = 1.0 - k
        log_one_k = np.log2(np.where(one_k != 0, np.abs(one_k), 1.0))
        ind = one_k[:, None] * f.ravel()[i + base] * a.ravel()[j + base]
        joint = k[:, None] * d + ind
        # MATLAB keeps real(-p log2 p): for a negative p that is -p log2|p|.
        corr = (_xlog2abs(joint) - _xlog2abs(ind)).sum(axis=1)
        # sum over all 81 cells of I log2|I| with I = (1 - k) f_i a_j and sum f = sum a = 1
        s_ind = one_k * (log_one_k + floga + aloga)
        h_a, h_f = -aloga, -floga
        mi_af = h_a + h_f + s_ind + corr
        with np.errstate(divide="ignore", invalid="ignore"):
            out[rows] = np.where(mi_af == 0, 0.0, 2.0 * mi_af / (h_a + h_f))
    out[np.all(src.raw == fused.raw, axis=1)] = 1.0  # identical windows score 1
    return out


def _xlog2abs(p: np.ndarray) -> np.ndarray:
    """p log2|p|, 0 where p == 0."""
    ap = np.abs(p)
    return p * np.log2(np.where(ap > 0, ap, 1.0))


def fmi_pixel(fused, ir, vis) -> float:
    """FMI (pixel) of Haghighat et al. (2011), the Fast-FMI implementation (Haghighat & Razian 2014)
    with feature 'none' (raw pixels) and a 3 x 3 sliding window, as Tang's evaluator reports it.

    For every 3 x 3 window fully inside the image (no padding): each window is min-max
    normalised (a flat window becomes all ones) and divided by its sum to give a 9-bin pdf
    (column-major order, as MATLAB flattens); the joint pdf of (source, fused) is built from
    the Frechet bound matching the sign of the pdfs' Pearson correlation c, mixed with
    independence by phi = c / corr(bound); FMI_window = 2 MI / (H_src + H_fused) in bits,
    1 when the two windows are identical. FMI = mean over windows of (FMI(ir,f) + FMI(vis,f)) / 2.
    """
    if min(fused.shape) < 3:
        return float("nan")
    fw = _FmiWindows(fused).cache_all()
    return float(np.mean((_fmi_pair_map(_FmiWindows(ir), fw) + _fmi_pair_map(_FmiWindows(vis), fw)) / 2))


# ------------------------------------------------------------------ correlation metrics


def cc(fused, ir, vis) -> float:
    """CC = (corr(f, ir) + corr(f, vis)) / 2, Pearson correlation over all pixels (Tang; CDDFuse).
    NaN when an image is constant."""
    return (_corr(fused, ir) + _corr(fused, vis)) / 2


def cc_max(fused, ir, vis) -> float:
    """CCmax = max(corr(f, ir), corr(f, vis)), Pearson over all pixels. This project's "not a copy
    of either source" check: a fused image with CCmax >= 0.98 is practically one of its sources."""
    return max(_corr(fused, ir), _corr(fused, vis))


def thermal_target_contrast(fused, ir, vis) -> float:
    """TTC = C(f) / C(ir), C(x) = mean of x over the hottest 5% of IR pixels (ir >= its 95th
    percentile) minus the mean of x over the other pixels. This project's "thermal targets kept"
    check (>= 0.5: the fused image keeps at least half the hot targets' contrast). 1 for f = ir;
    NaN when the IR is flat."""
    hot = ir >= np.percentile(ir, 95)
    if hot.all():
        return float("nan")
    c_ir = ir[hot].mean() - ir[~hot].mean()
    return float((fused[hot].mean() - fused[~hot].mean()) / c_ir) if c_ir > 0 else float("nan")


def scd(fused, ir, vis) -> float:
    """SCD (Aslantas & Bendes 2015) = corr(f - vis, ir) + corr(f - ir, vis), Pearson over all pixels:
    how much of each source survives in what the other source does not explain."""
    return _corr(fused - vis, ir) + _corr(fused - ir, vis)


def psnr(fused, ir, vis) -> float:
    """PSNR = 10 log10(255^2 / ((MSE(f, ir) + MSE(f, vis)) / 2)) in dB, MSE over all pixels.

    The peers disagree here: CDDFuse uses max(f)^2 as the peak, Tang's Python has a 1/255^2
    scaling slip; this is the textbook form with peak 255 on the mean of the two MSEs.
    Infinite when f equals both sources.
    """
    mse = (np.mean((fused - ir) ** 2) + np.mean((fused - vis) ** 2)) / 2
    return float("inf") if mse == 0 else float(10 * math.log10(255.0 ** 2 / mse))


# ------------------------------------------------------------------ VIF


def _vif_terms(ref_stats, dist_stats, cross, sigma_nsq=2.0, eps=1e-10):
    """One scale of Sheikh & Bovik's pixel VIF: (numerator, denominator) sums, log10 units."""
    mu1, e11 = ref_stats
    mu2, e22 = dist_stats
    sigma1_sq = np.maximum(e11 - mu1 * mu1, 0.0)
    sigma2_sq = np.maximum(e22 - mu2 * mu2, 0.0)
    sigma12 = cross - mu1 * mu2
    g = sigma12 / (sigma1_sq + eps)
    sv_sq = sigma2_sq - g * sigma12
    low1 = sigma1_sq < eps
    g[low1] = 0
    sv_sq[low1] = sigma2_sq[low1]
    sigma1_sq[low1] = 0
    low2 = sigma2_sq < eps
    g[low2] = 0
    sv_sq[low2] = 0
    neg = g < 0
    sv_sq[neg] = sigma2_sq[neg]
    g[neg] = 0
    sv_sq[sv_sq <= eps] = eps
    num = np.sum(np.log10(1 + g * g * sigma1_sq / (sv_sq + sigma_nsq)))
    den = np.sum(np.log10(1 + sigma1_sq / sigma_nsq))
    return num, den


def vif(fused, ir, vis) -> float:
    """VIF = VIFP(ir, f) + VIFP(vis, f), with VIFP Sheikh & Bovik's pixel-domain multi-scale VIF
    (``vifp_mscale``): 4 scales, Gaussian windows N = 17, 9, 5, 3 with sigma = N / 5, 'valid'
    filtering (no padding), before scales 2..4 the images are filtered with that scale's
    window and decimated by 2; sigma_nsq = 2, eps = 1e-10; VIFP = sum of log10 numerators /
    sum of log10 denominators over all scales. Identical to VIFB, Tang and CDDFuse (which calls
    it VIFF). NaN when a source is flat (denominator 0) or the image is under ~32 px.
    """
    refs = [ir, vis]
    dist = fused
    nums, dens = [0.0, 0.0], [0.0, 0.0]
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        g = _gauss1d(n, n / 5.0)
        if scale > 1:
            refs = [_filter_valid(r, g)[::2, ::2] for r in refs]
            dist = _filter_valid(dist, g)[::2, ::2]
        if min(dist.shape) < n:
            return float("nan")
        dist_stats = (_filter_valid(dist, g), _filter_valid(dist * dist, g))
        for k, ref in enumerate(refs):
            ref_stats = (_filter_valid(ref, g), _filter_valid(ref * ref, g))
            num, den = _vif_terms(ref_stats, dist_stats, _filter_valid(ref * dist, g))
            nums[k] += num
            dens[k] += den
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(nums[0] / dens[0] + nums[1] / dens[1])


# ------------------------------------------------------------------ gradient metrics (Petrovic)

_SOBEL_Y = np.array([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])
_SOBEL_X = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def _qabf_grad(img):
    sx = _filter_same_zero(img, _SOBEL_X)
    sy = _filter_same_zero(img, _SOBEL_Y)
    g = np.sqrt(sx * sx + sy * sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(sx == 0, math.pi / 2, np.arctan(sy / sx))
    return g, a


def _qabf_preservation(g_s, a_s, g_f, a_f):
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
    with np.errstate(divide="ignore", invalid="ignore"):
        # as in the reference code: G = g_f when the strengths are equal (not 1)
        gr = np.where(g_s > g_f, g_f / g_s, np.where(g_s == g_f, g_f, g_s / g_f))
    ar = 1 - np.abs(a_s - a_f) / (math.pi / 2)
    return tg / (1 + np.exp(kg * (gr - dg))) * ta / (1 + np.exp(ka * (ar - da)))


def qabf(fused, ir, vis) -> float:
    """Qabf (Xydeas & Petrovic 2000): gradient information carried from the sources into f.

    3 x 3 Sobel responses sx, sy by MATLAB ``conv2(..., 'same')`` (zero padding); strength
    g = sqrt(sx^2 + sy^2), angle a = atan(sy / sx) with pi/2 where sx == 0. Per source S,
    G = min(g_S, g_f) / max(g_S, g_f) (the reference code sets G = g_f where the two are equal),
    A = 1 - |a_S - a_f| / (pi/2), Q_Sf = Tg / (1 + e^(kg (G - Dg))) * Ta / (1 + e^(ka (A - Da)))
    with Tg 0.9994, kg -15, Dg 0.5, Ta 0.9879, ka -22, Da 0.8; Qabf = sum(Q_ir,f g_ir + Q_vis,f
    g_vis) / sum(g_ir + g_vis). This is VIFB's/Tang's/CDDFuse's code exactly.

    Note: those constants are the sigmoids' values at the optimum, not their reciprocals, so
    a perfect fusion scores Tg * Ta / (1 + e^(ka (1 - Da))) = 0.9748, not 1. They are kept so
    the numbers compare with published tables.
    """
    g_i, a_i = _qabf_grad(ir)
    g_v, a_v = _qabf_grad(vis)
    g_f, a_f = _qabf_grad(fused)
    q_i = _qabf_preservation(g_i, a_i, g_f, a_f)
    q_v = _qabf_preservation(g_v, a_v, g_f, a_f)
    den = float(np.sum(g_i + g_v))
    return float(np.sum(q_i * g_i + q_v * g_v)) / den if den > 0 else float("nan")


def _nabf_sobel(img):
    # Shreyamsha Kumar's sobel_fn: kernels / 8, borders by mirroring without repeating the edge
    kx = cv2.filter2D(img, cv2.CV_64F, _SOBEL_X / 8, borderType=cv2.BORDER_REFLECT_101)
    ky = cv2.filter2D(img, cv2.CV_64F, -_SOBEL_Y / 8, borderType=cv2.BORDER_REFLECT_101)
    g = np.sqrt(kx * kx + ky * ky)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where((kx == 0) & (ky == 0), 0.0, np.arctan(kx / ky))
    return g, a


def _nabf_preservation(g_s, a_s, g_f, a_f):
    nrg, kg, sg, nra, ka, sa = 0.9999, 19.0, 0.5, 0.9995, 22.0, 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        gr = np.where((g_s == 0) | (g_f == 0), 0.0, np.minimum(g_s, g_f) / np.maximum(g_s, g_f))
    ar = np.abs(np.abs(a_s - a_f) - math.pi / 2) * 2 / math.pi
    qg = nrg / (1 + np.exp(-kg * (gr - sg)))
    qa = nra / (1 + np.exp(-ka * (ar - sa)))
    return np.sqrt(qg * qa)


def nabf(fused, ir, vis) -> float:
    """Nabf: fusion artefacts (noise/edges in f stronger than in both sources), Shreyamsha Kumar's
    modification of Petrovic's N_AB/F (2013), as in VIFB's CBF code and Tang's evaluator.
    Lower is better.

    Sobel kernels / 8 with mirrored borders (reflect-101); angle atan(gx / gy) (0 where both are
    0); Q_Sf = sqrt(Qg Qa) with Qg = 0.9999 / (1 + e^(-19 (G - 0.5))) (G = min/max strength
    ratio, 0 if either is 0) and Qa = 0.9995 / (1 + e^(-22 (A - 0.5))), A = ||a_S - a_f| -
    pi/2| * 2/pi; weights w_S = g_S^1.5 where g_S >= 2, else 0.001 (the MATLAB original; a
    common Python port uses 0 there). Nabf = sum(m ((1 - Q_ir,f) w_ir + (1 - Q_vis,f) w_vis)) /
    sum(w_ir + w_vis), with m = 1 where g_f exceeds both source strengths, else 0.
    """
    g_i, a_i = _nabf_sobel(ir)
    g_v, a_v = _nabf_sobel(vis)
    g_f, a_f = _nabf_sobel(fused)
    q_i = _nabf_preservation(g_i, a_i, g_f, a_f)
    q_v = _nabf_preservation(g_v, a_v, g_f, a_f)
    w_i = np.where(g_i >= 2, g_i ** 1.5, 0.001)
    w_v = np.where(g_v >= 2, g_v ** 1.5, 0.001)
    m = (g_f > g_i) & (g_f > g_v)
    return float(np.sum(m * ((1 - q_i) * w_i + (1 - q_v) * w_v)) / np.sum(w_i + w_v))


# ------------------------------------------------------------------ SSIM family

_SSIM_WIN = _gauss1d(11, 1.5)
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _ssim_maps(x: np.ndarray, y: np.ndarray):
    """SSIM and contrast-structure maps, 11 x 11 Gaussian (sigma 1.5), 'valid' (no padding)."""
    mx, my = _filter_valid(x, _SSIM_WIN), _filter_valid(y, _SSIM_WIN)
    sxx = _filter_valid(x * x, _SSIM_WIN) - mx * mx
    syy = _filter_valid(y * y, _SSIM_WIN) - my * my
    sxy = _filter_valid(x * y, _SSIM_WIN) - mx * my
    cs = (2 * sxy + _C2) / (sxx + syy + _C2)
    return (2 * mx * my + _C1) / (mx * mx + my * my + _C1) * cs, cs


def ssim_index(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM (Wang et al. 2004): mean of the SSIM map, 11 x 11 Gaussian window sigma 1.5, 'valid'
    filtering, K = (0.01, 0.03), L = 255. NaN for images smaller than 11 x 11."""
    if min(x.shape) < 11:
        return float("nan")
    return float(np.mean(_ssim_maps(x, y)[0]))


def ssim(fused, ir, vis) -> float:
    """SSIM = SSIM(f, ir) + SSIM(f, vis), VIFB's and Tang's Python convention (sum, range
    -2..2). Tang's MATLAB and some papers average instead (halve this). CDDFuse uses
    scikit-image's 7 x 7 uniform window, which gives different numbers."""
    return ssim_index(fused, ir) + ssim_index(fused, vis)


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2 x 2 mean pooling; an odd side is zero-padded on both ends and the zeros are counted
    (torch avg_pool2d(kernel 2, padding = side % 2), as pytorch_msssim does)."""
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        x = np.pad(x, ((ph, ph), (pw, pw)))
    h, w = x.shape[0] // 2, x.shape[1] // 2
    return x[:2 * h, :2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))


def ms_ssim_index(x: np.ndarray, y: np.ndarray) -> float:
    """MS-SSIM (Wang et al. 2003) as pytorch_msssim computes it (used by Tang's Python evaluator):
    5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), the SSIM window above,
    2 x 2 average pooling between scales, contrast-structure terms of scales 1-4 and the SSIM of
    scale 5 clipped at 0, combined as a weighted geometric product. NaN when the smaller side is
    160 px or less (the 11 px window must fit after 4 halvings)."""
    if min(x.shape) <= (11 - 1) * 2 ** 4:
        return float("nan")
    terms = []
    for level, w in enumerate(_MS_WEIGHTS):
        s_map, cs_map = _ssim_maps(x, y)
        if level < len(_MS_WEIGHTS) - 1:
            terms.append(max(float(cs_map.mean()), 0.0) ** w)
            x, y = _avg_pool2(x), _avg_pool2(y)
        else:
            terms.append(max(float(s_map.mean()), 0.0) ** w)
    return float(np.prod(terms))


def ms_ssim(fused, ir, vis) -> float:
    """MS-SSIM = MS-SSIM(f, ir) + MS-SSIM(f, vis) (Tang's Python convention, sum)."""
    return ms_ssim_index(fused, ir) + ms_ssim_index(fused, vis)


# ------------------------------------------------------------------ human-perception metrics (Z. Liu's code, VIFB)


def _stretch_0_255(img: np.ndarray) -> np.ndarray:
    """Z. Liu's normalize1: min-max stretch to 0..255, rounded (an all-zero image stays zero)."""
    lo, hi = img.min(), img.max()
    if lo == hi:
        return img.copy() if hi == 0 else np.full(img.shape, np.nan)
    return np.round((img - lo) / (hi - lo) * 255)


def _freq_radius(shape: tuple[int, int], cycles: float) -> np.ndarray:
    """MATLAB freqspace(shape, 'meshgrid') frequencies scaled by (W / cycles, H / cycles): radius."""
    def axis(n):
        return (np.arange(n) - n // 2) * (2.0 / n)  # -1 .. 1 - 2/n (even) or symmetric (odd)

    h, w = shape
    u, v = np.meshgrid(axis(w) * (w / cycles), axis(h) * (h / cycles))
    return np.sqrt(u * u + v * v)


def _csf_filter(img: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Filter in the centred frequency domain: ifft2(ifftshift(fftshift(fft2(img)) * response))."""
    return np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(img)) * response))


def _block_reduce(x: np.ndarray, size: int) -> np.ndarray:
    """MATLAB blkproc(x, [size size], @(b) sum(b(:))): partial blocks are zero-padded."""
    h, w = x.shape
    hp, wp = -(-h // size) * size, -(-w // size) * size
    x = np.pad(x, ((0, hp - h), (0, wp - w)))
    return x.reshape(hp // size, size, wp // size, size).sum(axis=(1, 3))


def qcv(fused, ir, vis) -> float:
    """Qcv (Chen & Varshney 2007): CSF-weighted local error between f and each source, weighted by
    the source's regional edge saliency. Lower is better. Z. Liu's implementation as in VIFB:

    images min-max stretched to 0..255 and rounded; Sobel strength g by filter2 'same' (zero
    padding); saliency per 16 x 16 block lambda = sum g^5 (partial blocks zero-padded); the
    differences src - f are filtered with the Mannos-Sakrison CSF 2.6 (0.0192 + 0.144 r)
    e^(-(0.144 r)^1.1) on MATLAB's freqspace grid scaled by (W/8, H/8); D = mean of the squared
    filtered difference per 16 x 16 block (divided by 256 also for partial blocks);
    Qcv = sum(lambda_ir D_ir + lambda_vis D_vis) / sum(lambda_ir + lambda_vis). The reference
    squares the complex filter output; the real part of the result is returned.
    """
    f = _stretch_0_255(fused)
    theta = None
    num = den = 0.0
    for src in (_stretch_0_255(ir), _stretch_0_255(vis)):
        gx = cv2.filter2D(src, cv2.CV_64F, _SOBEL_X, borderType=cv2.BORDER_CONSTANT)
        gy = cv2.filter2D(src, cv2.CV_64F, -_SOBEL_Y, borderType=cv2.BORDER_CONSTANT)
        lam = _block_reduce(np.sqrt(gx * gx + gy * gy) ** 5, 16)
        if theta is None:
            r = _freq_radius(f.shape, 8.0)
            theta = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
        filtered = _csf_filter(src - f, theta)
        d = _block_reduce(filtered * filtered, 16) / 256
        num = num + (lam * d).sum()
        den = den + lam.sum()
    return float(np.real(num / den)) if den > 0 else float("nan")


def _gauss_sep(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Z. Liu's gaussian2d: 31 x 31 taps exp(-(x^2+y^2) / 2 sigma^2) / (2 pi sigma^2), not
    normalised to sum 1 (it does not matter: only ratios of two such filters are used)."""
    g = np.exp(-(np.arange(-15, 16, dtype=np.float64) ** 2) / (2 * sigma * sigma))
    return g, g / (2 * math.pi * sigma * sigma)


def _local_contrast(img: np.ndarray) -> np.ndarray:
    """|filter2(G(sigma 2), img) / filter2(G(sigma 4), img) - 1| for a complex image, zero padding."""
    def filt(x, sigma):
        kx, ky = _gauss_sep(sigma)
        return cv2.sepFilter2D(x, cv2.CV_64F, kx, ky, borderType=cv2.BORDER_CONSTANT)

    num = filt(img.real, 2) + 1j * filt(img.imag, 2)
    den = filt(img.real, 4) + 1j * filt(img.imag, 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(num / den - 1)


def qcb(fused, ir, vis) -> float:
    """Qcb (Chen & Blum 2009): how well f preserves each source's local contrast as seen through
    a contrast-sensitivity filter, weighted by the sources' contrast saliency. Higher is better.
    Z. Liu's implementation as in VIFB:

    images min-max stretched to 0..255 and rounded; filtered in the centred frequency domain by
    the DoG CSF S(r) = e^(-(r/15.3870)^2) - 0.7622 e^(-(r/1.3456)^2) on MATLAB's freqspace grid
    scaled by (W/30, H/30); local contrast C = |G2 * I / G4 * I - 1| with 31 x 31 Gaussians of
    sigma 2 and 4 (filter2 'same', zero padding); masked C' = C^3 / (C^2 + 1e-4); per source
    Q_Sf = min(C'_S, C'_f) / max(C'_S, C'_f); weights lambda_S = C'_S^2 / (C'_ir^2 + C'_vis^2);
    Qcb = mean(lambda_ir Q_ir,f + lambda_vis Q_vis,f). NaN where a local mean is 0 propagates,
    as in the reference.
    """
    r = _freq_radius(fused.shape, 30.0)
    csf = np.exp(-((r / 15.3870) ** 2)) - 0.7622 * np.exp(-((r / 1.3456) ** 2))
    masked = []
    for img in (ir, vis, fused):
        c = _local_contrast(_csf_filter(_stretch_0_255(img), csf))
        masked.append(c ** 3 / (c ** 2 + 0.0001))
    c_ir, c_vis, c_f = masked
    with np.errstate(divide="ignore", invalid="ignore"):
        q_ir = np.where(c_ir < c_f, c_ir / c_f, c_f / c_ir)
        q_vis = np.where(c_vis < c_f, c_vis / c_f, c_f / c_vis)
        total = c_ir ** 2 + c_vis ** 2
        q = (c_ir ** 2 / total) * q_ir + (c_vis ** 2 / total) * q_vis
    return float(np.mean(q))


# ------------------------------------------------------------------ registry and entry point


def _single(fn: Callable[[np.ndarray], float]):
    def metric(fused, ir, vis):
        return fn(fused)

    metric.__doc__ = fn.__doc__
    return metric


# name -> (function(fused, ir, vis), higher is better)
METRICS: dict[str, tuple[Callable[..., float], bool]] = {
    "EN": (_single(entropy), True),
    "SD": (_single(std_dev), True),
    "SF": (_single(spatial_frequency), True),
    "AG": (_single(average_gradient), True),
    "MI": (mi, True),
    "FMI": (fmi_pixel, True),
    "SCD": (scd, True),
    "VIF": (vif, True),
    "Qabf": (qabf, True),
    "Nabf": (nabf, False),
    "SSIM": (ssim, True),
    "MS-SSIM": (ms_ssim, True),
    "CC": (cc, True),
    "PSNR": (psnr, True),
    "Qcb": (qcb, True),
    "Qcv": (qcv, False),
    "TTC": (thermal_target_contrast, True),
    "CCmax": (cc_max, False),
}


def higher_is_better(name: str) -> bool:
    if name in METRICS:
        return METRICS[name][1]
    return TEMPORAL_HIGHER_IS_BETTER[name]


def check_metric_names(names: Iterable[str]) -> list[str]:
    """Canonical names for user-typed metric names (case-insensitive); unknown ones are an error."""
    by_lower = {k.lower(): k for k in METRICS}
    out = []
    for name in names:
        key = by_lower.get(name.strip().lower())
        if key is None:
            close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=1, cutoff=0.5)
            hint = f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
            raise StreamfuseError(f"unknown metric '{name}'{hint}; known: {', '.join(METRICS)}")
        out.append(key)
    return out


def evaluate(fused, ir, vis, metrics: Iterable[str] | None = None) -> dict[str, float]:
    """Score one fused image against its IR and visible sources.

    ``fused``, ``ir``, ``vis``: uint8 arrays (gray or BGR), all of one size.
    ``metrics``: names from ``METRICS`` (default: all). Returns {name: value}.
    """
    names = check_metric_names(metrics) if metrics is not None else list(METRICS)
    f = to_gray_f64(fused, "fused image")
    i = to_gray_f64(ir, "IR image")
    v = to_gray_f64(vis, "visible image")
    _check_same_shape(fused=f, IR=i, visible=v)
    return {name: float(METRICS[name][0](f, i, v)) for name in names}


# ------------------------------------------------------------------ temporal metrics

TEMPORAL_HIGHER_IS_BETTER = {"Flicker": False, "FlickerRatio": False, "TSI": False}


class TemporalAccumulator:
    """Running sums for ``temporal_metrics``; feed frames one at a time with ``add``."""

    def __init__(self):
        self.prev = None
        self.pairs = 0
        self.pixels = 0
        self.excess = 0.0  # sum of max(0, |df| - max(|di|, |dv|))
        self.change_f = 0.0  # sum of |df|
        self.change_s = 0.0  # sum of max(|di|, |dv|)
        self.gram = np.zeros((3, 3))  # sums of products of (df, di, dv)

    def add(self, fused, ir, vis) -> None:
        cur = [to_gray_f64(fused, "fused frame"), to_gray_f64(ir, "IR frame"), to_gray_f64(vis, "visible frame")]
        _check_same_shape(fused=cur[0], IR=cur[1], visible=cur[2])
        if self.prev is not None:
            if self.prev[0].shape != cur[0].shape:
                raise StreamfuseError(f"frame {self.pairs + 1} changes size from {self.prev[0].shape} to {cur[0].shape}")
            df, di, dv = (c - p for c, p in zip(cur, self.prev))
            src = np.maximum(np.abs(di), np.abs(dv))
            adf = np.abs(df)
            self.excess += float(np.maximum(adf - src, 0.0).sum())
            self.change_f += float(adf.sum())
            self.change_s += float(src.sum())
            d = np.stack([df.ravel(), di.ravel(), dv.ravel()])
            self.gram += d @ d.T
            self.pairs += 1
            self.pixels += df.size
        self.prev = cur

    def result(self) -> dict[str, float]:
        if self.pairs == 0:
            raise StreamfuseError("temporal metrics need at least 2 frames")
        flicker = self.excess / self.pixels
        if self.change_f == 0:
            ratio = 0.0
        else:
            ratio = self.change_f / self.change_s if self.change_s > 0 else float("inf")
        return {"Flicker": flicker, "FlickerRatio": ratio, "TSI": 1.0 - _explained(self.gram)}


def _explained(gram: np.ndarray) -> float:
    """Uncentred multiple correlation R of df on (di, dv) from their Gram matrix (least squares,
    no intercept). 1 when nothing changes anywhere; 0 when only one side changes."""
    sff, sfs, sss = gram[0, 0], gram[0, 1:], gram[1:, 1:]
    if sff == 0:
        return 1.0 if np.trace(sss) == 0 else 0.0
    coef, *_ = np.linalg.lstsq(sss, sfs, rcond=None)
    r2 = float(sfs @ coef) / sff
    return math.sqrt(min(max(r2, 0.0), 1.0))


def temporal_metrics(frames: Iterable[tuple]) -> dict[str, float]:
    """Temporal stability of a fused video against its sources, from (fused, ir, vis) frames.

    With d_t = x_t - x_(t-1) per pixel (grey levels 0..255) over all consecutive frame pairs:

    - ``Flicker`` = mean over pairs and pixels of max(0, |df| - max(|dir|, |dvis|)): fused
      change that neither source shows at that pixel, in grey levels. It is 0 for a still video
      and for any fixed-weight blend or max/min selection of the sources (they never change a
      pixel more than the sources do), so it isolates flicker a fusion method adds.
    - ``FlickerRatio`` = sum |df| / sum max(|dir|, |dvis|): how much the fused video changes
      relative to its sources (about <= 1 for a stable method; 0 for a still video, inf when
      only the fused video changes).
    - ``TSI`` (temporal structure inconsistency) = 1 - R, R the uncentred multiple correlation
      of df with (dir, dvis) by least squares over all pixels and pairs: the share of the fused
      frame differences' structure that a fixed mix of the source differences cannot explain.
      0 for a still video and for fixed-weight blends; 1 when fused and source changes are
      unrelated (or one side is frozen while the other moves).

    All three: lower is better. Needs >= 2 frames of one size.
    """
    acc = TemporalAccumulator()
    for fused, ir, vis in frames:
        acc.add(fused, ir, vis)
    return acc.result()

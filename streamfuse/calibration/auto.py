"""Automatic IR -> visible registration (``calibrate --auto``).

Intensities of the two modalities are unrelated (a warm face is bright in IR, a dark shirt
dark in both or neither), and gradient magnitudes differ in strength, so intensity or plain
gradient-magnitude similarity (ECC, SSD) drifts. What both share is where edges are and which
way they run. Each image becomes a two-channel "edge orientation" field: the structure tensor's
doubled-angle vector (Jxx - Jyy, 2 Jxy), which is the same for a dark-to-bright and a
bright-to-dark edge, divided by the local edge energy plus a neighbourhood mean, so a faint
edge in a flat region counts like a strong one in a busy region and noise stays small.

Search, coarse to fine:
1. coarse: on a ~160 px wide level, every rotation (-6..6 deg, 1.5 deg steps) x scale (0.72..1.4
   around the size-ratio guess, 5% steps) warp of the IR is correlated with the visible field
   over all shifts at once (masked normalised cross-correlation by FFT); the best few distinct
   candidates go on, best first;
2. fine: on levels 320 and 640 px wide, blocks of the warped IR field are matched in the visible
   field (normalised correlation, sub-pixel peak) and a correction (a similarity on the first
   level, then the chosen model) is fitted to the block shifts by iteratively reweighted least
   squares, a few rounds per level. (Fitting a similarity first and keeping the general model only
   when it raised the field correlation was tried: better on M3SVD, worse on LLVIP, 86% against
   88% overall in the benchmark, so not kept.)
3. confidence: the masked correlation of the two fields after the final warp and the number of
   blocks within 1.5 px of the fit; below the thresholds the next candidate is tried, and the
   caller refuses to write a file when none passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from streamfuse.geometry import apply_homography, scale_matrix

COARSE_WIDTH = 160
FINE_WIDTHS = (320, 640)
ANGLES_DEG = np.arange(-6.0, 6.01, 1.5)
SCALES = np.exp(np.arange(math.log(0.72), math.log(1.4) + 1e-9, math.log(1.05)))
MAX_SHIFT = 0.3  # of the visible size, on top of the centred start
# Acceptance. Registered pairs end at field correlations of 0.25-0.7 with 20-150 agreeing blocks;
# unrelated image pairs at 0.07-0.23 with 0-9 agreeing blocks (tests/calibration/test_auto.py
# checks two such pairs are refused).
MIN_SCORE = 0.18
MIN_INLIERS = 12
MODELS = ("similarity", "affine", "homography")


@dataclass
class AutoResult:
    homography: np.ndarray  # IR pixel -> VIS pixel
    score: float  # masked correlation of the edge-orientation fields after the final warp
    inliers: int  # blocks that agree with the final homography (finest level)
    blocks: int  # blocks matched at the finest level
    coarse: tuple  # (angle deg, scale, coarse score) of the chosen start

    @property
    def converged(self) -> bool:
        return self.score >= MIN_SCORE and self.inliers >= MIN_INLIERS

    @property
    def confidence(self) -> float:
        """0..1: the field correlation relative to the threshold, capped, times the block agreement."""
        agree = self.inliers / max(self.blocks, 1)
        return float(min(1.0, self.score / (2 * MIN_SCORE)) * min(1.0, agree / 0.5))


def to_float_gray(img: np.ndarray) -> np.ndarray:
    """Any frame (gray/BGR, uint8/uint16/float) -> float32 gray scaled to about [0, 1] per image."""
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32).mean(axis=2)
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    return np.clip((img - np.float32(lo)) / np.float32(max(hi - lo, 1e-6)), 0, 1).astype(np.float32)


def edge_field(gray: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """HxW float -> HxWx2 doubled-angle edge orientation field (polarity invariant, contrast normalised)."""
    g = cv2.GaussianBlur(gray, (0, 0), 1.0)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), 1.5)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), 1.5)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), 1.5)
    energy = jxx + jyy
    local = cv2.GaussianBlur(energy, (0, 0), 8.0)
    denom = energy + local + 0.05 * float(energy.mean()) + 1e-9
    f = np.dstack([(jxx - jyy) / denom, 2 * jxy / denom]).astype(np.float32)
    if mask is not None:
        f *= mask[..., None]
    return f


def _resize_to_width(img: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Resized image and the pixel matrix original -> resized."""
    h, w = img.shape[:2]
    width = min(width, w)
    size = (width, max(8, round(h * width / w)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), scale_matrix((w, h), size)


def _warp(ir: np.ndarray, m: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """Warp IR by pixel matrix m into a canvas of size (w, h); returns image and the valid mask
    (eroded a little, so the fill border adds no edges)."""
    img = cv2.warpPerspective(ir, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(ir.shape[:2], np.float32)
    mask = cv2.warpPerspective(ones, m, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8))
    return img, mask


def _prefiltered_ir(ir: np.ndarray, h_ir_to_level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink the IR first (INTER_AREA) when the warp reduces it a lot, to avoid aliasing;
    returns the image and the matrix from its pixels to the level."""
    scale = math.sqrt(abs(np.linalg.det(h_ir_to_level[:2, :2])))
    if scale >= 0.7:
        return ir, h_ir_to_level
    h, w = ir.shape[:2]
    size = (max(8, round(w * scale * 1.2)), max(8, round(h * scale * 1.2)))
    small = cv2.resize(ir, size, interpolation=cv2.INTER_AREA)
    return small, h_ir_to_level @ np.linalg.inv(scale_matrix((w, h), size))


def field_score(fv: np.ndarray, fi: np.ndarray, mask: np.ndarray) -> float:
    """Normalised correlation of two edge fields over the mask."""
    a, b = fv * mask[..., None], fi * mask[..., None]
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum())) + 1e-12
    return float((a * b).sum()) / den


class _ShiftCorrelator:
    """Masked normalised cross-correlation over all shifts of a moving field against a fixed one
    (OpenCV's real DFT in float32, spectra in packed CCS form, products by mulSpectrums)."""

    def __init__(self, fixed: np.ndarray, max_shift: tuple[int, int]):
        self.h, self.w = fixed.shape[:2]
        self.max_shift = max_shift
        # zero padding by the largest shift is enough to keep the shifts searched free of wrap-around
        self.shape = (cv2.getOptimalDFTSize(self.h + max_shift[1] + 1), cv2.getOptimalDFTSize(self.w + max_shift[0] + 1))
        self.f_fixed = [self._fft(fixed[..., c]) for c in range(fixed.shape[2])]
        self.f_energy = self._fft((fixed ** 2).sum(axis=2))
        self.f_ones = self._fft(np.ones((self.h, self.w), np.float32))

    def _fft(self, a):
        pad = np.zeros(self.shape, np.float32)
        pad[:a.shape[0], :a.shape[1]] = a
        return cv2.dft(pad, nonzeroRows=a.shape[0])

    def _corr(self, fa, fb):
        # sum_x a(x + t) b(x) for every shift t (wrapped: negative shifts at the end)
        return cv2.idft(cv2.mulSpectrums(fa, fb, 0, conjB=True), flags=cv2.DFT_SCALE | cv2.DFT_REAL_OUTPUT)

    def best(self, moving: np.ndarray, mask: np.ndarray, min_overlap: float):
        """-> (score, dx, dy): fixed(x + (dx, dy)) best matches moving(x)."""
        f_mask = self._fft(mask)
        cross = sum(cv2.mulSpectrums(a, self._fft(np.ascontiguousarray(moving[..., c])), 0, conjB=True)
                    for c, a in enumerate(self.f_fixed))
        num = cv2.idft(cross, flags=cv2.DFT_SCALE | cv2.DFT_REAL_OUTPUT)  # summed over channels first
        e_fixed = self._corr(self.f_energy, f_mask)
        e_moving = self._corr(self.f_ones, self._fft((moving ** 2).sum(axis=2)))
        overlap = self._corr(self.f_ones, f_mask)
        score = num / np.sqrt(np.maximum(e_fixed * e_moving, 1e-12))
        score[overlap < min_overlap * float(mask.sum())] = -1
        mx, my = self.max_shift
        ys = np.r_[0:my + 1, self.shape[0] - my:self.shape[0]]
        xs = np.r_[0:mx + 1, self.shape[1] - mx:self.shape[1]]
        sub = score[np.ix_(ys, xs)]
        iy, ix = np.unravel_index(int(np.argmax(sub)), sub.shape)
        dy, dx = int(ys[iy]), int(xs[ix])
        dy = dy - self.shape[0] if dy > self.shape[0] // 2 else dy
        dx = dx - self.shape[1] if dx > self.shape[1] // 2 else dx
        return float(sub[iy, ix]), dx, dy


def _similarity(angle_deg, scale, src_center, dst_center) -> np.ndarray:
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    r = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    t_src = np.array([[1, 0, -src_center[0]], [0, 1, -src_center[1]], [0, 0, 1.0]])
    t_dst = np.array([[1, 0, dst_center[0]], [0, 1, dst_center[1]], [0, 0, 1.0]])
    return t_dst @ r @ t_src


def coarse_search(ir: np.ndarray, vis: np.ndarray, h0: np.ndarray, keep: int = 3):
    """Grid search of rotation x scale (around h0, IR -> VIS pixels) x all shifts on a coarse level.
    Returns up to ``keep`` distinct candidates [(score, H IR->VIS, angle, scale)], best first."""
    vis_l, m_vis = _resize_to_width(vis, COARSE_WIDTH)
    lh, lw = vis_l.shape[:2]
    fv = edge_field(vis_l)
    corr = _ShiftCorrelator(fv, (int(MAX_SHIFT * lw), int(MAX_SHIFT * lh)))
    base = m_vis @ h0  # IR pixel -> coarse VIS pixel, before the searched rotation/scale
    centre = apply_homography(base, [[(ir.shape[1] - 1) / 2, (ir.shape[0] - 1) / 2]])[0]
    ir_small, m_small = _prefiltered_ir(ir, base)
    results = []
    for scale in SCALES:
        for angle in ANGLES_DEG:
            m = _similarity(angle, scale, centre, centre) @ m_small
            img, mask = _warp(ir_small, m, (lw, lh))
            if mask.sum() < 0.05 * lw * lh:
                continue
            fi = edge_field(img, mask)
            score, dx, dy = corr.best(fi, mask, 0.25)
            shift = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])
            h = np.linalg.inv(m_vis) @ shift @ _similarity(angle, scale, centre, centre) @ base
            results.append((score, h, float(angle), float(scale)))
    results.sort(key=lambda r: -r[0])
    picked = []
    for r in results:  # distinct starts: corners more than a few coarse pixels apart
        if all(_corner_distance(r[1], p[1], ir.shape) * lw / vis.shape[1] > 4 for p in picked):
            picked.append(r)
        if len(picked) == keep:
            break
    return picked


def _corner_distance(h1, h2, ir_shape) -> float:
    hh, ww = ir_shape[:2]
    c = np.array([[0, 0], [ww - 1, 0], [ww - 1, hh - 1], [0, hh - 1]], np.float64)
    return float(np.linalg.norm(apply_homography(h1, c) - apply_homography(h2, c), axis=1).mean())


def _match_blocks(fv: np.ndarray, fi: np.ndarray, mask: np.ndarray, radius: int, block: int):
    """Block shifts of the warped IR field fi against fv: -> (points Nx2, shifts Nx2, scores N)."""
    h, w = mask.shape
    pts, shifts, scores = [], [], []
    e_i = (fi ** 2).sum(axis=2)
    thresh = 0.5 * float(e_i[mask > 0].mean()) if (mask > 0).any() else 0
    step = block // 2
    for y in range(radius, h - block - radius + 1, step):
        for x in range(radius, w - block - radius + 1, step):
            if mask[y:y + block, x:x + block].min() < 1 or e_i[y:y + block, x:x + block].mean() < thresh:
                continue
            tmpl = np.ascontiguousarray(fi[y:y + block, x:x + block])
            area = np.ascontiguousarray(fv[y - radius:y + block + radius, x - radius:x + block + radius])
            res = cv2.matchTemplate(area, tmpl, cv2.TM_CCORR_NORMED)
            _, peak, _, (px, py) = cv2.minMaxLoc(res)
            if not (0 < px < res.shape[1] - 1 and 0 < py < res.shape[0] - 1) or peak < 0.3:
                continue
            sx = _subpixel(res[py, px - 1], peak, res[py, px + 1])
            sy = _subpixel(res[py - 1, px], peak, res[py + 1, px])
            pts.append((x + (block - 1) / 2, y + (block - 1) / 2))
            shifts.append((px + sx - radius, py + sy - radius))
            scores.append(peak)
    return np.array(pts, np.float64).reshape(-1, 2), np.array(shifts, np.float64).reshape(-1, 2), np.array(scores)


def _subpixel(left, centre, right) -> float:
    den = left - 2 * centre + right
    return float(np.clip(0.5 * (left - right) / den, -0.5, 0.5)) if den < 0 else 0.0


def refine(ir: np.ndarray, vis: np.ndarray, h: np.ndarray, model: str = "homography", rounds: int = 3):
    """Block-matching refinement of h (IR -> VIS pixels) on finer levels.
    -> (H, final field score, inliers, blocks at the finest level)."""
    inliers = blocks = 0
    score = 0.0
    widths = [w for w in FINE_WIDTHS if w < vis.shape[1]] + [min(vis.shape[1], FINE_WIDTHS[-1])]
    widths = sorted(set(widths))
    for level, width in enumerate(widths):
        vis_l, m_vis = _resize_to_width(vis, width)
        lh, lw = vis_l.shape[:2]
        fv = edge_field(vis_l)
        radius = 10 if level == 0 else 4
        block = max(24, lw // 10)
        for _ in range(rounds):
            m = m_vis @ h
            ir_src, m_src = _prefiltered_ir(ir, m)
            img, mask = _warp(ir_src, m_src, (lw, lh))
            fi = edge_field(img, mask)
            pts, shifts, scores = _match_blocks(fv, fi, mask, radius, block)
            blocks = len(pts)
            if blocks < 6:
                inliers = 0
                break
            correction, keep = _fit(pts, pts + shifts, scores, model if level > 0 else "similarity")
            inliers = int(keep.sum())
            h = np.linalg.inv(m_vis) @ correction @ m_vis @ h
            if not keep.any() or np.median(np.linalg.norm(shifts[keep], axis=1)) < 0.15:
                break
        m = m_vis @ h
        ir_src, m_src = _prefiltered_ir(ir, m)
        img, mask = _warp(ir_src, m_src, (lw, lh))
        score = field_score(fv, edge_field(img, mask), mask)
    return h, score, inliers, blocks


def _fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray, model: str):
    """Correction homography (near identity) from block centres to their matches, by iteratively
    reweighted least squares (Tukey weights): every good block contributes, so the ~1 px noise of
    single cross-modal matches averages out (RANSAC would fit the few that happen to agree).
    -> (3x3, mask of blocks within 1.5 px of the fit)."""
    c = src.mean(axis=0)
    norm = float(np.abs(src - c).max()) or 1.0
    x, y = ((src - c) / norm).T  # centred, scaled to ~[-1, 1] for a well conditioned system
    d = dst - src
    zeros, ones = np.zeros_like(x), np.ones_like(x)
    # linearised homography: d = A p, p = (a, b, tx, c, e, ty, g, h) on normalised coordinates
    ax = np.c_[x, y, ones, zeros, zeros, zeros, -x * x, -x * y]
    ay = np.c_[zeros, zeros, zeros, x, y, ones, -x * y, -y * y]
    if model == "similarity":  # a = e, c = -b
        ax = np.c_[x, y, ones, zeros]
        ay = np.c_[y, -x, zeros, ones]
    elif model == "affine":
        ax, ay = ax[:, :6], ay[:, :6]
    a = np.vstack([ax, ay])
    b = np.r_[d[:, 0], d[:, 1]] / norm
    w = weights.copy()
    for _ in range(6):
        ww = np.r_[w, w]
        p = np.linalg.lstsq(a * ww[:, None], b * ww, rcond=None)[0]
        r = np.linalg.norm((a @ p - b).reshape(2, -1).T, axis=1) * norm
        scale = max(1.4826 * float(np.median(r)), 0.3)
        u = r / (4.685 * scale)
        w = weights * np.where(u < 1, (1 - u ** 2) ** 2, 0.0)
    if model == "similarity":
        (pa, pb, tx, ty), g, h = p, 0.0, 0.0
        pc, pe = -pb, pa
    elif model == "affine":
        (pa, pb, tx, pc, pe, ty), g, h = p, 0.0, 0.0
    else:
        pa, pb, tx, pc, pe, ty, g, h = p
    m = np.array([[1 + pa, pb, tx], [pc, 1 + pe, ty], [g, h, 1.0]])
    to_norm = np.array([[1 / norm, 0, -c[0] / norm], [0, 1 / norm, -c[1] / norm], [0, 0, 1.0]])
    return np.linalg.inv(to_norm) @ m @ to_norm, (r < 1.5) & (weights > 0)


def auto_register(ir: np.ndarray, vis: np.ndarray, fov_ratio: float = 1.0, model: str = "affine",
                  keep: int = 3) -> AutoResult:
    """Estimate the homography IR -> VIS pixels from one IR and one visible frame.

    ``fov_ratio`` is the IR horizontal field of view over the visible one (1: same lens view);
    the search covers scales 0.72..1.4 around it and rotations up to 6 degrees. ``model`` is what
    the fine stage fits: similarity, affine or homography.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}")
    ir_g, vis_g = to_float_gray(ir), to_float_gray(vis)
    (ih, iw), (vh, vw) = ir_g.shape, vis_g.shape
    s = vw / iw * fov_ratio
    h0 = _similarity(0.0, s, ((iw - 1) / 2, (ih - 1) / 2), ((vw - 1) / 2, (vh - 1) / 2))
    best = None
    for c_score, h, angle, scale in coarse_search(ir_g, vis_g, h0, keep=keep):
        hr, score, inliers, blocks = refine(ir_g, vis_g, h, model)
        cand = AutoResult(hr / hr[2, 2], score, inliers, blocks, (angle, scale * fov_ratio, c_score))
        if best is None or (cand.score, cand.inliers) > (best.score, best.inliers):
            best = cand
        if best.converged:  # the best coarse start refined well: the others are only for hard cases
            break
    if best is None:
        return AutoResult(h0, 0.0, 0, 0, (0.0, fov_ratio, 0.0))
    return best

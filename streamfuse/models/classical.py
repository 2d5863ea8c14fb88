"""Two classical weight-map + multi-scale fusion methods, as untrained torch modules.

They follow the model contract (``forward(ir, vis) -> fused``, N x 1 x H x W in [0, 1], any H and W)
and export to ONNX like the other baselines, so they run on every backend. Registered as ``gff``
and ``hmsd`` in ``streamfuse.models``.

Borders: every smoothing filter (box, Gaussian) is the weighted mean over the part of its window
that lies inside the image (zero padding, divided by the same filter applied to ones); this is the
box-filter convention of He et al.'s guided filter and works for any image size, even one smaller
than the window. The authors' MATLAB code pads with 'replicate' (GFF) or 'symmetric' (HMSD)
instead; the two differ only within a filter radius of the border.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_taps(sigma: float, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    return torch.exp(-x * x / (2 * sigma * sigma))


def window_mean(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable weighted mean of every channel of ``x`` over a (2r+1) x (2r+1) window cut at the
    image border (``taps``: the 1-D weights, length 2r+1)."""
    r = taps.numel() // 2
    col, row = taps.view(1, 1, -1, 1), taps.view(1, 1, 1, -1)
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    total = F.conv2d(F.conv2d(flat, col, padding=(r, 0)), row, padding=(0, r)).reshape(n, c, h, w)
    # how much of the window lies inside the image: separable, so two 1-D profiles suffice
    inside_h = F.conv2d(torch.ones_like(x[:1, :1, :, :1]), col, padding=(r, 0))
    inside_w = F.conv2d(torch.ones_like(x[:1, :1, :1, :]), row, padding=(0, r))
    return total / (inside_h * inside_w)


def _window_sum(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sum over x[i - r .. i + r] along ``dim`` (2 or 3), zeros outside: difference of running sums."""
    k = 2 * r + 1
    padded = F.pad(x, (r + 1, r, 0, 0) if dim == 3 else (0, 0, r + 1, r))  # the leading zero starts the sums
    c = padded.cumsum(dim)
    return c[..., k:] - c[..., :-k] if dim == 3 else c[:, :, k:] - c[:, :, :-k]


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean of every channel of ``x`` over the (2r+1) x (2r+1) window cut at the image border.

    Wide windows use running sums (He et al.'s O(1)-per-pixel box filter: the cost does not grow
    with r). Narrow ones are summed directly: float32 running sums along a 640-px row drift by
    ~1e-3 on ONNX Runtime, which GFF's detail filter (r = 7, eps = 1e-6) would amplify into the
    weights; the wide filters come with eps = 0.3 or no division and are insensitive to it."""
    if r <= DIRECT_SUM_MAX_RADIUS:
        return window_mean(x, torch.ones(2 * r + 1, dtype=x.dtype, device=x.device))
    total = _window_sum(_window_sum(x, r, 2), r, 3)
    inside = _window_sum(torch.ones_like(x[:1, :1, :, :1]), r, 2) * _window_sum(torch.ones_like(x[:1, :1, :1, :]), r, 3)
    return total / inside


DIRECT_SUM_MAX_RADIUS = 7


class GuidedFilterFusion(nn.Module):
    """GFF: Li, Kang, Hu, "Image Fusion With Guided Filtering", IEEE TIP 22(7), 2013.

    For each source I_n (here n = IR, visible):
    1. two-scale decomposition: base B_n = I_n * Z (31 x 31 mean filter), detail D_n = I_n - B_n;
    2. saliency S_n = |I_n * L| * g (L the 3 x 3 Laplacian [0 1 0; 1 -4 1; 0 1 0], g an 11 x 11
       Gaussian with sigma 5);
    3. binary weight map P_n = 1 where S_n is the largest saliency, else 0 (a tie goes to the IR,
       the first source, as MATLAB's max does in the authors' code);
    4. weights refined by a guided filter with I_n as the guide: W^B_n = G_{r1,eps1}(P_n, I_n) with
       r1 = 45, eps1 = 0.3 and W^D_n = G_{r2,eps2}(P_n, I_n) with r2 = 7, eps2 = 1e-6, each
       normalised to sum to 1 over the sources;
    5. fused = sum_n W^B_n B_n + sum_n W^D_n D_n, clipped to [0, 1].

    Deviations: borders (see the module docstring): every box and Gaussian window is cut at the
    image edge and renormalised; the Laplacian uses replicate padding, as the authors' code does.
    The refined weights get ``WEIGHT_FLOOR`` added before normalising (the authors' code adds 1e-12)
    so a pixel where both are ~0 cannot divide by zero.
    """

    WEIGHT_FLOOR = 1e-12

    def __init__(self, base_radius: int = 15, saliency_radius: int = 5, saliency_sigma: float = 5.0,
                 r1: int = 45, eps1: float = 0.3, r2: int = 7, eps2: float = 1e-6):
        super().__init__()
        self.base_radius, self.r1, self.eps1, self.r2, self.eps2 = base_radius, r1, eps1, r2, eps2
        self.register_buffer("saliency_taps", gaussian_taps(saliency_sigma, saliency_radius), persistent=False)
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("laplacian", lap[None, None], persistent=False)

    @staticmethod
    def guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float) -> torch.Tensor:
        """He, Sun, Tang guided filter with (2r+1)^2 windows: output = mean(a) * guide + mean(b) with,
        per window, a = cov(guide, src) / (var(guide) + eps) and b = mean(src) - a * mean(guide)."""
        m = box_mean(torch.cat([guide, src, guide * src, guide * guide], 1), r)
        m_i, m_p, m_ip, m_ii = m[:, 0:1], m[:, 1:2], m[:, 2:3], m[:, 3:4]
        a = (m_ip - m_i * m_p) / (m_ii - m_i * m_i + eps)
        b = m_p - a * m_i
        ab = box_mean(torch.cat([a, b], 1), r)
        return ab[:, 0:1] * guide + ab[:, 1:2]

    def saliency(self, x: torch.Tensor) -> torch.Tensor:
        lap = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.laplacian)
        return window_mean(lap.abs(), self.saliency_taps)

    def weights(self, sources: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined weight maps of IR and visible (``sources``, ``p``: IR then visible on the batch
        axis), normalised to sum to 1."""
        w_ir, w_vis = (self.guided_filter(sources, p, r, eps) + self.WEIGHT_FLOOR).chunk(2, 0)
        total = w_ir + w_vis
        return w_ir / total, w_vis / total

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        sources = torch.cat([ir, vis], 0)  # both sources in one batch: every filter runs once
        base_ir, base_vis = box_mean(sources, self.base_radius).chunk(2, 0)
        s_ir, s_vis = self.saliency(sources).chunk(2, 0)
        p_ir = (s_ir >= s_vis).to(ir.dtype)
        p = torch.cat([p_ir, 1 - p_ir], 0)
        wb_ir, wb_vis = self.weights(sources, p, self.r1, self.eps1)
        wd_ir, wd_vis = self.weights(sources, p, self.r2, self.eps2)
        base = wb_ir * base_ir + wb_vis * base_vis
        detail = wd_ir * (ir - base_ir) + wd_vis * (vis - base_vis)
        return (base + detail).clamp(0.0, 1.0)


class HybridMSDFusion(nn.Module):
    """HMSD: Zhou, Wang, Li, Dong, "Perceptual fusion of infrared and visible images through a hybrid
    multi-scale decomposition with Gaussian and bilateral filters", Information Fusion 30, 2016.

    Decomposition (per source, levels j = 1..4, sigma_s = 2^j, sigma_r = 0.05 / 2^(j-1)):
    u_j = Gaussian(u_{j-1}, sigma_s) and v_j = Bilateral(v_{j-1}, sigma_s, sigma_r) with
    u_0 = v_0 = the image; texture layer D_j = u_{j-1} - v_j (small details the edge-preserving
    filter removes), edge layer E_j = v_j - u_j (edges it keeps and the Gaussian blurs); base u_4.
    The image is exactly u_4 + sum_j (D_j + E_j).

    Combination:
    - level 1 (small scale): per pixel the layer with the larger magnitude (E and D separately; the
      IR wins only when strictly larger);
    - levels 2..4: perception-based IR weights. R_j = max(|E_j^ir| - |E_j^vis|, 0), the IR edge
      content the visible lacks, P_j = R_j / max(R_j) over the image, C_j = arctan(lambda P_j) /
      arctan(lambda) with the regularisation parameter lambda = 30 (larger injects more IR,
      smaller suppresses weak IR features such as noise), smoothed by a Gaussian with sigma 1;
      E_j and D_j are fused as C_j * IR + (1 - C_j) * visible;
    - base: C_N = arctan(lambda P_4) / arctan(lambda) smoothed by a Gaussian with sigma 64;
      base = C_N * u_4^ir + (1 - C_N) * u_4^vis.
    fused = base + the fused layers, clipped to [0, 1].

    Values the paper leaves open are taken from the authors' released MATLAB implementation (the
    VIFB ``Hybrid_MSD``): the bilateral chain filters its own previous level, Gaussian windows of
    radius 3 sigma, sigma_r halving per level, lambda = 30, the sigma 1 / sigma 64 weight smoothing
    and the plain choose-max at level 1 (its sigma 0.2 smoothing is a 1 x 1 window there).

    Deviations, to export to ONNX with a fixed graph:
    - the bilateral filter (brute force, normalised, over +-3 sigma_s) is separable: a 1-D pass
      along the rows, then one along the columns (Pham & van Vliet's approximation), each on 13
      taps spaced ``max(1, sigma_s / 2)`` px (dense at level 1, dilated by 2, 4, 8 at levels 2-4,
      where its input is already smooth at that spacing): 26 taps per pixel and level instead of
      a full 2-D window, which cost 4x more time on one CPU core. The authors use an approximate
      fast bilateral filter too (their ``fast_bfilter2``).
    - borders: taps outside the image get zero weight (the bilateral pads with a value far below
      [0, 1] whose range weight underflows to 0); Gaussian windows are cut at the border and
      renormalised (see the module docstring); the authors pad 'symmetric'.
    - max(R_j) gets a floor of 1e-6 so identical sources (R_j = 0) give C_j = 0 instead of 0/0.
    """

    LEVELS = 4
    SIGMA_S = 2.0       # spatial sigma of level 1; doubles per level
    SIGMA_R = 0.05      # bilateral range sigma of level 1 (intensities in [0, 1]); halves per level
    LAMBDA = 30.0
    DETAIL_WEIGHT_SIGMA = 1.0
    BASE_WEIGHT_SIGMA = 64.0
    BILATERAL_RADIUS_TAPS = 6  # taps each side: 3 sigma_s at a spacing of sigma_s / 2
    # bilateral padding, in the filter's scaled units (range weight exp(-d^2)): at least 20 from any
    # pixel, so its weight exp(-400) is 0 even in float16, while d^2 <= (20 + 113)^2 stays in FP16 range
    OUTSIDE = -20.0
    R_FLOOR = 1e-6

    def __init__(self):
        super().__init__()
        self.levels = []  # per level: range sigma, tap spacing in px, spatial weight of each tap
        for j in range(self.LEVELS):
            sigma_s = self.SIGMA_S * 2**j
            step = max(1, int(sigma_s // 2))
            self.register_buffer(f"gauss{j}", gaussian_taps(sigma_s, int(3 * sigma_s)), persistent=False)
            offsets = range(-self.BILATERAL_RADIUS_TAPS, self.BILATERAL_RADIUS_TAPS + 1)
            spatial = [(k * step, math.exp(-((k * step) ** 2) / (2 * sigma_s**2))) for k in offsets]
            self.levels.append((self.SIGMA_R / 2**j, step, spatial))
        self.register_buffer("detail_weight_taps", gaussian_taps(self.DETAIL_WEIGHT_SIGMA, int(3 * self.DETAIL_WEIGHT_SIGMA)), persistent=False)
        self.register_buffer("base_weight_taps", gaussian_taps(self.BASE_WEIGHT_SIGMA, int(3 * self.BASE_WEIGHT_SIGMA)), persistent=False)

    def bilateral(self, x: torch.Tensor, j: int) -> torch.Tensor:
        """Bilateral filter of level j, separable: a 1-D pass along the rows, then one along the columns."""
        return self.bilateral_1d(self.bilateral_1d(x, j, dim=3), j, dim=2)

    def bilateral_1d(self, x: torch.Tensor, j: int, dim: int) -> torch.Tensor:
        """sum_q g_s(q - p) g_r(x_q - x_p) x_q / sum_q g_s(q - p) g_r(x_q - x_p) over taps q on one
        line through p (a row for dim 3, a column for dim 2)."""
        sigma_r, step, spatial = self.levels[j]
        scale = 1.0 / (math.sqrt(2.0) * sigma_r)  # in these units the range weight is exp(-d^2)
        xs = x * scale
        reach = spatial[-1][0]
        padded = F.pad(xs, (reach, reach, 0, 0) if dim == 3 else (0, 0, reach, reach), value=self.OUTSIDE)
        num = den = None
        for offset, g in spatial:  # xs shifted by offset along dim; static slice bounds
            lo, hi = reach + offset, (reach + offset - 2 * reach) or None
            tap = padded[..., lo:hi] if dim == 3 else padded[:, :, lo:hi]
            diff = tap - xs
            weight = torch.exp(-(diff * diff)) * g
            num = weight * tap if num is None else num + weight * tap
            den = weight if den is None else den + weight
        return num / (den * scale)

    def decompose(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Texture layers D_1..D_4, edge layers E_1..E_4 and the base u_4 of ``x``."""
        u = v = x
        textures, edges = [], []
        for j in range(self.LEVELS):
            u_next = window_mean(u, getattr(self, f"gauss{j}"))
            v = self.bilateral(v, j)
            textures.append(u - v)
            edges.append(v - u_next)
            u = u_next
        return textures, edges, u

    def ir_weight(self, e_ir: torch.Tensor, e_vis: torch.Tensor) -> torch.Tensor:
        r = torch.relu(e_ir.abs() - e_vis.abs())
        p = r / r.amax(dim=(2, 3), keepdim=True).clamp_min(self.R_FLOOR)
        return torch.atan(self.LAMBDA * p) / math.atan(self.LAMBDA)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        textures, edges, base = self.decompose(torch.cat([ir, vis], 0))  # both sources in one batch
        pairs = lambda layers: [t.chunk(2, 0) for t in layers]  # noqa: E731
        textures, edges, (base_ir, base_vis) = pairs(textures), pairs(edges), base.chunk(2, 0)
        c_base = window_mean(self.ir_weight(*edges[-1]), self.base_weight_taps)
        fused = c_base * base_ir + (1 - c_base) * base_vis
        for j in range(1, self.LEVELS):
            c = window_mean(self.ir_weight(*edges[j]), self.detail_weight_taps)
            for layer_ir, layer_vis in (edges[j], textures[j]):
                fused = fused + c * layer_ir + (1 - c) * layer_vis
        for layer_ir, layer_vis in (edges[0], textures[0]):
            fused = fused + torch.where(layer_ir.abs() > layer_vis.abs(), layer_ir, layer_vis)
        return fused.clamp(0.0, 1.0)


def build_gff(variant: str = "default") -> nn.Module:
    return GuidedFilterFusion()


def build_hmsd(variant: str = "default") -> nn.Module:
    return HybridMSDFusion()

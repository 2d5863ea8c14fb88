"""Losses shared by the trainers (torch, images in [0, 1])."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window SSIM of N x 1 x H x W images in [0, 1] (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03,
    'valid') and the local variance of ``y`` on the same windows."""
    w = _gaussian_window(size, sigma, x.device).to(x.dtype)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mx ** 2
    syy = F.conv2d(y * y, w) - my ** 2
    sxy = F.conv2d(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return s, syy


def ssim(x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of x against y (see ssim_map)."""
    return ssim_map(x, y, size, sigma)[0].mean()


def ssim_max_variance(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over windows of SSIM(f, a) where a's local variance is the larger there, else SSIM(f, b):
    each window's structure is taken from the source that has more of it."""
    sa, va = ssim_map(f, a)
    sb, vb = ssim_map(f, b)
    return torch.where(va >= vb, sa, sb).mean()


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Laplacian-style gradient map (4-neighbour, replicate border) used for gradient/TV terms."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device, dtype=x.dtype)[None, None]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)


def stronger_gradient(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences (dx, dy), per pixel taken from whichever of a, b has the larger gradient
    magnitude there. Shapes N x 1 x (H-1) x (W-1)."""
    def diffs(x):
        return x[:, :, :-1, 1:] - x[:, :, :-1, :-1], x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    (ax, ay), (bx, by) = diffs(a), diffs(b)
    pick_a = ax * ax + ay * ay >= bx * bx + by * by
    return torch.where(pick_a, ax, bx), torch.where(pick_a, ay, by)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)[None, None]
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, kx).abs() + F.conv2d(xp, kx.transpose(2, 3)).abs()

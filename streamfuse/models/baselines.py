"""Untrained baselines that every fusion paper compares against, as torch modules.

They follow the model contract (``forward(ir, vis) -> fused``, N x 1 x H x W in [0, 1]), so they
export to ONNX and run on every backend like a trained model. Registered as ``average``, ``max``
and ``laplacian`` in ``streamfuse.models``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AverageFusion(nn.Module):
    """fused = (ir + vis) / 2."""

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return 0.5 * (ir + vis)


class MaxFusion(nn.Module):
    """fused = max(ir, vis) per pixel."""

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return torch.maximum(ir, vis)


class LaplacianPyramidFusion(nn.Module):
    """Laplacian-pyramid fusion (Burt & Adelson 1983; the choose-max rule of Burt & Kolczynski 1993).

    Both images are split into ``levels`` band-pass layers and a low-pass residual with the
    5-tap binomial kernel [1 4 6 4 1] / 16 (reflect padding, decimation by 2). Each band-pass
    coefficient is taken from the source with the larger magnitude (the sharper detail); the
    low-pass residuals are averaged; the fused pyramid is collapsed. Fusing an image with itself
    returns it unchanged. H and W must be multiples of 2**levels (ModelSpec.pad_multiple).
    """

    def __init__(self, levels: int = 4):
        super().__init__()
        self.levels = levels
        k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
        self.register_buffer("kernel", torch.outer(k1, k1)[None, None], persistent=False)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.kernel, stride=2)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        # Zero-insertion upsampling + blur; dividing by the same operation on ones corrects the
        # weight lost at the borders (the transposed convolution pads with zeros).
        up = F.conv_transpose2d(x, 4 * self.kernel, stride=2, padding=2, output_padding=1)
        norm = F.conv_transpose2d(torch.ones_like(x), 4 * self.kernel, stride=2, padding=2, output_padding=1)
        return up / norm

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        bands = []
        for _ in range(self.levels):
            low = self.reduce(x)
            bands.append(x - self.expand(low))
            x = low
        return bands + [x]

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        p_ir, p_vis = self.pyramid(ir), self.pyramid(vis)
        fused = 0.5 * (p_ir[-1] + p_vis[-1])
        for b_ir, b_vis in zip(reversed(p_ir[:-1]), reversed(p_vis[:-1])):
            detail = torch.where(b_ir.abs() >= b_vis.abs(), b_ir, b_vis)
            fused = self.expand(fused) + detail
        return fused.clamp(0.0, 1.0)


LAPLACIAN_LEVELS = 4


def build_average(variant: str = "default") -> nn.Module:
    return AverageFusion()


def build_max(variant: str = "default") -> nn.Module:
    return MaxFusion()


def build_laplacian(variant: str = "default") -> nn.Module:
    return LaplacianPyramidFusion(LAPLACIAN_LEVELS)

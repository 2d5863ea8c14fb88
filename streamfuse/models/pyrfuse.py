"""PyrFuse: the project's real-time fusion model (learned weight map + Laplacian-pyramid blending).

Why this shape: what leads the public benchmarks is weight maps plus multi-scale blending (GFF, Li
et al. 2013; the CNN weight map + pyramids of Liu et al., Information Fusion 2017), and at 640x512
a CPU core has ~20 ms for the model, which rules out full-resolution convolutional networks. So the
full-resolution work is a fixed, cheap Laplacian pyramid, and the learning happens where pixels are
few:

- IR and visible are two channels of one tensor; a depthwise, separable binomial filter
  [1 4 6 4 1]/16 (edge padding, stride 2) builds both Gaussian pyramids at once, and the
  matching interpolation (zero insertion + the same kernel, computed in polyphase form at the low
  resolution) expands them, so every full-resolution step is a handful of memory-bound passes.
  detail_k = g_k - expand(g_{k+1}), so collapsing the pyramid of one source returns it exactly.
- A small CNN (dilated 3x3 convolutions, ``width`` channels, ~7.6K parameters) sees both sources
  at 1/8 of the frame and their local contrast there, and predicts the IR's weight in the
  low-pass base (at 1/16): w * base_ir + (1 - w) * base_vis. A hot target that is dark in the
  visible image keeps its contrast and its sign (bright on dark); a lit visible area stays lit.
  The map is smooth at full resolution (the pyramid expands it), so there are no seams or blocks.
- Details: per coefficient and level, the source with the larger magnitude wins (the choose-max
  rule of Burt & Kolczynski; a steep sigmoid, so near-ties blend instead of flipping), so edges and
  texture of either camera are kept at full strength.

Any frame size (inputs are padded to a multiple of 2**levels by the Fuser), visible colour or gray
(the model sees the luma; the stage puts the visible chroma back). An IR frame at a lower
resolution than the visible frame is brought onto the visible grid by the registration step
(bilinear, with the homography when there is one) before the model, so the model itself always
takes same-size inputs (ir_scale 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 4  # pyramid depth: the base is at 1/16 of the frame, the weight network sees 1/8
# Choose-max as a steep sigmoid of |d_ir| - |d_vis| (a ramp 1/1000 wide) instead of a comparison: at
# near-ties a hard choice flips with float rounding, so backends and FP16 would disagree by 2|d|.
SELECT_SHARPNESS = 1000.0


class PyrFuse(nn.Module):
    def __init__(self, width: int = 16, levels: int = LEVELS):
        super().__init__()
        self.levels = levels
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
        # depthwise over the two sources (groups=2): one op filters IR and visible together
        self.register_buffer("kx", k.view(1, 1, 1, 5).repeat(2, 1, 1, 1), persistent=False)
        self.register_buffer("ky", k.view(1, 1, 5, 1).repeat(2, 1, 1, 1), persistent=False)
        # Expanding (zero insertion + the same kernel, doubled per axis) in polyphase form: output 2i
        # takes (x[i-1] + 6 x[i] + x[i+1]) / 8, output 2i+1 takes (x[i] + x[i+1]) / 2. One 3x3
        # convolution at the low resolution makes the four phases, pixel_shuffle interleaves them.
        even, odd = torch.tensor([1.0, 6.0, 1.0]) / 8, torch.tensor([0.0, 4.0, 4.0]) / 8
        phases = torch.stack([torch.outer(ry, rx) for ry in (even, odd) for rx in (even, odd)])[:, None]
        self.register_buffer("phases", phases.repeat(2, 1, 1, 1), persistent=False)  # 2 sources x 4 phases
        # the weight network sees both sources at 1/8 and their local contrast (level-3 details)
        self.net = nn.Sequential(
            nn.Conv2d(4, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 1, 1),
        )

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Blur with the binomial kernel and keep every second row and column. Edge padding (not
        reflect) works down to one-pixel levels, so any frame size runs."""
        x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), self.kx, stride=(1, 2), groups=2)
        return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), self.ky, stride=(2, 1), groups=2)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Double the size (binomial interpolation); edge-padded by one low-resolution sample."""
        c = x.shape[1]
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.phases[:4 * c], groups=c)
        return F.pixel_shuffle(x, 2)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        gauss = [torch.cat([ir, vis], 1)]
        for _ in range(self.levels):
            gauss.append(self.reduce(gauss[-1]))
        details = [g - self.expand(g_next) for g, g_next in zip(gauss[:-1], gauss[1:])]
        top = self.levels - 1
        w = torch.sigmoid(self.net(torch.cat([gauss[top], details[top].abs()], 1)))
        w = F.avg_pool2d(w, 2)  # IR weight of the base, at the base's resolution
        base = gauss[-1]
        fused = base[:, 1:] + w * (base[:, :1] - base[:, 1:])
        for d in reversed(details):
            d_ir, d_vis = d[:, :1], d[:, 1:]
            pick_ir = torch.sigmoid(SELECT_SHARPNESS * (d_ir.abs() - d_vis.abs()))
            fused = self.expand(fused) + d_vis + pick_ir * (d_ir - d_vis)
        return fused.clamp(0.0, 1.0)


def build(variant: str = "default", width: int = 16) -> nn.Module:
    return PyrFuse(width=width)

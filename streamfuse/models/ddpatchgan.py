"""DDPatchGAN: infrared and visible image fusion with a U-Net generator and dual PatchGAN
(Markovian) discriminators whose IR side is weighted by IR intensity maps.

No public code exists; this is built from the paper's description (see ../shared/DESIGN.md,
"The models"). Only the generator is here; the two PatchGAN discriminators D_i and D_v, the
LSGAN losses and the IR weight maps are training-only and live in train/ddpatchgan.py.

Generator: a U-Net over the concatenated [ir, vis] (2 channels in [0, 1]).
- Encoder: per level two 3x3 conv-BN-ReLU, 2x2 max-pool between levels; widths 16, 32, 64 and a
  64-wide bottleneck at 1/8 resolution (so H and W must be multiples of 8: the registry's
  pad_multiple, the Fuser reflect-pads).
- Decoder: nearest 2x up-sampling, concatenation with the encoder's skip at that level, one 3x3
  conv-BN-ReLU per level; a 1x1 conv and a sigmoid give the fused image in [0, 1].

Deviations and why:
- Widths 16-32-64-64 and one conv per decoder level (pix2pix-style U-Nets run 64 ... 512 wide):
  the narrow net is 19 GFLOPs at 640x512 (streamfuse.evaluation.flops) and trains here in ~25 min;
  a full-width U-Net would not.
- Nearest up-sampling + 3x3 conv instead of transposed convs: no checkerboard artefacts, and the
  ONNX graph is the same on every backend.
- Depth 3 (not pix2pix's 8 halvings): fusion needs local detail more than a global receptive
  field, and a shallow net keeps the padding to a multiple of 8.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (16, 32, 64)
BOTTLENECK = 64
DEPTH = len(WIDTHS)  # number of 2x down-samplings: inputs must be multiples of 2**DEPTH


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class UNetGenerator(nn.Module):
    """forward(ir, vis) -> fused, each N x 1 x H x W in [0, 1]; H, W multiples of 2**DEPTH."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, bottleneck: int = BOTTLENECK):
        super().__init__()
        self.down = nn.ModuleList()
        cin = 2
        for w in widths:
            self.down.append(nn.Sequential(*conv_bn_relu(cin, w), *conv_bn_relu(w, w)))
            cin = w
        self.bottom = nn.Sequential(*conv_bn_relu(cin, bottleneck), *conv_bn_relu(bottleneck, bottleneck))
        self.up = nn.ModuleList()
        cin = bottleneck
        for w in reversed(widths):
            self.up.append(nn.Sequential(*conv_bn_relu(cin + w, w)))
            cin = w
        self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        x = torch.cat([ir, vis], dim=1)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return torch.sigmoid(self.head(x))


def build(variant: str = "default") -> UNetGenerator:
    return UNetGenerator()

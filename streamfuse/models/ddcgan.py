"""DDcGAN generator (Xu, Ma, Jiang, Guo, Zhang, "Learning a Generative Model for Fusing Infrared and
Visible Images via Conditional Generative Adversarial Network with Dual Discriminators", IJCAI 2019;
journal version Ma, Xu et al., IEEE TIP 2020).

The visible image comes at full size (H x W); the IR at 1/4 size (``ratio=4``, the paper's
multi-resolution setting) or at the same size (``ratio=1``). The IR is brought to the visible size by
two nearest x2 up-samplings (as the authors' code does), concatenated with the visible image and
fused by a U-Net encoder/decoder; the output is ``tanh(x) / 2 + 0.5``, in [0, 1].

- Encoder: five 3x3 convs with strides 1, 2, 1, 2, 1 (the paper's figure), 2 -> 32 -> 48 -> 48 ->
  96 -> 96 channels.
- Decoder: five 3x3 convs with two nearest x2 up-samplings, skips from the encoder:
  d1 (96 -> 96, 1/4) | cat e4 -> d2 (192 -> 48, 1/4) | up | cat e3 -> d3 (96 -> 48, 1/2) | d4 (48 -> 32,
  1/2) | up | cat e1 -> d5 (64 -> 1, full size).
- Every conv but the last is followed by BatchNorm and ReLU; all convs use reflect padding (the
  authors' code pads by reflection so the borders do not darken).

Deviations and why:
- Channel widths: the authors' code uses a dense encoder (2 -> 48, four dense 48-channel convs) and a
  240 -> 128 -> 64 -> 32 -> 1 decoder at full resolution, ~1.1M parameters and ~360 GMACs for a
  640x512 frame, which neither trains on a shared CPU nor runs in real time. Here the paper
  figure's strided U-Net is used with the widths above: 0.38M parameters, 13.7 GMACs (27 GFLOPs)
  at 640x512, most of it at 1/2 and 1/4 resolution.
- Skips: the paper's skips come from encoder layers 2 and 4 (before each stride); here from e1 and
  e3 (the full- and half-resolution maps the decoder is at when it takes them) and e4 at 1/4. The
  full-resolution skip from e1 is added because otherwise the last conv sees only up-sampled
  half-resolution features and visible texture is blurred.
- Same-resolution mode: ``ratio=1`` skips the IR up-sampling; the weights are shared with
  ``ratio=4`` (nearest up-sampling has no parameters). The shipped weights were trained with both:
  a fraction of the steps feed the full-size IR with the same-resolution content loss of the TIP
  version (``||f - i||^2`` at full size), so one set of weights serves both modes. The registry
  exposes it as variant ``x1`` (own ONNX, IR input at the visible size). Measured on the 74
  evaluation pairs, x1 and x4 outputs score within 1% of each other: with a quarter of the steps at
  ratio 1 and the TV term pulling every gradient to the visible one, the generator takes mostly the
  IR's low frequencies in both modes.
- H and W must be multiples of 4 (two stride-2 convs); the Fuser pads the visible image to that and
  the IR to a quarter of it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RATIOS = (1, 4)
ENCODER = (32, 48, 48, 96, 96)
STRIDES = (1, 2, 1, 2, 1)


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="reflect", bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class DDcGANGenerator(nn.Module):
    """forward(ir, vis) -> fused. vis: N x 1 x H x W; ir: N x 1 x H/ratio x W/ratio; all in [0, 1]."""

    def __init__(self, ratio: int = 4):
        super().__init__()
        if ratio not in RATIOS:
            raise ValueError(f"DDcGAN ratio must be one of {RATIOS}, got {ratio}")
        self.ratio = ratio
        c1, c2, c3, c4, c5 = ENCODER
        chans = (2, *ENCODER)
        self.encoder = nn.ModuleList(conv_bn_relu(chans[k], chans[k + 1], STRIDES[k]) for k in range(5))
        self.d1 = conv_bn_relu(c5, c5)
        self.d2 = conv_bn_relu(c5 + c4, c3)
        self.d3 = conv_bn_relu(c3 + c3, c3)
        self.d4 = conv_bn_relu(c3, c1)
        self.d5 = nn.Conv2d(c1 + c1, 1, 3, padding=1, padding_mode="reflect")

    def upsample_ir(self, ir: torch.Tensor) -> torch.Tensor:
        return up2(up2(ir)) if self.ratio == 4 else ir

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        x = torch.cat([vis, self.upsample_ir(ir)], dim=1)
        feats = []
        for layer in self.encoder:
            x = layer(x)
            feats.append(x)
        e1, _, e3, e4, e5 = feats
        y = self.d2(torch.cat([self.d1(e5), e4], dim=1))
        y = self.d4(self.d3(torch.cat([up2(y), e3], dim=1)))
        y = self.d5(torch.cat([up2(y), e1], dim=1))
        return torch.tanh(y) / 2 + 0.5


VARIANT_RATIO = {"x4": 4, "x1": 1}


def build(variant: str = "x4") -> DDcGANGenerator:
    return DDcGANGenerator(ratio=VARIANT_RATIO[variant])

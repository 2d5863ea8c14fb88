"""DDcGAN generator (Xu, Ma, Jiang, Guo, Zhang, "Learning a Generative Model for Fusing Infrared and
Visible Images via Conditional Generative Adversarial Network with Dual Discriminators", IJCAI 2019;
journal version Ma, Xu et al., IEEE TIP 2020).

The visible image comes at full size (H x W); the IR at 1/4 size (``ratio=4``, the paper's
multi-resolution setting) or at the same size (``ratio=1``). The IR is brought to the visible size by
two nearest x2 up-samplings (as the authors' code does), concatenated with the visible image and
fused by the authors' generator (their public code; ~1.1M parameters):

- Encoder: a 3x3 conv 2 -> 48, then a dense block of four 3x3 convs of 48 channels, each fed the
  concatenation of every earlier map, so the encoder hands 5 x 48 = 240 channels to the decoder.
- Decoder: five 3x3 convs 240 -> 240 -> 128 -> 64 -> 32 -> 1.
- Every conv but the last is followed by BatchNorm and ReLU; all convs use reflect padding (so the
  borders do not darken); the output is ``tanh(x) / 2 + 0.5``, in [0, 1]. At inference each image
  is normalised by its own statistics, as the authors' code does (``ImageStatsNorm``).

Everything runs at full resolution: 1.1M multiply-adds per pixel, 718 GFLOPs for a 640x512 frame
(about 6 s per frame on one CPU core; a GPU model). The paper's figure draws strided convs and
U-Net skips; the authors' code, followed here, has neither.

Same-resolution mode: ``ratio=1`` skips the IR up-sampling; the weights are shared with ``ratio=4``
(nearest up-sampling has no parameters). A fraction of the training steps feed the full-size IR with
the same-resolution content loss of the TIP 2020 version (``||f - i||^2`` at full size), so one set
of weights serves both modes; the registry exposes it as variant ``x1`` (IR input at the visible size).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RATIOS = (1, 4)
GROWTH = 48  # channels of the first conv and of each dense conv
DENSE = 4
DECODER = (240, 128, 64, 32)


class ImageStatsNorm(nn.BatchNorm2d):
    """BatchNorm trained as usual, but normalising each image by its own statistics at inference.

    The authors' TensorFlow code calls batch_norm with its default is_training=True, also when it
    fuses: a test image is normalised by its own mean and variance, never by running averages. Those
    averages lag a generator that is still changing (after a short CPU run the fused image lost its
    thermal targets with them: correlation with the IR 0.00 instead of 0.33 on a TNO pair).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect", bias=False),
        ImageStatsNorm(cout),
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
        self.entry = conv_bn_relu(2, GROWTH)
        self.dense = nn.ModuleList(conv_bn_relu(GROWTH * (k + 1), GROWTH) for k in range(DENSE))
        chans = (GROWTH * (DENSE + 1), *DECODER)
        self.decoder = nn.Sequential(*(conv_bn_relu(chans[k], chans[k + 1]) for k in range(len(DECODER))),
                                     nn.Conv2d(chans[-1], 1, 3, padding=1, padding_mode="reflect"))

    def upsample_ir(self, ir: torch.Tensor) -> torch.Tensor:
        return up2(up2(ir)) if self.ratio == 4 else ir

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        x = self.entry(torch.cat([vis, self.upsample_ir(ir)], dim=1))
        for layer in self.dense:
            x = torch.cat([x, layer(x)], dim=1)
        # float(): under bf16 autocast (training) the output keeps fp32 resolution for the gradient losses
        return torch.tanh(self.decoder(x).float()) / 2 + 0.5


VARIANT_RATIO = {"x4": 4, "x1": 1}


def build(variant: str = "x4") -> DDcGANGenerator:
    return DDcGANGenerator(ratio=VARIANT_RATIO[variant])

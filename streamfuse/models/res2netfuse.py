"""Res2NetFuse (Song, Wu, Xu, Kittler et al., "Res2NetFuse: A Fusion Method for Infrared and
Visible Images", 2021).

Auto-encoder trained for reconstruction on grayscale images in [0, 1]; at fusion time the encoder
runs on IR and visible separately, a fusion layer merges the two 64-channel feature maps and the
decoder turns the result into the fused image.

- Encoder: conv3x3 1->32, conv3x3 32->64, one Res2Net block (1x1 conv, 4 splits of 16 channels,
  hierarchical 3x3 convs where split i also receives the output of split i-1, 1x1 conv, identity
  shortcut). ReLU after every conv.
- Decoder: conv3x3 64->64->32->16->1, ReLU between, none on the last layer (the output is
  clipped to [0, 1] by the Fuser).
- Fusion strategies (variant):
  * ``l1``: spatial l1-norm attention. Activity C_k(x, y) = sum over channels |phi_k|, averaged in a
    3x3 window; weights C_k / (C_ir + C_vis); fused features sum_k w_k phi_k.
  * ``mean``: mean-based attention, spatial and channel. Spatial weights from the channel mean of
    each feature map, channel weights from each channel's global mean (global average pooling);
    each normalised over the two sources; the fused map is the average of the spatially and the
    channel-wise weighted sums.
Deviation: zero padding (the paper does not state the padding); reflect padding gave no gain in
reconstruction loss and zero padding maps to every backend without a Pad op.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5


def conv3(cin: int, cout: int, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Res2NetBlock(nn.Module):
    def __init__(self, channels: int = 64, scales: int = 4):
        super().__init__()
        self.scales = scales
        width = channels // scales
        self.reduce = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True))
        self.convs = nn.ModuleList(conv3(width, width) for _ in range(scales - 1))
        self.expand = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.chunk(self.reduce(x), self.scales, dim=1)
        outs = [splits[0]]
        prev = None
        for conv, s in zip(self.convs, splits[1:]):
            prev = conv(s if prev is None else s + prev)
            outs.append(prev)
        return F.relu(self.expand(torch.cat(outs, dim=1)) + x)


class Res2NetAutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(conv3(1, 32), conv3(32, 64), Res2NetBlock(64, 4))
        self.decoder = nn.Sequential(conv3(64, 64), conv3(64, 32), conv3(32, 16), conv3(16, 1, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def fuse_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    act_a = F.avg_pool2d(a.abs().sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False)
    act_b = F.avg_pool2d(b.abs().sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False)
    w_a = (act_a + EPS) / (act_a + act_b + 2 * EPS)
    return w_a * a + (1 - w_a) * b


def fuse_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    sa, sb = a.mean(1, keepdim=True), b.mean(1, keepdim=True)
    ws = (sa + EPS) / (sa + sb + 2 * EPS)
    ca, cb = a.mean((2, 3), keepdim=True), b.mean((2, 3), keepdim=True)
    wc = (ca + EPS) / (ca + cb + 2 * EPS)
    return 0.5 * (ws * a + (1 - ws) * b) + 0.5 * (wc * a + (1 - wc) * b)


STRATEGIES = {"l1": fuse_l1, "mean": fuse_mean}


class Res2NetFuse(nn.Module):
    """Fusion network: forward(ir, vis) -> fused, each N x 1 x H x W in [0, 1]."""

    def __init__(self, strategy: str = "l1"):
        super().__init__()
        self.strategy = strategy
        self.autoencoder = Res2NetAutoEncoder()

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        enc = self.autoencoder.encoder
        fused = STRATEGIES[self.strategy](enc(ir), enc(vis))
        return self.autoencoder.decoder(fused)


def build(variant: str = "l1") -> Res2NetFuse:
    return Res2NetFuse(strategy=variant)

"""TLGAN (Chen, Han, Tian, "Infrared and visible image fusion using two-layer generative
adversarial network", Journal of Intelligent & Fuzzy Systems 41(6), 2021, doi:10.3233/JIFS-210041).

No public code exists; this is built from the paper's description.

Three identical generators, each a 5-layer CNN without down-sampling: four 3x3 conv + BN +
LeakyReLU(0.2) layers and a 1x1 conv with tanh. They work in [-1, 1] (inputs x -> 2x - 1, output
tanh), as in FusionGAN, whose generator TLGAN follows.

- Layer 1: G1 is anchored on the IR (its content loss keeps the IR intensity, its discriminator D1
  judges it against the visible image); G2 is anchored on the visible image (D2 judges it against
  the IR).
- Layer 2: G3 takes G1's output and is judged by D3 against G2's output.
- Inference: fused = G3(G1(ir, vis), vis). G2 and the discriminators are needed only for training
  (they live in train/tlgan.py), so this module holds G1 and G3 only.

Our reading of the paper (stated because the paper leaves it open):
- Each generator sees two channels. The paper's wording ("one uses the IR image as input and the
  visible image as ground truth") would leave inference with one source only; we follow
  FusionGAN's practice of concatenating IR and visible so that inference fuses both:
  G1 gets [ir, vis], G2 gets [vis, ir] (anchor first).
- G3's input is [G1(ir, vis), vis]: channel 1 is layer 1's IR-anchored fused image, channel 2 is
  the visible image (in [-1, 1]). We chose the visible image rather than G2's output so that
  inference needs two generators, not three; G2's output reaches G3 only through D3 and G3's
  training targets (its gradient target, and in the shipped run half of its intensity anchor:
  ``g3_anchor: mean`` in train/tlgan.py says why).

Deviations and why:
- Channel widths 32, 32, 16, 16 (FusionGAN's generator, which TLGAN reuses, has 256, 128, 64, 32):
  the paper's full-width pair G3(G1(.)) would cost ~500 GFLOPs at 640x512 (ours: 22), far from
  real time on a CPU, and could not be trained on this shared CPU; see train/configs/tlgan.yaml.
- Zero "same" padding (FusionGAN pads the input and uses 'valid' convs): same output size for any
  input size without a pre-pad step, and it maps to every backend without a Pad op.
"""
from __future__ import annotations

import torch
from torch import nn

WIDTHS = (32, 32, 16, 16)


class Generator(nn.Module):
    """5-layer CNN, no down-sampling: 2 channels in [-1, 1] -> 1 channel in [-1, 1]."""

    def __init__(self, in_channels: int = 2, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in widths:
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers += [nn.Conv2d(cin, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, anchor: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([anchor, other], dim=1))


class TLGAN(nn.Module):
    """Fusion network: forward(ir, vis) -> fused, each N x 1 x H x W in [0, 1]."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.g1 = Generator(widths=widths)
        self.g3 = Generator(widths=widths)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        ir_s, vis_s = ir * 2 - 1, vis * 2 - 1
        f1 = self.g1(ir_s, vis_s)
        return (self.g3(f1, vis_s) + 1) / 2


def build(variant: str = "default") -> TLGAN:
    return TLGAN()

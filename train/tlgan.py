"""TLGAN training: three generator/discriminator pairs in two layers (see streamfuse/models/tlgan.py).

Per step, on a batch of aligned IR/visible patches (all images mapped to [-1, 1]):
- Layer 1: f1 = G1(ir, vis), judged by D1 against the visible image;
           f2 = G2(vis, ir), judged by D2 against the IR.
- Layer 2: f3 = G3(f1, vis), judged by D3 against f2. Layer-1 outputs enter layer 2 detached: layer 2
  treats them as data, so each generator is optimised by its own loss only.

Losses (least squares with soft labels, as in FusionGAN, which TLGAN builds on):
- D_k: mean((D(real) - b)^2) + mean((D(fake) - a)^2), with a ~ U(0, 0.3) (fake) and b ~ U(0.7, 1.2)
  (real) drawn per sample each step: the paper's soft labels.
- G_k: mean((D(fake) - c)^2), c ~ U(0.7, 1.2), plus zeta * content, zeta = 100, with
  content = ||f - anchor||_F^2 / HW + lam * mean| |grad f| - max(|grad a|, |grad b|) |, lam = 2,
  |grad| the Sobel magnitude, and
  G1: anchor ir, (a, b) = (ir, vis);  G2: anchor vis, (a, b) = (vis, ir);  G3: anchor f1, (a, b) = (f1, f2).

Two deviations from the paper, both in the content loss (why, with the measurements: docs/results.md,
"Training history"): the gradient term matches the Sobel magnitude of the stronger source edge per
pixel (L1) instead of FusionGAN's ||lap f - lap other||^2, and ``g3_anchor: mean`` anchors G3's
intensity on (f1 + f2) / 2 instead of f1 (``g3_anchor: f1``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from streamfuse.models.tlgan import TLGAN, Generator
from train import harness
from train.config import PairConfig
from train.losses import sobel_magnitude


@dataclass(kw_only=True)
class Config(PairConfig):
    lr_g: float
    lr_d: float
    beta1: float = 0.5  # Adam's first beta, generators and discriminators
    d_steps: int = 1  # discriminator updates per generator update
    zeta: float  # weight of the content loss against the adversarial loss
    lam: float  # weight of the gradient term inside the content loss
    g3_anchor: Literal["f1", "mean"] = "f1"  # G3's intensity anchor: G1's output, or the mean of G1's and G2's

REAL = (0.7, 1.2)
FAKE = (0.0, 0.3)


class Discriminator(nn.Module):
    """Four stride-2 3x3 conv + BN + LeakyReLU (no BN on the first, as in FusionGAN), then a linear layer."""

    def __init__(self, patch: int, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(widths):
            layers.append(nn.Conv2d(cin, cout, 3, stride=2, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        self.features = nn.Sequential(*layers)
        side = patch
        for _ in widths:
            side = (side + 1) // 2
        self.linear = nn.Linear(cin * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x).flatten(1))


def soft_labels(n: int, bounds: tuple[float, float], gen: torch.Generator, device) -> torch.Tensor:
    lo, hi = bounds
    return (lo + (hi - lo) * torch.rand(n, 1, generator=gen)).to(device)


def content_loss(f: torch.Tensor, anchor: torch.Tensor, a: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    """Intensity of ``anchor`` plus, per pixel, the stronger of the edges of ``a`` and ``b``."""
    target = torch.maximum(sobel_magnitude(a), sobel_magnitude(b))
    return F.mse_loss(f, anchor) + lam * F.l1_loss(sobel_magnitude(f), target)


class Trainer(harness.Trainer):
    """The three generators (G1 and G3 ship as TLGAN), three discriminators and one training step."""

    def __init__(self, cfg: Config, data, device: str):
        self.device = device
        self.zeta, self.lam = cfg.zeta, cfg.lam
        self.model = TLGAN().to(device)  # G1 and G3: what ships
        self.g2 = Generator().to(device)
        self.d = nn.ModuleList(Discriminator(cfg.patch) for _ in range(3)).to(device)
        betas = (cfg.beta1, 0.999)
        gens = [*self.model.parameters(), *self.g2.parameters()]
        self.opt_g = torch.optim.Adam(gens, lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=betas)
        self.d_steps = cfg.d_steps
        self.g3_anchor = cfg.g3_anchor
        self.modules = {"model": self.model, "g2": self.g2, "d": self.d}
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}
        self.shipped = self.model

    def generate(self, ir: torch.Tensor, vis: torch.Tensor):
        f1 = self.model.g1(ir, vis)
        f2 = self.g2(vis, ir)
        f3 = self.model.g3(f1.detach(), vis)
        return f1, f2, f3

    def losses_g(self, ir, vis, f1, f2, f3, gen: torch.Generator) -> dict:
        n = ir.shape[0]
        out = {}
        f2d = f2.detach()
        f1d = f1.detach()
        # (output, anchor, edge sources)
        g3_anchor = f1d if self.g3_anchor == "f1" else (f1d + f2d) / 2
        jobs = ((f1, ir, ir, vis), (f2, vis, vis, ir), (f3, g3_anchor, f1d, f2d))
        for k, (f, anchor, a, b) in enumerate(jobs, start=1):
            out[f"g{k}_adv"] = F.mse_loss(self.d[k - 1](f), soft_labels(n, REAL, gen, self.device))
            out[f"g{k}_content"] = content_loss(f, anchor, a, b, self.lam)
        out["g"] = sum(out[f"g{k}_adv"] + self.zeta * out[f"g{k}_content"] for k in (1, 2, 3))
        return out

    def losses_d(self, ir, vis, f1, f2, f3, gen: torch.Generator) -> dict:
        n = ir.shape[0]
        out = {}
        for k, (real, fake) in enumerate(((vis, f1), (ir, f2), (f2, f3)), start=1):
            d = self.d[k - 1]
            out[f"d{k}"] = (F.mse_loss(d(real.detach()), soft_labels(n, REAL, gen, self.device))
                            + F.mse_loss(d(fake.detach()), soft_labels(n, FAKE, gen, self.device)))
        out["d"] = out["d1"] + out["d2"] + out["d3"]
        return out

    def step(self, i, batch, rng, gen: torch.Generator) -> dict[str, float]:
        """One D update (d_steps times) and one G update on a batch in [0, 1]; returns the losses."""
        ir, vis = (t.to(self.device) * 2 - 1 for t in batch)
        self.model.train()
        self.g2.train()
        for _ in range(self.d_steps):
            with torch.no_grad():
                f1, f2, f3 = self.generate(ir, vis)
            ld = self.losses_d(ir, vis, f1, f2, f3, gen)
            self.opt_d.zero_grad(set_to_none=True)
            ld["d"].backward()
            self.opt_d.step()
        f1, f2, f3 = self.generate(ir, vis)
        lg = self.losses_g(ir, vis, f1, f2, f3, gen)
        self.opt_g.zero_grad(set_to_none=True)
        lg["g"].backward()
        self.opt_g.step()
        return {k: v.item() for k, v in {**lg, **ld}.items()}


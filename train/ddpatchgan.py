"""DDPatchGAN training: a U-Net generator (streamfuse/models/ddpatchgan.py) against two PatchGAN
discriminators, D_i for the infrared and D_v for the visible image, with LSGAN losses.

IR weight map: W = avg-pool of the IR patch to the discriminator's output size (one weight per
judged 70x70 patch, high where the scene is hot). It weights D_i's loss and the generator's
adversarial term against D_i, so the fight over thermal appearance happens where there are
thermal targets.

- L_Di = 1/2 mean(W (D_i(ir) - 1)^2) + 1/2 mean(W D_i(f)^2)
- L_Dv = 1/2 mean((D_v(vis) - 1)^2) + 1/2 mean(D_v(f)^2)
- L_G  = L_ssim + L_mse + gamma mean(W (D_i(f) - 1)^2) + lambda mean((D_v(f) - 1)^2),
  gamma = 0.1, lambda = 0.5.

Content terms (our reading: the paper names L_ssim and L_mse but not which source each is taken
against; the readings tried and why this one ships: docs/results.md, "Training history"):
- ``ssim_target: max_variance``: L_ssim = 1 - mean over 11x11 windows of SSIM(f, s), s the source
  with the larger local variance in that window (each window's structure from the source that has
  more of it); ``ssim_target: both``: 1 - (SSIM(f, ir) + SSIM(f, vis)) / 2;
- L_mse = ||f - ir||^2 / HW: intensity from the IR, so hot targets stay hot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from streamfuse.models.ddpatchgan import UNetGenerator
from train import harness
from train.config import PairConfig
from train.losses import ssim, ssim_max_variance


@dataclass(kw_only=True)
class Config(PairConfig):
    lr_g: float
    lr_d: float
    beta1: float = 0.5  # Adam's first beta
    gamma: float  # weight of the IR-weighted adversarial term (D_i)
    lam: float  # weight of the visible adversarial term (D_v)
    ssim_target: Literal["both", "max_variance"] = "both"


class PatchDiscriminator(nn.Module):
    """pix2pix's 70x70 PatchGAN layout: 4x4 convs with strides 2, 2, 2, 1, 1; BN from the second on.

    Deviation: widths 32-64-128-128 instead of 64-128-256-512, to train on a shared CPU; the
    receptive field (70x70), which is what makes it a PatchGAN, is unchanged.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(widths):
            stride = 2 if i < len(widths) - 1 else 1
            layers.append(nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def ir_weight_map(ir: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Average-pool the IR (N x 1 x H x W, [0, 1]) to the discriminator output size of ``like``."""
    return F.adaptive_avg_pool2d(ir, like.shape[-2:])


class Trainer(harness.Trainer):
    """The U-Net generator, the two PatchGAN discriminators and one training step."""

    def __init__(self, cfg: Config, data, device: str):
        self.device = device
        self.gamma, self.lam = cfg.gamma, cfg.lam
        self.ssim_target = cfg.ssim_target
        self.model = UNetGenerator().to(device)
        self.d_i = PatchDiscriminator().to(device)
        self.d_v = PatchDiscriminator().to(device)
        betas = (cfg.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam([*self.d_i.parameters(), *self.d_v.parameters()], lr=cfg.lr_d, betas=betas)
        self.modules = {"model": self.model, "d_i": self.d_i, "d_v": self.d_v}
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}
        self.shipped = self.model

    def losses_d(self, ir, vis, fused) -> dict:
        fused = fused.detach()
        real_i, fake_i = self.d_i(ir), self.d_i(fused)
        w = ir_weight_map(ir, real_i)
        d_i = 0.5 * (w * (real_i - 1) ** 2).mean() + 0.5 * (w * fake_i ** 2).mean()
        d_v = 0.5 * ((self.d_v(vis) - 1) ** 2).mean() + 0.5 * (self.d_v(fused) ** 2).mean()
        return {"d": d_i + d_v, "d_i": d_i, "d_v": d_v}

    def losses_g(self, ir, vis, fused) -> dict:
        fake_i = self.d_i(fused)
        w = ir_weight_map(ir, fake_i)
        if self.ssim_target == "both":
            structure = (ssim(fused, ir) + ssim(fused, vis)) / 2
        else:  # "max_variance"
            structure = ssim_max_variance(fused, ir, vis)
        out = {
            "ssim": 1 - structure,
            "mse": F.mse_loss(fused, ir),
            "adv_i": (w * (fake_i - 1) ** 2).mean(),
            "adv_v": ((self.d_v(fused) - 1) ** 2).mean(),
        }
        out["g"] = out["ssim"] + out["mse"] + self.gamma * out["adv_i"] + self.lam * out["adv_v"]
        return out

    def step(self, i, batch, rng, gen) -> dict[str, float]:
        """One D update and one G update on a batch in [0, 1]; returns the losses."""
        ir, vis = (t.to(self.device) for t in batch)
        self.model.train()
        fused = self.model(ir, vis)
        ld = self.losses_d(ir, vis, fused)
        self.opt_d.zero_grad(set_to_none=True)
        ld["d"].backward()
        self.opt_d.step()
        lg = self.losses_g(ir, vis, fused)
        self.opt_g.zero_grad(set_to_none=True)
        lg["g"].backward()
        self.opt_g.step()
        return {k: v.item() for k, v in {**lg, **ld}.items()}


"""DDcGAN training (Xu, Ma et al., IJCAI 2019; see streamfuse/models/ddcgan.py for the generator).

Per step, on a batch of aligned random patches (IR i at full patch size, visible v):
- Multi-resolution step (the paper): the generator gets the IR down-sampled 4x (psi = two 2x2
  average-poolings, the same operator the loss uses) and the full-size visible patch.
  Content loss  L_con = ||psi f - psi i||_F^2 + eta ||f - v||_TV.
- Same-resolution step (a fraction ``same_res_fraction`` of the steps; the TIP 2020 version): the
  generator gets the full-size IR; L_con = ||f - i||_F^2 + eta ||f - v||_TV.
- Both norms are sums over the patch's pixels (averaged over the batch), as the paper writes them
  and the authors' code computes them: lambda weighs a sum against the adversarial loss, so with
  per-pixel means lambda 0.8 would weigh the content ~400x (intensity, 21x21 values) to ~7000x
  (TV, 84x84) less than the paper does.
- D_v judges the gradient (4-neighbour Laplacian, train/losses.gradient) of f against that of v;
  D_i judges psi f against the low-resolution IR psi i. Non-saturating GAN losses:
  L_D = -log D(real) - log(1 - D(fake)); generator L_adv = -log D_v(grad f) - log D_i(psi f);
  L_G = L_adv + lambda L_con.
- Balance rule of the paper: after the regular update of D_v and D_i, a discriminator whose loss is
  still above ``d_max`` (it fails to tell real from fused) gets extra updates (at most
  ``max_extra_d``); after the regular generator update, while its adversarial loss is above
  ``g_max`` (the discriminators win) the generator gets extra updates (at most ``max_extra_g``).
- Optimiser RMSprop for G and both D, lr 0.002 with exponential decay (the paper's rate),
  lr = lr0 * decay_rate ** (step / decay_steps). Its running mean square starts at 1, as in the
  TensorFlow 1 optimiser of the authors' code (``tf_rmsprop``): torch's starts at 0, which makes the
  first updates ~10x lr per weight, and at lr 0.002 the discriminators diverged within 3 steps.
- ``tv_target``: ``vis`` is the paper's term; ``stronger`` (an option, not the paper's) pulls the
  fused gradient towards, per pixel, the stronger of the visible's and the seen IR's gradients
  (content_loss), so texture only the IR shows is kept. Earlier runs with it: docs/results.md,
  "Training history".
- ``validation_loss``: the paper's content loss on fixed 256x256 crops of the training split (never
  the evaluation pairs), for ``select_by_validation``.
- ``warmup_steps``: the first steps train G on L_con alone (no adversarial term, no D updates); 0 in
  the paper's schedule.

Discriminators: three 3x3 stride-2 convs (16, 32, 64 channels) with LeakyReLU 0.2, global average
pooling and a linear layer giving a logit. The authors' discriminators end in a dense layer over the
flattened map (fixed patch size); global pooling lets one D judge any patch size. No BatchNorm in D,
so real and fused batches never share batch statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamfuse.models.ddcgan import VARIANT_RATIO, DDcGANGenerator
from train import harness
from train.config import PairConfig
from train.losses import gradient, stronger_gradient


@dataclass(kw_only=True)
class Config(PairConfig):
    warmup_steps: int = 0  # the first steps train G on the content loss alone (no D)
    same_res_fraction: float  # share of steps with a full-size IR (variant x1, same weights)
    lam: float  # lambda, weight of the content loss against the adversarial loss
    eta: float  # weight of the gradient (TV) term inside the content loss
    tv_target: Literal["vis", "stronger"] = "vis"
    lr: float
    decay_rate: float  # lr = lr0 * decay_rate ** (step / decay_steps)
    decay_steps: int
    d_max: float  # a D loss above this: D fails, gets extra updates
    g_max: float  # G's adversarial loss above this: D wins, G gets extra updates
    max_extra_d: int  # extra updates of a failing D per step at most
    max_extra_g: int  # extra G updates per step at most while D wins
    val_batch: int = 16  # validation crops of the training split (select_by_validation)
    val_patch: int = 256


class Discriminator(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        layers, cin = [], 1
        for cout in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3))).squeeze(1)  # logit


def psi(x: torch.Tensor) -> torch.Tensor:
    """The paper's down-sampling operator: two 2x2 average-poolings (1/4 size)."""
    return F.avg_pool2d(F.avg_pool2d(x, 2), 2)


def image_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over each image's pixels, mean over the batch."""
    return x.flatten(1).sum(1).mean()


def tv_norm(x: torch.Tensor) -> torch.Tensor:
    """Isotropic total variation: sum of sqrt(dx^2 + dy^2) over each image, mean over the batch."""
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    return image_sum(torch.sqrt(dx * dx + dy * dy + 1e-8))


def gradient_distance(f: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Sum of |grad f - (gx, gy)| over each image (forward differences, as tv_norm), mean over the batch."""
    dx = f[:, :, :-1, 1:] - f[:, :, :-1, :-1] - gx
    dy = f[:, :, 1:, :-1] - f[:, :, :-1, :-1] - gy
    return image_sum(torch.sqrt(dx * dx + dy * dy + 1e-8))


def content_loss(f: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor, ratio: int, eta: float,
                 tv_target: str = "vis"):
    """(L_con, intensity term, gradient term); ``ir`` is the full-size IR patch.

    tv_target "vis" is the paper's ||f - v||_TV. "stronger": the gradient of f is pulled towards, per
    pixel, the stronger of the visible's and the IR's gradient (of the IR the generator sees: psi(ir)
    bilinearly up-sampled in the x4 step), so texture only the IR shows is kept too.
    """
    intensity = image_sum((psi(f) - psi(ir)) ** 2) if ratio == 4 else image_sum((f - ir) ** 2)
    if tv_target == "vis":
        tv = tv_norm(f - vis)
    elif tv_target == "stronger":
        ir_seen = F.interpolate(psi(ir), size=ir.shape[-2:], mode="bilinear", align_corners=False) if ratio == 4 else ir
        tv = gradient_distance(f, *stronger_gradient(vis, ir_seen))
    else:
        raise ValueError(f"tv_target: expected 'vis' or 'stronger', got {tv_target!r}")
    return intensity + eta * tv, intensity, tv


def d_loss(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    real_logit, fake_logit = d(real), d(fake)
    return (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
            + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))


def g_adv_loss(dv: nn.Module, di: nn.Module, f: torch.Tensor) -> torch.Tensor:
    lv, li = dv(gradient(f)), di(psi(f))
    return (F.binary_cross_entropy_with_logits(lv, torch.ones_like(lv))
            + F.binary_cross_entropy_with_logits(li, torch.ones_like(li)))


def tf_rmsprop(module: nn.Module, lr: float) -> torch.optim.RMSprop:
    """RMSprop whose running mean square starts at 1 (TensorFlow 1's RMSPropOptimizer; decay 0.9, eps 1e-10)."""
    opt = torch.optim.RMSprop(module.parameters(), lr=lr, alpha=0.9, eps=1e-10)
    for p in module.parameters():
        opt.state[p] = {"step": torch.tensor(0.0), "square_avg": torch.ones_like(p, memory_format=torch.preserve_format)}
    return opt


class Trainer(harness.Trainer):
    """The three networks, their optimisers and one training step."""

    def __init__(self, cfg: Config, data, device: str):
        self.cfg, self.data, self.device = cfg, data, device
        self.g = DDcGANGenerator(ratio=4).to(device)
        self.dv = Discriminator().to(device)
        self.di = Discriminator().to(device)
        self.opt_g = tf_rmsprop(self.g, cfg.lr)
        self.opt_dv = tf_rmsprop(self.dv, cfg.lr)
        self.opt_di = tf_rmsprop(self.di, cfg.lr)
        self.optimizers = {"g": self.opt_g, "dv": self.opt_dv, "di": self.opt_di}
        self.modules = {"g": self.g, "dv": self.dv, "di": self.di}
        self.shipped = self.g
        self.val_batch = None

    def set_lr(self, step: int) -> float:
        lr = self.cfg.lr * self.cfg.decay_rate ** (step / self.cfg.decay_steps)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        return lr

    def generator_input(self, ir: torch.Tensor, ratio: int) -> torch.Tensor:
        self.g.ratio = ratio
        return psi(ir) if ratio == 4 else ir

    def g_losses(self, ir: torch.Tensor, vis: torch.Tensor, ratio: int, adversarial: bool):
        f = self.g(self.generator_input(ir, ratio), vis)
        con, intensity, tv = content_loss(f, ir, vis, ratio, self.cfg.eta, self.cfg.tv_target)
        adv = g_adv_loss(self.dv, self.di, f) if adversarial else torch.zeros((), device=f.device)
        return f, adv + self.cfg.lam * con, adv, con, intensity, tv

    def g_update(self, ir, vis, ratio, adversarial):
        out = self.g_losses(ir, vis, ratio, adversarial)
        self.opt_g.zero_grad(set_to_none=True)
        out[1].backward()
        self.opt_g.step()
        return out

    def d_update(self, d, opt, real, fake) -> float:
        loss = d_loss(d, real, fake)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    def step(self, i, batch, rng, gen) -> dict[str, float]:
        lr = self.set_lr(i)
        ratio = 1 if rng.random() < self.cfg.same_res_fraction else 4
        return {"lr": lr, **self.update(*batch, ratio, adversarial=i >= self.cfg.warmup_steps)}

    def update(self, ir: torch.Tensor, vis: torch.Tensor, ratio: int, adversarial: bool = True) -> dict:
        """D updates (with the balance rule's extras), then G updates, on one batch."""
        cfg = self.cfg
        ir, vis = ir.to(self.device), vis.to(self.device)
        extra_d = extra_g = 0
        loss_dv = loss_di = float("nan")
        if adversarial:
            with torch.no_grad():
                f = self.g(self.generator_input(ir, ratio), vis)
            real_v, fake_v = gradient(vis), gradient(f)
            real_i, fake_i = psi(ir), psi(f)
            loss_dv = self.d_update(self.dv, self.opt_dv, real_v, fake_v)
            loss_di = self.d_update(self.di, self.opt_di, real_i, fake_i)
            # D fails to tell real from fused: train it more (the paper's balance rule)
            for _ in range(cfg.max_extra_d):
                if loss_dv <= cfg.d_max and loss_di <= cfg.d_max:
                    break
                if loss_dv > cfg.d_max:
                    loss_dv = self.d_update(self.dv, self.opt_dv, real_v, fake_v)
                    extra_d += 1
                if loss_di > cfg.d_max:
                    loss_di = self.d_update(self.di, self.opt_di, real_i, fake_i)
                    extra_d += 1
        f, loss_g, adv, con, intensity, tv = self.g_update(ir, vis, ratio, adversarial)
        # D wins: train G more
        while adversarial and adv.item() > cfg.g_max and extra_g < cfg.max_extra_g:
            f, loss_g, adv, con, intensity, tv = self.g_update(ir, vis, ratio, adversarial)
            extra_g += 1
        return {"ratio": ratio, "loss_g": loss_g.item(), "adv_g": adv.item(), "con": con.item(), "int": intensity.item(),
                "tv": tv.item(), "loss_dv": loss_dv, "loss_di": loss_di, "extra_d": extra_d, "extra_g": extra_g}

    def validation_loss(self, module: DDcGANGenerator) -> float:
        """The paper's content loss (x4, eval mode) on ``val_batch`` fixed ``val_patch`` crops of the training split."""
        if self.val_batch is None:
            self.val_batch = self.data.pairs.sample_batch(self.cfg.val_batch, self.cfg.val_patch,
                                                          np.random.default_rng(self.cfg.seed + 1))
        ir, vis = self.val_batch
        module.eval()
        module.ratio = 4
        with torch.no_grad():
            return float(content_loss(module(psi(ir), vis), ir, vis, 4, self.cfg.eta, self.cfg.tv_target)[0])

    def export_module(self, variant: str) -> DDcGANGenerator:
        self.g.ratio = VARIANT_RATIO[variant]
        return self.g

"""PyrFuse training: the weight network learns, per position, how much of the IR goes into the
pyramid's base; the pyramid and the choose-max details have no parameters.

Loss on the fused patch f (a loss of this project's design, after the intensity/texture losses
that SeAFusion and PIAFusion popularised):
- intensity: |f - max(ir, vis)|_1, so the base keeps the brighter source (hot targets on a dark
  visible background stay bright; lit visible areas stay lit);
- texture: | |grad f| - max(|grad ir|, |grad vis|) |_1 (Sobel magnitudes), so base transitions do
  not flatten edges that either source has.
Random per-source gains on the crops stand in for the night scenes and exposures the training split
lacks (train/datasets.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from streamfuse.models.pyrfuse import PyrFuse
from train import harness
from train.config import PairConfig
from train.losses import sobel_magnitude


@dataclass(kw_only=True)
class Config(PairConfig):
    width: int = 16  # channels of the weight network
    lr: float
    texture_weight: float = 1.0


def fusion_loss(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor, texture_weight: float) -> dict:
    intensity = (fused - torch.maximum(ir, vis)).abs().mean()
    target = torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis))
    texture = (sobel_magnitude(fused) - target).abs().mean()
    return {"loss": intensity + texture_weight * texture, "intensity": intensity, "texture": texture}


class Trainer(harness.Trainer):
    def __init__(self, cfg: Config, data, device: str):
        self.cfg, self.device = cfg, device
        self.model = PyrFuse(width=cfg.width).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.modules, self.optimizers, self.shipped = {"model": self.model}, {"opt": self.opt}, self.model

    def step(self, i, batch, rng, gen) -> dict[str, float]:
        # cosine decay: a function of the step alone, so a resumed run stays exact
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * 0.5 * (1 + math.cos(math.pi * min(i, self.cfg.steps) / self.cfg.steps))
        ir, vis = (t.to(self.device) for t in batch)
        losses = fusion_loss(self.model(ir, vis), ir, vis, self.cfg.texture_weight)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.opt.step()
        return {k: v.item() for k, v in losses.items()}

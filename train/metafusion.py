"""MetaFusion training (Li et al., TIP 2021), Wald's protocol as in the paper and the authors' code.

Each step draws aligned high-resolution (HR) IR/visible patches, down-samples each source by its own
random scale (bicubic with antialiasing) to make the network's inputs, and asks for the fused image
and both super-resolved sources at the HR size. Scales come from ``ir_scales`` / ``vis_scales``
(the paper draws r from U[1, 3] in steps of 0.1, see ``metafusion_paper.yaml``). The CPU config
uses values with patch / r an integer, whose meta-weights repeat with a short period (cheap), adds
4 (a 160x120 thermal core next to a 640x480 camera) and keeps the visible at full size half of
the time, as it is at fusion time.

Loss, phase 1 (``steps``): the paper's L1 pixel loss with four terms,
    |ir_sr - IR| + |vis_sr - VIS| + |fused - IR| + |fused - VIS|.
There is no fused ground truth: as in the authors' code the fused output is pulled towards both
HR sources, which leaves it free anywhere between them; the architecture (max selection) and the
contrast loss decide where.
Phase 2 (``finetune_steps``): the same plus lambda * contrast loss (lambda = 0.005), in the form
of the perceptual contrast-enhancement energy the paper builds on, per pixel p:
    (f_p - (IR_p + VIS_p) / 2)^2  -  sum over partners q of w_pq |f_p - f_q|,
    w_pq = 1 / (|p - q| (1 - tanh((|IR_p - IR_q| + |VIS_p - VIS_q|) / 2)) + 1e-4),
averaged over the pixels. Made tractable with local windows: the partners of p are the pixels
within R = ``contrast_radius`` (a (2R+1)^2 window, 1/|p - q| makes far pairs weigh little), and
the sum over them is estimated from ``contrast_offsets`` offsets drawn per step (scaled by
window size / offsets). The authors' code instead takes all pairs of a 10x10 thumbnail of the
centre crop and detaches the contrast sum, so that only the distance-to-average term is trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from streamfuse.models.metafusion import VARIANT_SCALES, MetaFusion
from train import harness
from train.config import PairConfig


@dataclass(kw_only=True)
class Config(PairConfig):
    channels: int  # feature width c (the first conv gives 2c channels; the paper: 32)
    blocks: int  # feature extraction blocks per source
    rcms: int  # residual compensation modules
    ir_scales: list[float]  # the IR input is the HR patch down-scaled by one of these
    vis_scales: list[float]
    vis_full_prob: float  # share of steps with the visible at full size
    lr: float
    meta_lr_mult: float  # lr of the meta-weight MLPs = lr x this
    weight_decay: float
    finetune_steps: int  # phase 2 after ``steps``: + contrast loss
    contrast_lambda: float
    contrast_radius: int
    contrast_offsets: int  # partners q drawn per step from the (2R+1)^2 window

    def total_steps(self) -> int:
        return self.steps + self.finetune_steps


def lr_size(patch: int, r: float) -> int:
    """Input size for scale r; the model takes the true ratio from the sizes (patch / size)."""
    return max(1, int(round(patch / r)))


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    if size == x.shape[-1]:
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def draw_scales(cfg: Config, rng: np.random.Generator) -> tuple[float, float]:
    r_ir = float(rng.choice(cfg.ir_scales))
    r_vis = 1.0 if rng.random() < cfg.vis_full_prob else float(rng.choice(cfg.vis_scales))
    return r_ir, r_vis


def draw_offsets(radius: int, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    window = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if (dy, dx) != (0, 0)]
    return [window[i] for i in rng.choice(len(window), size=count, replace=False)]


def _pairs(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x_p and x_{p + (dy, dx)} over every p where both are inside the image."""
    h, w = x.shape[-2:]
    p = x[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    q = x[..., max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return p, q


def contrast_loss(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor, offsets, radius: int) -> torch.Tensor:
    """Distance to the sources' average minus the source-weighted local contrast (see the module docstring)."""
    closeness = ((fused - 0.5 * (ir + vis)) ** 2).mean()
    contrast = fused.new_zeros(())
    for dy, dx in offsets:
        fp, fq = _pairs(fused, dy, dx)
        ap, aq = _pairs(ir, dy, dx)
        bp, bq = _pairs(vis, dy, dx)
        weight = 1.0 / (math.hypot(dy, dx) * (1 - torch.tanh(((ap - aq).abs() + (bp - bq).abs()) / 2)) + 1e-4)
        contrast = contrast + (weight * (fp - fq).abs()).mean()
    # unbiased estimate of the sum over all partners q in the window from the sampled offsets
    window = (2 * radius + 1) ** 2 - 1
    return closeness - contrast * window / len(offsets)


def compute_losses(model: MetaFusion, ir_hr, vis_hr, r_ir: float, r_vis: float, lam: float = 0.0, offsets=(),
                   radius: int = 7) -> dict:
    """Forward one Wald's-protocol batch; returns the loss terms and their total under "loss"."""
    patch = ir_hr.shape[-1]
    ir_in, vis_in = downsample(ir_hr, lr_size(patch, r_ir)), downsample(vis_hr, lr_size(patch, r_vis))
    fused, ir_sr, vis_sr = model.run(ir_in, vis_in, ir_hr.shape[-2:])
    out = {"sr": F.l1_loss(ir_sr, ir_hr) + F.l1_loss(vis_sr, vis_hr),
           "fuse": F.l1_loss(fused, ir_hr) + F.l1_loss(fused, vis_hr)}
    out["loss"] = out["sr"] + out["fuse"]
    if lam:
        out["contrast"] = contrast_loss(fused, ir_hr, vis_hr, offsets, radius)
        out["loss"] = out["loss"] + lam * out["contrast"]
    return out


def build_model(cfg: Config) -> MetaFusion:
    return MetaFusion(channels=cfg.channels, blocks=cfg.blocks, rcms=cfg.rcms)


def make_optimizer(model: MetaFusion, cfg: Config) -> torch.optim.Adam:
    """Adam; the meta-weight MLPs at ``meta_lr_mult`` x lr: each of their last-layer weights moves a
    whole predicted conv kernel, and at the full lr the first steps diverged (loss 1.7 -> 4.5)."""
    meta = [p for name, p in model.named_parameters() if ".mlp." in name]
    rest = [p for name, p in model.named_parameters() if ".mlp." not in name]
    return torch.optim.Adam([{"params": rest, "lr": cfg.lr}, {"params": meta, "lr": cfg.lr * cfg.meta_lr_mult}],
                            weight_decay=cfg.weight_decay)


class Trainer(harness.Trainer):
    """The model, its optimiser and one step of phase 1 (pixel loss) or phase 2 (+ contrast loss)."""

    def __init__(self, cfg: Config, data, device: str):
        self.cfg, self.data, self.device = cfg, data, device
        self.model = build_model(cfg).to(device).train()
        self.opt = make_optimizer(self.model, cfg)
        self.modules, self.optimizers, self.shipped = {"model": self.model}, {"opt": self.opt}, self.model

    def step(self, i, batch, rng, gen) -> dict[str, float]:
        cfg = self.cfg
        ir_hr, vis_hr = (t.to(self.device) for t in batch)
        r_ir, r_vis = draw_scales(cfg, rng)
        lam = cfg.contrast_lambda if i >= cfg.steps else 0.0
        offsets = draw_offsets(cfg.contrast_radius, cfg.contrast_offsets, rng) if lam else ()
        losses = compute_losses(self.model, ir_hr, vis_hr, r_ir, r_vis, lam, offsets, cfg.contrast_radius)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.opt.step()
        return {"loss": losses["loss"].item(), "sr": losses["sr"].item(), "fuse": losses["fuse"].item(),
                "contrast": losses["contrast"].item() if lam else float("nan"), "r_ir": r_ir, "r_vis": r_vis}

    def final_metrics(self) -> dict:
        """Loss terms on one fixed batch (seed 0) at IR scales 1, 2 and 4 with the visible at full size."""
        cfg = self.cfg
        rng = np.random.default_rng(0)
        ir_hr, vis_hr = (t.to(self.device) for t in self.data.pairs.sample_batch(8, cfg.patch, rng))
        offsets = draw_offsets(cfg.contrast_radius, cfg.contrast_offsets, rng)
        self.model.train()  # plain forward (no frozen weights)
        out = {}
        with torch.no_grad():
            for r in (1, 2, 4):
                terms = compute_losses(self.model, ir_hr, vis_hr, r, 1.0, cfg.contrast_lambda, offsets, cfg.contrast_radius)
                out.update({f"{k}_x{r}": round(v.item(), 5) for k, v in terms.items()})
        return out

    def export_module(self, variant: str) -> MetaFusion:
        """A copy with the meta-weights frozen for the variant's IR scale (same weights)."""
        module = build_model(self.cfg).freeze(VARIANT_SCALES[variant])
        module.load_state_dict({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        return module

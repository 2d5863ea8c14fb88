"""DDcGAN training (Xu, Ma et al., IJCAI 2019; see streamfuse/models/ddcgan.py for the generator).

Per step, on a batch of aligned random patches (IR i at full patch size, visible v):
- Multi-resolution step (the paper): the generator gets the IR down-sampled 4x (psi = two 2x2
  average-poolings, the same operator the loss uses) and the full-size visible patch.
  Content loss  L_con = ||psi f - psi i||_F^2 / (h w) + eta ||f - v||_TV / (H W).
- Same-resolution step (a fraction ``same_res_fraction`` of the steps; the TIP 2020 version): the
  generator gets the full-size IR; L_con = ||f - i||_F^2 / (H W) + eta ||f - v||_TV / (H W).
- D_v judges the gradient (4-neighbour Laplacian, train/losses.gradient) of f against that of v;
  D_i judges psi f against the low-resolution IR psi i. Non-saturating GAN losses:
  L_D = -log D(real) - log(1 - D(fake)); generator L_adv = -log D_v(grad f) - log D_i(psi f);
  L_G = L_adv + lambda L_con.
- Balance rule of the paper: after the regular update of D_v and D_i, a discriminator whose loss is
  still above ``d_max`` (it fails to tell real from fused) gets extra updates; after the regular
  generator update, while its adversarial loss is above ``g_max`` (the discriminators win) the
  generator gets extra updates; each at most ``max_extra`` times per step.
- Optimiser RMSprop for G and both D, lr 0.002 with exponential decay (the paper's rate),
  lr = lr0 * decay_rate ** (step / decay_steps).
- lambda 20 in the CPU config instead of the paper's 0.8: the reason and the measurement are in
  train/configs/ddcgan.yaml.
- ``tv_target: stronger`` in the CPU config (the paper: ``vis``): the gradient term pulls the fused
  gradient towards, per pixel, the stronger of the visible's and the seen IR's gradients
  (content_loss); with the paper's term the fused image lost the texture only the IR shows and beat
  max fusion on none of the 8 metrics over the 74 evaluation pairs (train/configs/ddcgan.yaml).
  ``gain_range``: random per-source gains on the crops (train/datasets.py).
- The generator snapshot with the lowest content loss on fixed 256x256 crops of the training split
  is shipped (``select_by_validation``); the evaluation pairs are never looked at.
- ``warmup_steps``: the first steps train G on L_con alone (no adversarial term, no D updates), a
  CPU-schedule addition so that the short adversarial phase starts from a sensible fusion instead of
  noise; 0 in the paper config.

Discriminators: three 3x3 stride-2 convs (16, 32, 64 channels) with LeakyReLU 0.2, global average
pooling and a linear layer giving a logit. The authors' discriminators end in a dense layer over the
flattened map (fixed patch size); global pooling lets one D judge any patch size. No BatchNorm in D,
so real and fused batches never share batch statistics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from streamfuse.export.onnx import export_onnx
from streamfuse.models.ddcgan import VARIANT_RATIO, DDcGANGenerator
from train.common import REPO, LossLog, TrainClock, load_checkpoint, save_checkpoint, seed_everything, write_record
from train.datasets import PairDataset
from train.losses import gradient, stronger_gradient

LOG_FIELDS = ["lr", "ratio", "loss_g", "adv_g", "con", "int", "tv", "loss_dv", "loss_di", "extra_d", "extra_g"]


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


def tv_norm(x: torch.Tensor) -> torch.Tensor:
    """Isotropic total variation per pixel: mean of sqrt(dx^2 + dy^2)."""
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    return torch.sqrt(dx * dx + dy * dy + 1e-8).mean()


def gradient_distance(f: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Mean of |grad f - (gx, gy)| per pixel (forward differences, as tv_norm)."""
    dx = f[:, :, :-1, 1:] - f[:, :, :-1, :-1] - gx
    dy = f[:, :, 1:, :-1] - f[:, :, :-1, :-1] - gy
    return torch.sqrt(dx * dx + dy * dy + 1e-8).mean()


def content_loss(f: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor, ratio: int, eta: float,
                 tv_target: str = "vis"):
    """(L_con, intensity term, gradient term); ``ir`` is the full-size IR patch.

    tv_target "vis" is the paper's ||f - v||_TV. "stronger": the gradient of f is pulled towards, per
    pixel, the stronger of the visible's and the IR's gradient (of the IR the generator sees: psi(ir)
    bilinearly up-sampled in the x4 step), so texture only the IR shows is kept too.
    """
    intensity = F.mse_loss(psi(f), psi(ir)) if ratio == 4 else F.mse_loss(f, ir)
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


class Trainer:
    """The three networks, their optimisers and one training step (also used by the tests)."""

    def __init__(self, cfg: dict, device: str = "cpu"):
        self.cfg = cfg
        self.device = device
        self.g = DDcGANGenerator(ratio=4).to(device)
        self.dv = Discriminator().to(device)
        self.di = Discriminator().to(device)
        lr = float(cfg["lr"])
        self.opt_g = torch.optim.RMSprop(self.g.parameters(), lr=lr)
        self.opt_dv = torch.optim.RMSprop(self.dv.parameters(), lr=lr)
        self.opt_di = torch.optim.RMSprop(self.di.parameters(), lr=lr)
        self.optimizers = {"g": self.opt_g, "dv": self.opt_dv, "di": self.opt_di}
        self.modules = {"g": self.g, "dv": self.dv, "di": self.di}

    def set_lr(self, step: int) -> float:
        lr = float(self.cfg["lr"]) * float(self.cfg["decay_rate"]) ** (step / float(self.cfg["decay_steps"]))
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        return lr

    def generator_input(self, ir: torch.Tensor, ratio: int) -> torch.Tensor:
        self.g.ratio = ratio
        return psi(ir) if ratio == 4 else ir

    def g_losses(self, ir: torch.Tensor, vis: torch.Tensor, ratio: int, adversarial: bool):
        f = self.g(self.generator_input(ir, ratio), vis)
        con, intensity, tv = content_loss(f, ir, vis, ratio, float(self.cfg["eta"]), self.cfg.get("tv_target", "vis"))
        adv = g_adv_loss(self.dv, self.di, f) if adversarial else torch.zeros((), device=f.device)
        return f, adv + float(self.cfg["lam"]) * con, adv, con, intensity, tv

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

    def step(self, ir: torch.Tensor, vis: torch.Tensor, ratio: int, adversarial: bool = True) -> dict:
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
            for _ in range(int(cfg["max_extra"])):
                if loss_dv <= cfg["d_max"] and loss_di <= cfg["d_max"]:
                    break
                if loss_dv > cfg["d_max"]:
                    loss_dv = self.d_update(self.dv, self.opt_dv, real_v, fake_v)
                    extra_d += 1
                if loss_di > cfg["d_max"]:
                    loss_di = self.d_update(self.di, self.opt_di, real_i, fake_i)
                    extra_d += 1
        f, loss_g, adv, con, intensity, tv = self.g_update(ir, vis, ratio, adversarial)
        # D wins: train G more
        while adversarial and adv.item() > cfg["g_max"] and extra_g < int(cfg["max_extra"]):
            f, loss_g, adv, con, intensity, tv = self.g_update(ir, vis, ratio, adversarial)
            extra_g += 1
        return {"ratio": ratio, "loss_g": loss_g.item(), "adv_g": adv.item(), "con": con.item(), "int": intensity.item(),
                "tv": tv.item(), "loss_dv": loss_dv, "loss_di": loss_di, "extra_d": extra_d, "extra_g": extra_g}


def final_losses(log_path: Path, window: int) -> dict:
    """Mean of each loss over the logged multi-resolution steps within the last ``window`` steps."""
    import csv

    with log_path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    last = int(rows[-1]["step"])
    rows = [r for r in rows if int(r["step"]) > last - window and r["ratio"] == "4"]
    keys = ("loss_g", "adv_g", "con", "int", "tv", "loss_dv", "loss_di")
    return {k: float(np.nanmean([float(r[k]) for r in rows])) if rows else float("nan") for k in keys}


def validation_loss(g: DDcGANGenerator, ir: torch.Tensor, vis: torch.Tensor, eta: float, tv_target: str) -> float:
    g.eval()
    g.ratio = 4
    with torch.no_grad():
        return float(content_loss(g(psi(ir), vis), ir, vis, 4, eta, tv_target)[0])


def train(cfg: dict, device: str, run_dir: Path, out_dir: Path, resume: bool = False) -> None:
    torch.set_num_threads(int(cfg.get("threads", 1)))
    seed_everything(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    data = PairDataset(cfg["data_root"], cfg.get("datasets"))
    trainer = Trainer(cfg, device)
    ckpt = run_dir / "checkpoint.pt"
    start, spent = 0, 0.0
    if resume and ckpt.exists():
        start = load_checkpoint(ckpt, trainer.modules, trainer.optimizers)
        extra = torch.load(ckpt, map_location="cpu", weights_only=False)
        rng.bit_generator.state = extra["batch_rng"]
        spent = float(extra["train_seconds"])
    log = LossLog(run_dir / "losses.csv", LOG_FIELDS)
    steps, batch, patch = int(cfg["steps"]), int(cfg["batch_size"]), int(cfg["patch"])
    clock = TrainClock(cfg, spent)
    step = start
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="ddcgan", unit="step")
    for step in bar:
        lr = trainer.set_lr(step)
        ir, vis = data.sample_batch(batch, patch, rng, cfg.get("gain_range"))
        ratio = 1 if rng.random() < float(cfg["same_res_fraction"]) else 4
        values = trainer.step(ir, vis, ratio, adversarial=step >= int(cfg["warmup_steps"]))
        if (step + 1) % int(cfg["log_every"]) == 0 or step + 1 == steps:
            log.write(step + 1, {"lr": lr, **values})
            bar.set_postfix(g=f"{values['loss_g']:.3f}", con=f"{values['con']:.4f}", dv=f"{values['loss_dv']:.2f}",
                            di=f"{values['loss_di']:.2f}")
        done = step + 1
        out_of_time = clock.out_of_time("ddcgan", done)
        if done % int(cfg["checkpoint_every"]) == 0 or done == steps or out_of_time:
            save_checkpoint(ckpt, done, trainer.modules, trainer.optimizers,
                            {"batch_rng": rng.bit_generator.state, "train_seconds": clock.seconds()})
        if done % int(cfg["snapshot_every"]) == 0:  # generator-only snapshots, to see how training evolves
            torch.save(trainer.g.state_dict(), run_dir / f"g_{done:05d}.pt")
        if out_of_time:
            break
    else:
        done = steps
    log.close()
    seconds = clock.seconds()
    final = final_losses(run_dir / "losses.csv", int(cfg["final_window"]))

    # Early stopping on the paper's objective: the generator snapshot (or the final weights) with the
    # lowest content loss on fixed full-context 256x256 crops of the training split is shipped.
    g = trainer.g.cpu().eval()
    val_ir, val_vis = data.sample_batch(int(cfg["val_batch"]), int(cfg["val_patch"]), np.random.default_rng(int(cfg["seed"]) + 1))
    candidates = {int(p.stem[2:]): torch.load(p, map_location="cpu", weights_only=True) for p in sorted(run_dir.glob("g_*.pt"))}
    candidates[done] = {k: v.clone() for k, v in g.state_dict().items()}
    validation = {}
    for snap_step, state in candidates.items():
        g.load_state_dict(state)
        validation[snap_step] = validation_loss(g, val_ir, val_vis, float(cfg["eta"]), cfg.get("tv_target", "vis"))
    shipped_step = min(validation, key=validation.get) if cfg.get("select_by_validation") else done
    g.load_state_dict(candidates[shipped_step])

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(g.state_dict(), out_dir / "ddcgan.pt")
    onnx_files = []
    for variant, ratio in VARIANT_RATIO.items():
        g.ratio = ratio
        stem = "ddcgan" if variant == "x4" else f"ddcgan-{variant}"
        onnx_files.append(export_onnx("ddcgan", variant, out=out_dir / f"{stem}.onnx", module=g).name)
    g.ratio = 4
    counts: dict[str, int] = {}
    for name in data.names():
        counts[name.split("/")[0]] = counts.get(name.split("/")[0], 0) + 1
    write_record("ddcgan", cfg, out_dir, {
        "data": {"root": str(cfg["data_root"]), "pairs": len(data), "pairs_per_dataset": counts},
        "steps": done, "steps_planned": steps, "resumed_from": start, "batch_size": batch, "patch": patch,
        "device": device, "train_seconds": round(seconds, 1),
        "final_losses": {"window_steps": int(cfg["final_window"]), "multi_resolution_steps_mean": final},
        "validation": {"what": f"paper content loss, eval mode, {cfg['val_batch']} fixed {cfg['val_patch']}x{cfg['val_patch']} "
                               "crops of the training split, x4", "by_step": validation},
        "shipped_step": shipped_step,
        "loss_log": str((run_dir / "losses.csv").relative_to(REPO)) if run_dir.is_relative_to(REPO) else str(run_dir),
        "onnx": onnx_files,
        "cut_from_paper": cfg.get("cut_from_paper", ""),
    })
    print(f"ddcgan: {done} steps in {seconds:.0f} s, final {final}, shipped step {shipped_step} "
          f"(validation {validation}) -> {out_dir}")

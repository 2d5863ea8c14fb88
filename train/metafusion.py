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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from streamfuse.export.onnx import export_onnx
from streamfuse.models import get_model
from streamfuse.models.metafusion import VARIANT_SCALES, MetaFusion
from train.common import REPO, LossLog, TrainClock, load_checkpoint, save_checkpoint, seed_everything, write_record
from train.datasets import PairDataset


def lr_size(patch: int, r: float) -> int:
    """Input size for scale r; the model takes the true ratio from the sizes (patch / size)."""
    return max(1, int(round(patch / r)))


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    if size == x.shape[-1]:
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def draw_scales(cfg: dict, rng: np.random.Generator) -> tuple[float, float]:
    r_ir = float(rng.choice(cfg["ir_scales"]))
    r_vis = 1.0 if rng.random() < float(cfg["vis_full_prob"]) else float(rng.choice(cfg["vis_scales"]))
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


def build_model(cfg: dict) -> MetaFusion:
    return MetaFusion(channels=int(cfg["channels"]), blocks=int(cfg["blocks"]), rcms=int(cfg["rcms"]))


def make_optimizer(model: MetaFusion, cfg: dict) -> torch.optim.Adam:
    """Adam; the meta-weight MLPs at ``meta_lr_mult`` x lr: each of their last-layer weights moves a
    whole predicted conv kernel, and at the full lr the first steps diverged (loss 1.7 -> 4.5)."""
    meta = [p for name, p in model.named_parameters() if ".mlp." in name]
    rest = [p for name, p in model.named_parameters() if ".mlp." not in name]
    lr = float(cfg["lr"])
    return torch.optim.Adam([{"params": rest, "lr": lr}, {"params": meta, "lr": lr * float(cfg["meta_lr_mult"])}],
                            weight_decay=float(cfg["weight_decay"]))


def train(cfg: dict, device: str, run_dir: Path, out_dir: Path, resume: bool = False) -> None:
    torch.set_num_threads(int(cfg.get("threads", 1)))
    seed_everything(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    data = PairDataset(cfg["data"])
    model = build_model(cfg).to(device).train()
    opt = make_optimizer(model, cfg)
    ckpt = run_dir / "checkpoint.pt"
    start, earlier_seconds = 0, 0.0
    if resume and ckpt.exists():
        start = load_checkpoint(ckpt, {"model": model}, {"opt": opt})
        extra = torch.load(ckpt, map_location="cpu", weights_only=False)
        rng.bit_generator.state = extra["data_rng"]
        earlier_seconds = float(extra.get("train_seconds", 0.0))
    steps, finetune = int(cfg["steps"]), int(cfg["finetune_steps"])
    total = steps + finetune
    log = LossLog(run_dir / "losses.csv", ["loss", "sr", "fuse", "contrast", "r_ir", "r_vis"])
    clock = TrainClock(cfg, earlier_seconds)  # wall time of all runs of this schedule
    done = start
    bar = tqdm(range(start, total), initial=start, total=total, desc="metafusion", unit="it")
    for step in bar:
        ir_hr, vis_hr = data.sample_batch(int(cfg["batch_size"]), int(cfg["patch"]), rng, cfg.get("gain_range"))
        r_ir, r_vis = draw_scales(cfg, rng)
        lam = float(cfg["contrast_lambda"]) if step >= steps else 0.0
        offsets = draw_offsets(int(cfg["contrast_radius"]), int(cfg["contrast_offsets"]), rng) if lam else ()
        losses = compute_losses(model, ir_hr.to(device), vis_hr.to(device), r_ir, r_vis, lam, offsets,
                                int(cfg["contrast_radius"]))
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        if (step + 1) % int(cfg["log_every"]) == 0 or step + 1 == total:
            log.write(step + 1, {**{k: v.item() for k, v in losses.items()}, "r_ir": r_ir, "r_vis": r_vis})
            bar.set_postfix(loss=f"{losses['loss'].item():.4f}", phase="contrast" if lam else "pixel")
        done = step + 1
        out_of_time = clock.out_of_time("metafusion", done)
        if done % int(cfg["checkpoint_every"]) == 0 or done == total or out_of_time:
            save_checkpoint(ckpt, done, {"model": model}, {"opt": opt},
                            {"data_rng": rng.bit_generator.state, "train_seconds": clock.seconds()})
        if out_of_time:
            break
    log.close()
    seconds = clock.seconds()  # all runs of this schedule (resumes included)
    final = evaluate(model, data, cfg)
    ship(model, cfg, out_dir, run_dir, {"pairs": len(data), "steps": steps, "finetune_steps": finetune,
                                        "steps_done": done, "resumed_from": start,
                                        "device": device, "train_seconds": round(seconds, 1),
                                        "final_losses_fixed_batch": final})
    print(f"metafusion: {done} steps ({done - start} this run), {seconds:.0f} s training in all, final {final} -> {out_dir}")


def evaluate(model: MetaFusion, data: PairDataset, cfg: dict) -> dict:
    """Loss terms on one fixed batch (seed 0) at IR scales 1, 2 and 4 with the visible at full size."""
    rng = np.random.default_rng(0)
    ir_hr, vis_hr = data.sample_batch(8, int(cfg["patch"]), rng)
    offsets = draw_offsets(int(cfg["contrast_radius"]), int(cfg["contrast_offsets"]), rng)
    model.train()  # plain forward (no frozen weights)
    with torch.no_grad():
        out = {}
        for r in (1, 2, 4):
            terms = compute_losses(model, ir_hr, vis_hr, r, 1.0, float(cfg["contrast_lambda"]), offsets,
                                   int(cfg["contrast_radius"]))
            out.update({f"{k}_x{r}": round(v.item(), 5) for k, v in terms.items()})
    return out


def ship(model: MetaFusion, cfg: dict, out_dir: Path, run_dir: Path, extra: dict) -> None:
    """engines/metafusion.pt, one ONNX per variant (same weights, meta-weights frozen per scale), record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, out_dir / "metafusion.pt")
    spec = get_model("metafusion")
    onnx_files = []
    for variant in spec.variants:
        module = build_model(cfg).freeze(VARIANT_SCALES[variant])
        module.load_state_dict(state)
        stem = "metafusion" if variant == spec.default_variant else f"metafusion-{variant}"
        onnx_files.append(export_onnx("metafusion", variant, out=out_dir / f"{stem}.onnx", module=module.eval()).name)
    csv_path = run_dir / "losses.csv"
    write_record("metafusion", cfg, out_dir, {
        "data": {"root": cfg["data"], "pairs": extra.pop("pairs"), "patch": int(cfg["patch"]),
                 "batch_size": int(cfg["batch_size"])},
        **extra,
        "loss_log": str(csv_path.relative_to(REPO)) if csv_path.is_relative_to(REPO) else str(csv_path),
        "onnx": onnx_files,
    })

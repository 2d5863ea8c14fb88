"""Res2NetFuse training, as in the paper: the auto-encoder alone (no fusion layer) learns to
reconstruct ONE natural image, 256x256, for 2000 iterations with loss MSE + (1 - SSIM).

Each iteration sees the image under a random one of its 8 flips/90-degree rotations (still the one
image; this only keeps the filters from learning its orientation).
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from streamfuse.export.onnx import export_onnx
from streamfuse.models import get_model
from streamfuse.models.res2netfuse import Res2NetFuse
from train.common import REPO, LossLog, load_checkpoint, save_checkpoint, seed_everything, write_record
from train.losses import ssim


def load_image(path: Path, size: int) -> torch.Tensor:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise SystemExit(f"{path}: cannot read the training image")
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img.astype(np.float32) / 255.0)[None, None]


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if k >= 4 else x


def train(cfg: dict, device: str, run_dir: Path, out_dir: Path, resume: bool = False) -> None:
    torch.set_num_threads(int(cfg.get("threads", 1)))
    gen = seed_everything(int(cfg["seed"]))
    image = load_image(REPO / cfg["image"], int(cfg["size"])).to(device)
    model = Res2NetFuse().to(device)
    ae = model.autoencoder
    opt = torch.optim.Adam(ae.parameters(), lr=float(cfg["lr"]))
    ckpt = run_dir / "checkpoint.pt"
    start = load_checkpoint(ckpt, {"ae": ae}, {"opt": opt}) if resume and ckpt.exists() else 0
    log = LossLog(run_dir / "losses.csv", ["loss", "mse", "ssim"])
    t0 = time.time()
    iterations = int(cfg["iterations"])
    bar = tqdm(range(start, iterations), initial=start, total=iterations, desc="res2netfuse", unit="it")
    for step in bar:
        k = int(torch.randint(0, 8, (1,), generator=gen))
        x = dihedral(image, k).repeat(int(cfg["batch_size"]), 1, 1, 1)
        y = ae(x)
        mse = F.mse_loss(y, x)
        s = ssim(y.clamp(0, 1), x)
        loss = mse + float(cfg["ssim_weight"]) * (1 - s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % int(cfg["log_every"]) == 0 or step + 1 == iterations:
            log.write(step + 1, {"loss": loss.item(), "mse": mse.item(), "ssim": s.item()})
            bar.set_postfix(loss=f"{loss.item():.4f}", ssim=f"{s.item():.3f}")
        if (step + 1) % int(cfg["checkpoint_every"]) == 0:
            save_checkpoint(ckpt, step + 1, {"ae": ae}, {"opt": opt})
    log.close()
    seconds = time.time() - t0
    with torch.no_grad():
        y = ae(image)
        final = {"mse": F.mse_loss(y, image).item(), "ssim": ssim(y.clamp(0, 1), image).item()}
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    torch.save(model.state_dict(), out_dir / "res2netfuse.pt")
    spec = get_model("res2netfuse")
    onnx_files = []
    for variant in spec.variants:
        model.strategy = variant
        stem = "res2netfuse" if variant == spec.default_variant else f"res2netfuse-{variant}"
        onnx_files.append(export_onnx("res2netfuse", variant, out=out_dir / f"{stem}.onnx", module=model).name)
    write_record("res2netfuse", cfg, out_dir, {
        "data": {"image": cfg["image"], "licence": "public domain (NASA, via scikit-image skimage.data.astronaut)",
                 "size": [int(cfg["size"])] * 2},
        "iterations": iterations, "resumed_from": start, "device": device,
        "train_seconds": round(seconds, 1), "final_losses_on_image": final,
        "loss_log": str((run_dir / "losses.csv").relative_to(REPO)) if run_dir.is_relative_to(REPO) else str(run_dir),
        "onnx": onnx_files,
    })
    print(f"res2netfuse: {iterations} iterations in {seconds:.0f} s, final mse {final['mse']:.5f}, ssim {final['ssim']:.4f} -> {out_dir}")

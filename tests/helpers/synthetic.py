"""Synthetic training data for the trainer tests: a bright blob in the IR, stripes in the visible."""
from pathlib import Path

import cv2
import numpy as np
import torch


def blob_and_stripes(n: int, size: int, seed: int = 0):
    """N x 1 x size x size IR and visible tensors in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=g) - 0.5
    ir = torch.exp(-((xx - centre[:, :1]) ** 2 + (yy - centre[:, 1:]) ** 2) * 8)
    vis = (0.5 + 0.3 * torch.sin(xx * 9 + torch.rand(n, 1, 1, generator=g) * 6))[:, None]
    return ir.clamp(0, 1), vis.clamp(0, 1)


def write_training_split(tmp_path: Path, pairs: int = 4, size: int = 48) -> Path:
    """``<tmp_path>/train/SYN/{ir,vis}/<i>.png`` (visible in colour, as the real split); returns the
    ``train`` folder, to be used as ``data_root``."""
    root = tmp_path / "train"
    ir, vis = blob_and_stripes(pairs, size)
    for sub in ("ir", "vis"):
        (root / "SYN" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        ir_u8 = (ir[i, 0].numpy() * 255).round().astype(np.uint8)
        vis_u8 = (vis[i, 0].numpy() * 255).round().astype(np.uint8)
        cv2.imwrite(str(root / "SYN" / "ir" / f"{i:03d}.png"), ir_u8)
        cv2.imwrite(str(root / "SYN" / "vis" / f"{i:03d}.png"), cv2.merge([vis_u8, vis_u8 // 2, vis_u8]))
    return root


TINY = {  # a few steps on tiny patches, every cadence at 1 so each code path runs
    "res2netfuse": {"size": 32, "steps": 4},
    "ddcgan": {"patch": 32, "batch_size": 2, "steps": 4, "warmup_steps": 1, "same_res_fraction": 0.5, "val_batch": 2,
               "val_patch": 32, "snapshot_every": 2},
    "tlgan": {"patch": 32, "batch_size": 2, "steps": 4},
    "ddpatchgan": {"patch": 32, "batch_size": 2, "steps": 4},
    "metafusion": {"channels": 4, "blocks": 1, "patch": 24, "batch_size": 1, "steps": 2, "finetune_steps": 2},
    "pyrfuse": {"patch": 32, "batch_size": 2, "steps": 4},
}


def tiny_config(model: str, tmp_path: Path, config: str | None = None, **overrides):
    """``train/configs/<config or model>.yaml`` shrunk by TINY and ``overrides``, on a synthetic split."""
    from train.config import read_config
    from train.harness import REPO

    cfg = read_config(REPO / "train" / "configs" / f"{config or model}.yaml")
    values = {"log_every": 1, "checkpoint_every": 1, "time_limit_minutes": 0, **TINY[model], **overrides}
    if hasattr(cfg, "data_root"):
        values.update(data_root=str(write_training_split(tmp_path)), datasets=None)
    return read_config(REPO / "train" / "configs" / f"{config or model}.yaml", values)

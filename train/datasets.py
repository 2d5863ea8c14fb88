"""Aligned IR/visible pair folders for training (``../shared/data/train/<dataset>/{ir,vis}``).

Images are loaded once as gray float32 in [0, 1] (visible as its Y channel, as at fusion time);
``sample_batch`` draws random aligned patches with random flips. Only the training split is ever
read here: the evaluation pairs (``../shared/data/<dataset>``) are rejected.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from streamfuse import REPO_DIR, StreamfuseError
from streamfuse.color import normalize_ir, split_luma
from streamfuse.io.images import pair_folders, read_image

DEFAULT_ROOT = REPO_DIR.parent / "shared" / "data" / "train"


def find_pair_dirs(root: Path) -> list[Path]:
    """Every folder below ``root`` holding ``ir/`` and ``vis/`` subfolders."""
    root = Path(root)
    dirs = sorted({p.parent for p in root.rglob("ir") if (p.parent / "vis").is_dir()})
    if not dirs:
        raise StreamfuseError(f"{root}: no <dataset>/ir + <dataset>/vis folders found")
    return dirs


class PairDataset:
    def __init__(self, root: str | Path = DEFAULT_ROOT, datasets: list[str] | None = None, min_side: int = 0):
        root = Path(root) if Path(root).is_absolute() else REPO_DIR / root
        if root.name != "train" and "train" not in root.parts:
            raise StreamfuseError(f"{root}: training reads only the training split (…/data/train), never the evaluation pairs")
        self.pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
        for d in find_pair_dirs(root):
            if datasets and d.name not in datasets:
                continue
            pairs, _, _ = pair_folders(d / "ir", d / "vis")
            for stem, ir_path, vis_path in pairs:
                ir = normalize_ir(read_image(ir_path, "IR image"))
                vis = split_luma(read_image(vis_path, "visible image"))[0]
                if ir.shape != vis.shape:
                    ir = cv2.resize(ir, vis.shape[::-1], interpolation=cv2.INTER_AREA)
                if min(ir.shape) >= min_side:
                    self.pairs.append((f"{d.name}/{stem}", ir, vis))
        if not self.pairs:
            raise StreamfuseError(f"{root}: no usable training pairs" + (f" in datasets {datasets}" if datasets else ""))

    def __len__(self) -> int:
        return len(self.pairs)

    def names(self) -> list[str]:
        return [n for n, _, _ in self.pairs]

    def sample_batch(self, batch: int, patch: int, rng: np.random.Generator,
                     gain_range: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random aligned ``patch`` x ``patch`` crops with random horizontal/vertical flips -> (ir, vis), N x 1 x P x P.

        ``gain_range`` (lo, hi): each source of each crop is multiplied by its own gain, log-uniform in
        [lo, hi], then clipped to [0, 1]. The training split has no night scene (its darkest visible
        image averages 62/255, LLVIP's night streets 34), so without this a model meets dark,
        differently exposed inputs for the first time at evaluation.
        """
        irs, viss = [], []
        for _ in range(batch):
            _, ir, vis = self.pairs[rng.integers(len(self.pairs))]
            h, w = ir.shape
            p = min(patch, h, w)
            y, x = rng.integers(0, h - p + 1), rng.integers(0, w - p + 1)
            a, b = ir[y:y + p, x:x + p], vis[y:y + p, x:x + p]
            if p < patch:  # tiny image: scale the crop up to the patch size
                a, b = (cv2.resize(t, (patch, patch), interpolation=cv2.INTER_LINEAR) for t in (a, b))
            if rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            if rng.random() < 0.5:
                a, b = a[::-1], b[::-1]
            if gain_range:
                lo, hi = np.log(gain_range[0]), np.log(gain_range[1])
                a, b = (np.clip(t * np.exp(rng.uniform(lo, hi)), 0.0, 1.0).astype(np.float32) for t in (a, b))
            irs.append(np.ascontiguousarray(a))
            viss.append(np.ascontiguousarray(b))
        return torch.from_numpy(np.stack(irs))[:, None], torch.from_numpy(np.stack(viss))[:, None]


class PairPatches:
    """The default training data: a batch of random patches per step (``PairConfig`` keys)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.pairs = PairDataset(cfg.data_root, cfg.datasets)

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pairs.sample_batch(self.cfg.batch_size, self.cfg.patch, rng, self.cfg.gain_range)

    def record(self) -> dict:
        per_dataset: dict[str, int] = {}
        for name in self.pairs.names():
            per_dataset[name.split("/")[0]] = per_dataset.get(name.split("/")[0], 0) + 1
        return {"root": self.cfg.data_root, "pairs": len(self.pairs), "pairs_per_dataset": per_dataset,
                "patch": self.cfg.patch, "batch_size": self.cfg.batch_size}

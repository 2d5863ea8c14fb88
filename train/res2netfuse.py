"""Res2NetFuse training, as in the paper: the auto-encoder alone (no fusion layer) learns to
reconstruct ONE natural image, 256x256, for 2000 steps with loss MSE + (1 - SSIM).

Each step sees the image under a random one of its 8 flips/90-degree rotations (still the one
image; this only keeps the filters from learning its orientation).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from streamfuse import REPO_DIR, StreamfuseError
from streamfuse.models.res2netfuse import Res2NetFuse
from train import harness
from train.config import TrainConfig
from train.losses import ssim


@dataclass(kw_only=True)
class Config(TrainConfig):
    image: str  # the one training image (relative paths: from the repo root)
    size: int = 256  # the image is resized to size x size
    batch_size: int = 1  # copies of the (rotated) image per step
    lr: float
    ssim_weight: float = 1.0


class OneImage:
    """The data of every step: the training image, 1 x 1 x size x size in [0, 1]."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        path = REPO_DIR / cfg.image
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise StreamfuseError(f"{path}: cannot read the training image")
        if img.shape != (cfg.size, cfg.size):
            img = cv2.resize(img, (cfg.size, cfg.size), interpolation=cv2.INTER_AREA)
        self.image = torch.from_numpy(img.astype(np.float32) / 255.0)[None, None]

    def sample(self, rng: np.random.Generator) -> torch.Tensor:
        return self.image

    def record(self) -> dict:
        return {"image": self.cfg.image, "licence": "public domain (NASA, via scikit-image skimage.data.astronaut)",
                "size": [self.cfg.size] * 2}


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if k >= 4 else x


class Trainer(harness.Trainer):
    def __init__(self, cfg: Config, data: OneImage, device: str):
        self.cfg, self.device = cfg, device
        self.image = data.image.to(device)
        self.model = Res2NetFuse().to(device)
        self.opt = torch.optim.Adam(self.model.autoencoder.parameters(), lr=cfg.lr)
        self.modules, self.optimizers, self.shipped = {"model": self.model}, {"opt": self.opt}, self.model

    @staticmethod
    def load_data(cfg: Config) -> OneImage:
        return OneImage(cfg)

    def step(self, i, batch, rng, gen) -> dict[str, float]:
        k = int(torch.randint(0, 8, (1,), generator=gen))
        x = dihedral(batch.to(self.device), k).repeat(self.cfg.batch_size, 1, 1, 1)
        y = self.model.autoencoder(x)
        mse = F.mse_loss(y, x)
        s = ssim(y.clamp(0, 1), x)
        loss = mse + self.cfg.ssim_weight * (1 - s)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "mse": mse.item(), "ssim": s.item()}

    def export_module(self, variant: str) -> Res2NetFuse:
        self.model.strategy = variant  # the fusion layer between encoder and decoder
        return self.model

    def final_metrics(self) -> dict:
        """Reconstruction of the image itself (no rotation) after training."""
        with torch.no_grad():
            y = self.model.autoencoder(self.image)
            return {"mse_on_image": F.mse_loss(y, self.image).item(), "ssim_on_image": ssim(y.clamp(0, 1), self.image).item()}

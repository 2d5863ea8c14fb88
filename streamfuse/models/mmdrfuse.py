"""The 113-parameter student structure of MMDRFuse (Deng et al., "MMDRFuse: Distilled Mini-Model
with Dynamic Refresh for Multi-Modality Image Fusion", ACM MM 2024), as a speed reference only.

concat(ir, vis) -> 3x3 conv 2->4 -> ReLU -> 3x3 conv 4->1 -> tanh, mapped to [0, 1] as
(tanh + 1) / 2; zero padding keeps the frame size (76 + 37 = 113 parameters). The paper distils
its teacher into this structure; here the weights are random (PyTorch's default initialisation
under a fixed seed), so the output is not a fusion anyone should look at. It is registered
``speed_only``: ``run.py bench --models mmdrfuse-student`` times it next to the real models, and
``eval --models all``, the quality tables and the trained-model lists leave it out.
"""
from __future__ import annotations

import torch
from torch import nn

SEED = 0


class MMDRFuseStudent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(torch.cat([ir, vis], 1)))
        return 0.5 * (torch.tanh(self.conv2(x)) + 1.0)


def build(variant: str = "default") -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(SEED)
        return MMDRFuseStudent()

"""A tiny synthetic IR/visible batch for the trainer tests: a bright blob in the IR, stripes in
the visible image, N x 1 x size x size each, in [0, 1]."""
import torch


def blob_and_stripes(n: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=g) - 0.5
    ir = torch.exp(-((xx - centre[:, :1]) ** 2 + (yy - centre[:, 1:]) ** 2) * 8)
    vis = (0.5 + 0.3 * torch.sin(xx * 9 + torch.rand(n, 1, 1, generator=g) * 6))[:, None]
    return ir.clamp(0, 1), vis.clamp(0, 1)

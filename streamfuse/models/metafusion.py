"""MetaFusion (Li, Cen, Liu, Chen, Yu, "Different Input Resolutions and Arbitrary Output Resolution:
A Meta Learning-Based Deep Framework for Infrared and Visible Image Fusion", IEEE TIP 30, 2021).

One model takes an IR and a visible image of any two sizes and returns the fused image (and both
sources super-resolved) at any output size:

1. Feature extraction, shared by both sources: 3x3 conv to 2c channels, FEBs (feature extraction
   blocks) with a global skip, 1x1 conv to 8 channels. An FEB is a 3x3 conv 2c -> c feeding three
   branches of RFUs (a k x k conv + LeakyReLU 0.2, then a 3x3 conv dilated by d + PReLU):
   d=1 (k=1), d=3 (four densely connected RFUs, k=3) and d=5 (k=5); the concatenated 7c channels
   go through a 1x1 conv back to 2c and are added to the block input.
2. Meta-upscale: for output pixel (i, j) a small MLP maps its offset inside the source pixel it
   projects to and the scale, (dy, dx, 1/ry, 1/rx), to the weights of a 3x3 conv applied there
   (Meta-SR). Meta-downscale is the same module with a scale below 1.
3. Fusion: dual attention on each source's upscaled features, CAM (channel weights: softmax over
   the min-max-normalised column sums of the channel Gram matrix) and PAM (a small U-Net-like
   spatial map: channel mean, pool, conv, pool, conv, pixel shuffles, sigmoid); [f, CAM f, PAM f]
   -> 1x1 conv, absolute-max selection between the sources, concatenated with the absolute-max of
   the plain features, 1x1 conv.
4. Two residual compensation modules: meta-downscale each upscaled feature map back to its input
   size, take the error against the extracted features, meta-upscale the error and add it to the
   source features and its absolute-max over the sources to the fused features.
5. Heads: a 3x3 conv for the fused image (min-max stretched to [0, 1] per image, as in the code) and
   one shared 3x3 conv for the two super-resolved sources.

``forward(ir, vis)`` returns the fused image at the visible size (the streamfuse Fuser contract);
``run(ir, vis, out_hw)`` returns (fused, ir_sr, vis_sr) at any ``out_hw``.

Export: a graph is fixed to one integer IR scale r (variant ``x1``, ``x2``, ``x4``); the visible
is at the output size. For an integer scale the meta-weights are periodic with period r, so the
meta-upscale is a 3x3 conv with r*r weight sets followed by pixel shuffle, and the meta-downscale
is one strided 3x3 conv. ``freeze(scales)`` precomputes those weights from the MLPs once, so the
exported graph has constant conv weights and stays dynamic in H and W. Any other geometry runs the
general (gather) path, in torch only.

Deviations from the paper and the authors' code, and why:
- Width and depth are the ``channels``/``blocks`` arguments: the paper's c = 32 (a 64-channel first
  conv) and 6 FEBs, shipped, cost ~1.6 TFLOPs for a 640x512 pair (x1; 2.0M parameters); c = 16 and
  3 FEBs would cost 208 GFLOPs. The registry builds whatever the shipped weights' record
  (``engines/metafusion.json``) says (``train/configs/metafusion.yaml`` trains the paper's width).
- Gray input and output (1 channel; the code feeds 3-channel images): streamfuse fuses the luma.
- MLP input (dy, dx, 1/ry, 1/rx) with a scale per axis (the paper: one scale r), so outputs with
  another aspect ratio than the input (e.g. 333x211 from 160x120) are handled exactly.
- Pixel-centre projection ((i + 0.5) / r) instead of the top-left projection i / r, so an integer
  downscale samples the centre of each r x r cell (the 3x3 kernel cannot reach it otherwise for r=4).
- The code's min-max rescaling (``scale_image``) is kept for the fused image only, per image (the code
  rescales each whole batch and the SR outputs too; the SR heads here are trained against the HR
  sources' own range). Note for video: each frame is stretched by its own extremes.
- Max-selection is a steep sigmoid blend (``abs_max``, sharpness 100) instead of a hard pick: the
  hard pick flips at near-ties on float noise, so torch and ONNX runtimes disagreed by up to 4e-3
  on real frames; the shipped weights had their first 410 steps with the hard pick and the
  remaining 1590 with the blend (train/configs/metafusion.yaml).
- The CAM/PAM loops over the batch in the code are batched ops here (same maths), and the unused
  ``conv_after_meta_down`` of the code's RCM is left out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

META_CHANNELS = 8
EPS = 1e-6


def conv(cin: int, cout: int, k: int, dilation: int = 1, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation)


class RFU(nn.Module):
    """k x k conv + LeakyReLU(0.2), then 3x3 conv dilated by d + PReLU; optionally concatenated to its input."""

    def __init__(self, cin: int, c: int, k: int, d: int, dense: bool = False):
        super().__init__()
        self.dense = dense
        self.body = nn.Sequential(conv(cin, c, k), nn.LeakyReLU(0.2), conv(c, c, 3, dilation=d), nn.PReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return torch.cat([x, y], 1) if self.dense else y


class FEB(nn.Module):
    """Feature extraction block: three RFU branches (d = 1, 3 dense x4, 5), 1x1 fuse, residual."""

    def __init__(self, c: int):
        super().__init__()
        self.entry = nn.Sequential(conv(2 * c, c, 3), nn.LeakyReLU(0.2))
        self.branch1 = RFU(c, c, 1, 1)
        self.branch3 = nn.Sequential(*(RFU(c * (i + 1), c, 3, 3, dense=True) for i in range(4)))
        self.branch5 = RFU(c, c, 5, 5)
        self.merge = nn.Sequential(conv(7 * c, 2 * c, 1), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.entry(x)
        return x + self.merge(torch.cat([self.branch1(f), self.branch3(f), self.branch5(f)], 1))


class FeatureExtractor(nn.Module):
    def __init__(self, c: int, blocks: int):
        super().__init__()
        self.entry = nn.Sequential(conv(1, 2 * c, 3), nn.LeakyReLU(0.2))
        self.blocks = nn.Sequential(*(FEB(c) for _ in range(blocks)))
        self.exit = nn.Sequential(conv(2 * c, META_CHANNELS, 1), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.entry(x)
        return self.exit(self.blocks(f0) + f0)


def _project(n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source index and offset numerator (over 2 * n_out) of each output pixel centre, exactly."""
    num = (2 * torch.arange(n_out) + 1) * n_in
    return num // (2 * n_out), num % (2 * n_out)


class MetaResample(nn.Module):
    """Meta-upscale / meta-downscale: per-output-position 3x3 conv weights predicted by an MLP."""

    def __init__(self, channels: int = META_CHANNELS, hidden: int = 256, k: int = 3):
        super().__init__()
        self.c, self.k = channels, k
        self.mlp = nn.Sequential(nn.Linear(4, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, k * k * channels * channels))
        with torch.no_grad():  # start near a plain conv's scale (default init amplifies ~3x per meta layer)
            self.mlp[2].weight.mul_(0.25)
            self.mlp[2].bias.mul_(0.25)
        self.frozen: dict[tuple[str, int], torch.Tensor] = {}

    def weights(self, pos: torch.Tensor) -> torch.Tensor:
        """(P, 4) rows of (dy, dx, 1/ry, 1/rx) -> (P, Cout, Cin, k, k)."""
        return self.mlp(pos).view(-1, self.c, self.c, self.k, self.k)

    def conv_weight(self, kind: str, r: int) -> torch.Tensor:
        """Conv weight of an integer up- or downscale by r (see the module docstring)."""
        if kind == "up":
            off = (2 * torch.arange(r, dtype=torch.float32) + 1) / (2 * r)
            dy, dx = torch.meshgrid(off, off, indexing="ij")
            inv = torch.full((r * r,), 1.0 / r)
            pos = torch.stack([dy.reshape(-1), dx.reshape(-1), inv, inv], 1)
            w = self.weights(pos.to(self.mlp[0].weight))  # (my*r + mx, o, i, k, k)
            return w.permute(1, 0, 2, 3, 4).reshape(self.c * r * r, self.c, self.k, self.k)
        off = 0.5 if r % 2 else 0.0  # centre (i + 0.5) * r lands mid-pixel for odd r, on a pixel edge for even r
        pos = torch.tensor([[off, off, float(r), float(r)]]).to(self.mlp[0].weight)
        return self.weights(pos)[0]

    def freeze(self, kinds_scales) -> None:
        """Precompute the conv weights of the given (kind, r) for inference and export."""
        with torch.no_grad():
            self.frozen = {(kind, r): self.conv_weight(kind, r).detach().clone() for kind, r in kinds_scales}

    def _weight(self, kind: str, r: int) -> torch.Tensor:
        w = None if self.training else self.frozen.get((kind, r))
        return w if w is not None else self.conv_weight(kind, r)

    def forward(self, x: torch.Tensor, out_hw) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])  # ints, also under ONNX tracing: the graph fixes its scale
        H, W = int(out_hw[0]), int(out_hw[1])
        if H % h == 0 and W % w == 0 and H // h == W // w:
            r = H // h
            y = F.conv2d(x, self._weight("up", r), padding=1)
            return F.pixel_shuffle(y, r) if r > 1 else y
        if h % H == 0 and w % W == 0 and h // H == w // W:
            r = h // H
            s = r // 2  # output pixel i is centred on input pixel r*i + r//2 (padded index r*i + r//2 + 1)
            return F.conv2d(F.pad(x, (1, 1, 1, 1))[..., s:, s:], self._weight("down", r), stride=r)
        return self.general(x, H, W)

    def general(self, x: torch.Tensor, H: int, W: int, rows_per_chunk: int = 64) -> torch.Tensor:
        """Any output size: gather each output pixel's 3x3 source neighbourhood and apply its weights."""
        n, c, h, w = x.shape
        sy, ny = _project(H, h)
        sx, nx = _project(W, w)
        uy, iy = torch.unique(ny, return_inverse=True)
        ux, ix = torch.unique(nx, return_inverse=True)
        gy, gx = torch.meshgrid(uy.float() / (2 * H), ux.float() / (2 * W), indexing="ij")
        pos = torch.stack([gy.reshape(-1), gx.reshape(-1), torch.full((gy.numel(),), h / H), torch.full((gy.numel(),), w / W)], 1)
        wts = self.weights(pos.to(x)).view(len(uy), len(ux), c, c * self.k * self.k)
        cols = F.unfold(x, self.k, padding=self.k // 2).view(n, c * self.k * self.k, h, w)
        cols = cols.index_select(3, sx.to(x.device))
        out = []
        for r0 in range(0, H, rows_per_chunk):
            rows = slice(r0, min(H, r0 + rows_per_chunk))
            part = cols.index_select(2, sy[rows].to(x.device))  # n, K, R, W
            wr = wts[iy[rows].to(x.device)][:, ix.to(x.device)]  # R, W, Cout, K
            out.append(torch.einsum("nkyx,yxok->noyx", part, wr))
        return torch.cat(out, 2)


def stretch(x: torch.Tensor) -> torch.Tensor:
    """The paper's output normalisation of the fused image: min-max to [0, 1], per image."""
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo + EPS)


SELECT_SHARPNESS = 100.0


def abs_max(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Max-selection fusion: whichever input has the larger magnitude, as a steep sigmoid blend.

    A hard pick flips at near-ties on float noise, and torch and ONNX runtimes differ by that
    noise: the fused image then differed by up to 4e-3 between them. The blend is continuous and
    equal to the hard pick wherever the magnitudes differ by more than a few 1/SELECT_SHARPNESS.
    """
    w = torch.sigmoid(SELECT_SHARPNESS * (a.abs() - b.abs()))
    return b + w * (a - b)


class ChannelAttention(nn.Module):
    """CAM: weights from the column sums of the C x C Gram matrix, min-max normalised, softmax over channels."""

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        # column sums of F^T F (F: HW x C) without forming it: sum_p f_pj * sum_i f_pi
        g = (f * f.sum(1, keepdim=True)).sum((2, 3), keepdim=True)
        lo, hi = g.amin(1, keepdim=True), g.amax(1, keepdim=True)
        return f * torch.softmax((g - lo) / (hi - lo + EPS), dim=1)


class PositionAttention(nn.Module):
    """PAM: a small U-Net-like map over the channel mean; sigmoid weights per pixel."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(conv(1, 8, 3), nn.LeakyReLU(0.2))
        self.conv2 = nn.Sequential(conv(8, 16, 3), nn.LeakyReLU(0.2))
        self.merge = nn.Sequential(conv(12, 4, 1), nn.LeakyReLU(0.2))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        m = F.max_pool2d(f.mean(1, keepdim=True), 2, ceil_mode=True)
        c1 = self.conv1(m)
        c2 = F.pixel_shuffle(self.conv2(F.avg_pool2d(c1, 2, ceil_mode=True)), 2)
        c2 = F.interpolate(c2, size=c1.shape[-2:], mode="nearest")
        a = F.pixel_shuffle(self.merge(torch.cat([c1, c2], 1)), 2)
        a = F.interpolate(a, size=f.shape[-2:], mode="nearest")
        return f * torch.sigmoid(a)


class FusionModule(nn.Module):
    def __init__(self):
        super().__init__()
        c = META_CHANNELS
        self.cam, self.pam = ChannelAttention(), PositionAttention()
        self.attention = nn.Sequential(conv(3 * c, c, 1), nn.LeakyReLU(0.2))
        self.merge = nn.Sequential(conv(2 * c, c, 1), nn.LeakyReLU(0.2))

    def forward(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        att_a = self.attention(torch.cat([fa, self.cam(fa), self.pam(fa)], 1))
        att_b = self.attention(torch.cat([fb, self.cam(fb), self.pam(fb)], 1))
        return self.merge(torch.cat([abs_max(att_a, att_b), abs_max(fa, fb)], 1))


class ResidualCompensation(nn.Module):
    def __init__(self):
        super().__init__()
        self.down, self.up = MetaResample(), MetaResample()

    def forward(self, fa, fb, fa_up, fb_up, fused):
        out_hw = fa_up.shape[-2:]
        err_a = self.up(fa - self.down(fa_up, fa.shape[-2:]), out_hw)
        err_b = self.up(fb - self.down(fb_up, fb.shape[-2:]), out_hw)
        return fa_up + err_a, fb_up + err_b, fused + abs_max(err_a, err_b)


class MetaFusion(nn.Module):
    """forward(ir, vis) -> fused at the visible size; run(ir, vis, out_hw) -> (fused, ir_sr, vis_sr)."""

    def __init__(self, channels: int = 16, blocks: int = 3, rcms: int = 2):
        super().__init__()
        self.features = FeatureExtractor(channels, blocks)
        self.upscale = MetaResample()
        self.fusion = FusionModule()
        self.rcms = nn.ModuleList(ResidualCompensation() for _ in range(rcms))
        self.head_fused = conv(META_CHANNELS, 1, 3)
        self.head_sr = conv(META_CHANNELS, 1, 3)
        self.frozen_scales: tuple[int, ...] = ()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refreeze())

    def meta_modules(self):
        return [self.upscale] + [m for rcm in self.rcms for m in (rcm.down, rcm.up)]

    def freeze(self, *scales: int) -> "MetaFusion":
        """Precompute the meta-weights of integer scales (1 for the visible, r for the IR)."""
        self.frozen_scales = tuple(sorted(set(scales) | {1}))
        keys = [(kind, r) for r in self.frozen_scales for kind in ("up", "down")]
        for m in self.meta_modules():
            m.freeze(keys)
        return self

    def refreeze(self) -> None:
        if self.frozen_scales:
            self.freeze(*self.frozen_scales)

    def train(self, mode: bool = True) -> "MetaFusion":
        super().train(mode)
        if mode:  # the weights will change: frozen meta-weights would go stale
            for m in self.meta_modules():
                m.frozen = {}
        elif self.frozen_scales and not self.upscale.frozen:
            self.refreeze()
        return self

    def run(self, ir: torch.Tensor, vis: torch.Tensor, out_hw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fa, fb = self.features(ir), self.features(vis)
        fa_up, fb_up = self.upscale(fa, out_hw), self.upscale(fb, out_hw)
        fused = self.fusion(fa_up, fb_up)
        for rcm in self.rcms:
            fa_up, fb_up, fused = rcm(fa, fb, fa_up, fb_up, fused)
        return stretch(self.head_fused(fused)), self.head_sr(fa_up), self.head_sr(fb_up)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return self.run(ir, vis, vis.shape[-2:])[0]


VARIANT_SCALES = {"x1": 1, "x2": 2, "x4": 4}


def build(variant: str = "x1", **kwargs) -> MetaFusion:
    """The registered model; ``variant`` names the IR scale whose meta-weights are precomputed."""
    return MetaFusion(**kwargs).freeze(VARIANT_SCALES[variant])

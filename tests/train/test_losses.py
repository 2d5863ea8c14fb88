"""train/losses.py and the crop gains of train/datasets.py."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.helpers.synthetic import write_training_split  # noqa: E402
from train.datasets import PairDataset  # noqa: E402
from train.losses import ssim, ssim_max_variance, stronger_gradient  # noqa: E402


def test_stronger_gradient_picks_the_source_with_the_larger_magnitude_per_pixel():
    ramp = torch.arange(8.0).repeat(8, 1)[None, None] * 0.1      # dx = 0.1 everywhere
    steep = torch.arange(8.0)[:, None].repeat(1, 8)[None, None] * 0.3  # dy = 0.3 everywhere
    mixed = torch.cat([ramp[..., :4], steep[..., 4:]], dim=3)
    gx, gy = stronger_gradient(ramp, steep)
    assert torch.allclose(gx, torch.zeros_like(gx)) and torch.allclose(gy, torch.full_like(gy, 0.3))
    gx, gy = stronger_gradient(ramp, torch.zeros_like(ramp))
    assert torch.allclose(gx, torch.full_like(gx, 0.1)) and torch.allclose(gy, torch.zeros_like(gy))
    assert stronger_gradient(mixed, ramp)[0].shape == (1, 1, 7, 7)


def test_ssim_max_variance_takes_structure_from_the_busier_source():
    g = torch.Generator().manual_seed(0)
    texture = torch.rand(1, 1, 32, 32, generator=g)
    flat = torch.full_like(texture, 0.5)
    # copying the textured source scores 1; the flat source's own copy does not count where it has no structure
    assert ssim_max_variance(texture, texture, flat).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim_max_variance(flat, texture, flat).item() < 0.1
    assert ssim(texture, texture).item() == pytest.approx(1.0, abs=1e-5)


def test_gain_range_scales_each_source_of_each_crop_independently(tmp_path):
    data = PairDataset(write_training_split(tmp_path))
    plain_ir, plain_vis = data.sample_batch(1, 32, np.random.default_rng(1))
    ir, vis = data.sample_batch(8, 32, np.random.default_rng(1), gain_range=(0.3, 0.6))
    # the first crop is the same (its gains are drawn after it), darkened by a factor in range per source
    r_ir, r_vis = (a[0].sum() / b[0].sum() for a, b in ((ir, plain_ir), (vis, plain_vis)))
    assert 0.3 <= r_ir <= 0.6 and 0.3 <= r_vis <= 0.6 and abs(r_ir - r_vis) > 1e-3
    assert ir.max() <= 0.6 and vis.max() <= 0.6 and ir.dtype == torch.float32


def test_pair_dataset_reads_only_a_training_split(tmp_path):
    from streamfuse import StreamfuseError

    split = write_training_split(tmp_path)
    (tmp_path / "eval").symlink_to(split / "SYN")
    with pytest.raises(StreamfuseError, match="training reads only the training split"):
        PairDataset(tmp_path / "eval")
    with pytest.raises(StreamfuseError, match="no usable training pairs in datasets"):
        PairDataset(split, ["TNO"])
    assert len(PairDataset(split)) == 4 and PairDataset(split).names()[0] == "SYN/000"

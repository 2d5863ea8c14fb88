import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamfuse.models import get_model  # noqa: E402
from streamfuse.models.res2netfuse import Res2NetBlock, Res2NetFuse, fuse_l1, fuse_mean  # noqa: E402


def test_architecture_matches_the_paper():
    m = Res2NetFuse()
    convs = [l for l in m.modules() if isinstance(l, torch.nn.Conv2d)]
    enc = [c for c in m.autoencoder.encoder.modules() if isinstance(c, torch.nn.Conv2d)]
    dec = [c for c in m.autoencoder.decoder.modules() if isinstance(c, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in enc[:2]] == [(1, 32), (32, 64)]
    assert [(c.in_channels, c.out_channels) for c in dec] == [(64, 64), (64, 32), (32, 16), (16, 1)]
    block = m.autoencoder.encoder[2]
    assert isinstance(block, Res2NetBlock) and block.scales == 4
    assert all(c.in_channels == 16 and c.kernel_size == (3, 3) for c in block.convs.modules() if isinstance(c, torch.nn.Conv2d))
    assert 85_000 < sum(p.numel() for p in m.parameters()) < 100_000  # ~90K in the paper
    assert len(convs) == 2 + 2 + 3 + 4


@pytest.mark.parametrize("strategy", ["l1", "mean"])
def test_odd_size_forward(strategy):
    m = Res2NetFuse(strategy).eval()
    x = torch.rand(2, 1, 47, 61)
    assert m(x, x).shape == (2, 1, 47, 61)


def test_fusion_layer_of_equal_features_is_identity():
    a = torch.rand(1, 64, 9, 9)
    assert torch.allclose(fuse_l1(a, a), a, atol=1e-6)
    assert torch.allclose(fuse_mean(a, a), a, atol=1e-6)


def test_l1_weights_follow_activity():
    strong, weak = torch.ones(1, 64, 5, 5), torch.zeros(1, 64, 5, 5)
    # where one source has all the activity, the fused features are that source's
    assert torch.allclose(fuse_l1(strong, weak), strong, atol=1e-3)


def test_shipped_weights_reconstruct_an_unseen_real_image(sample_images):
    from streamfuse.color import normalize_ir
    from streamfuse.io.images import read_image

    spec = get_model("res2netfuse")
    if not spec.weights_path().exists():
        pytest.skip("engines/res2netfuse.pt not trained yet")
    ae = spec.build().autoencoder
    ir = torch.from_numpy(normalize_ir(read_image(sample_images / "ir" / "set08_V000_I02159.png")))[None, None]
    with torch.no_grad():
        mse = torch.mean((ae(ir) - ir) ** 2).item()
    # trained on one natural image, the auto-encoder must still reconstruct an unseen IR image
    assert mse < 2e-3

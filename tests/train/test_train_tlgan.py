"""train/tlgan.py (named test_train_tlgan.py beside tests/models/test_tlgan.py). An unknown g3_anchor is
a config error: tests/train/test_config.py."""
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from tests.helpers.synthetic import blob_and_stripes  # noqa: E402
from train.config import read_config  # noqa: E402
from train.harness import REPO  # noqa: E402
from train.tlgan import Discriminator, Trainer, content_loss  # noqa: E402

CFG = read_config(REPO / "train" / "configs" / "tlgan.yaml")


def tiny_batch(n=4, size=32, seed=0):
    return blob_and_stripes(n, size, seed)


def test_discriminator_shapes():
    d = Discriminator(patch=36)  # 36 -> 18 -> 9 -> 5 -> 3 after four stride-2 convs
    assert d(torch.rand(3, 1, 36, 36)).shape == (3, 1)
    strides = [m.stride for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(2, 2)] * 4


def test_content_loss_wants_the_anchor_intensity_and_the_stronger_edges():
    ir, vis = tiny_batch()
    flat = torch.full_like(vis, 0.5)
    # edges only in the anchor: the anchor itself is the optimum
    assert content_loss(ir, ir, ir, flat, lam=2).item() == pytest.approx(0.0, abs=1e-7)
    # the visible stripes are stronger edges: the anchor alone now misses them
    assert content_loss(ir, ir, ir, vis, lam=2).item() > 0.01
    # adding the stripes' detail to the anchor lowers the loss
    assert content_loss(ir + (vis - 0.5), ir, ir, vis, lam=2) < content_loss(ir, ir, ir, vis, lam=2)


def test_one_step_lowers_the_generator_losses():
    torch.manual_seed(0)
    trainer = Trainer(replace(CFG, patch=32), None, "cpu")
    ir, vis = tiny_batch()
    s_ir, s_vis = ir * 2 - 1, vis * 2 - 1
    gen = torch.Generator().manual_seed(1)

    def losses():
        with torch.no_grad():  # train-mode BN (batch statistics), as in the step itself
            f1, f2, f3 = trainer.generate(s_ir, s_vis)
            return trainer.losses_g(s_ir, s_vis, f1, f2, f3, torch.Generator().manual_seed(2))

    before = losses()
    out = trainer.step(0, (ir, vis), None, gen)
    after = losses()
    assert set(out) >= {"g", "d", "g1_content", "g2_content", "g3_content", "d1", "d2", "d3"}
    for k in ("g1_content", "g2_content", "g", "g3_content"):
        assert after[k] < before[k], k


def test_discriminators_learn_in_one_step():
    torch.manual_seed(0)
    trainer = Trainer(replace(CFG, patch=32, lr_d=1e-4), None, "cpu")  # the paper's lr
    ir, vis = tiny_batch()
    s_ir, s_vis = ir * 2 - 1, vis * 2 - 1
    with torch.no_grad():
        fakes = trainer.generate(s_ir, s_vis)

    def d_loss():
        with torch.no_grad():
            return trainer.losses_d(s_ir, s_vis, *fakes, torch.Generator().manual_seed(3))["d"].item()

    before = d_loss()
    ld = trainer.losses_d(s_ir, s_vis, *fakes, torch.Generator().manual_seed(3))
    trainer.opt_d.zero_grad()
    ld["d"].backward()
    trainer.opt_d.step()
    assert d_loss() < before


def test_g3_anchor_mean_pulls_layer_two_towards_both_layer_one_outputs():
    ir, vis = tiny_batch()
    gen = torch.Generator().manual_seed(0)
    contents = {}
    for anchor in ("f1", "mean"):
        trainer = Trainer(replace(CFG, patch=32, g3_anchor=anchor), None, "cpu")
        f1, f2 = ir * 2 - 1, vis * 2 - 1
        # G3's content loss when its output equals f1 exactly: zero intensity error only for the f1 anchor
        contents[anchor] = trainer.losses_g(ir, vis, f1, f2, f1.clone(), gen)["g3_content"].item()
    assert contents["mean"] > contents["f1"] + 1e-3

"""train/ddcgan.py (file named test_train_ddcgan.py beside tests/models/test_ddcgan.py)."""
import math
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from tests.helpers.synthetic import blob_and_stripes  # noqa: E402
from train.config import read_config  # noqa: E402
from train.ddcgan import Trainer, content_loss, psi, tv_norm  # noqa: E402
from train.harness import REPO  # noqa: E402

CFG = read_config(REPO / "train" / "configs" / "ddcgan.yaml")


def tiny_batch(n=4, size=32, seed=0):
    return blob_and_stripes(n, size, seed)


def test_psi_and_tv():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert psi(x).item() == pytest.approx(x.mean().item())
    assert tv_norm(torch.ones(1, 1, 8, 8)).item() == pytest.approx(0.0, abs=1e-2)
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # d/dx = 1 at each of the 7 x 7 differences
    assert tv_norm(ramp).item() == pytest.approx(49.0, abs=1e-2)
    assert tv_norm(torch.cat([ramp, 3 * ramp])).item() == pytest.approx(98.0, abs=1e-2)  # a sum per image, batch mean


def test_content_loss_is_zero_for_the_ideal_fusion():
    # IR intensities at low resolution + visible gradients: a flat IR and f = v + that level
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 0.2 - 0.1  # zero mean per 4x4 block
    vis = (0.5 + checker)[None, None]
    ir = torch.full_like(vis, 0.8)
    con, intensity, tv = content_loss(vis - 0.5 + ir, ir, vis, ratio=4, eta=3.0)
    assert intensity.item() == pytest.approx(0.0, abs=1e-8) and tv.item() < 0.05  # 225 x sqrt(eps) = 0.0225


def test_stronger_gradient_target_keeps_ir_only_texture():
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 0.2 - 0.1
    ir = (0.5 + checker)[None, None]  # texture only the IR shows
    vis = torch.full_like(ir, 0.3)
    # f = ir: the paper's term (towards the flat visible's gradients) penalises it, "stronger" does not
    assert content_loss(ir, ir, vis, ratio=1, eta=3.0)[2].item() > 10
    assert content_loss(ir, ir, vis, ratio=1, eta=3.0, tv_target="stronger")[2].item() < 0.05
    with pytest.raises(ValueError, match="tv_target"):
        content_loss(ir, ir, vis, ratio=1, eta=3.0, tv_target="sobel")


@pytest.mark.parametrize("ratio", [4, 1])
def test_one_generator_step_lowers_its_loss(ratio):
    torch.manual_seed(0)
    # RMSprop's first update moves every weight by ~10 x lr; at the paper's lr that first step from a
    # random init can overshoot, so this checks the descent direction with a small lr.
    trainer = Trainer(replace(CFG, lr=1e-4), None, "cpu")
    ir, vis = tiny_batch()
    for adversarial in (False, True):
        _, before, *_ = trainer.g_losses(ir, vis, ratio, adversarial)
        trainer.g_update(ir, vis, ratio, adversarial)
        _, after, *_ = trainer.g_losses(ir, vis, ratio, adversarial)
        assert after.item() < before.item(), adversarial


def test_one_discriminator_step_lowers_its_loss():
    from train.ddcgan import d_loss

    torch.manual_seed(0)
    trainer = Trainer(replace(CFG, lr=1e-4), None, "cpu")
    ir, vis = tiny_batch()
    with torch.no_grad():
        fake = psi(trainer.g(psi(ir), vis))
    before = d_loss(trainer.di, psi(ir), fake).item()
    after = trainer.d_update(trainer.di, trainer.opt_di, psi(ir), fake)  # loss before this update...
    assert after == pytest.approx(before, rel=1e-5)
    assert d_loss(trainer.di, psi(ir), fake).item() < before  # ...and lower after it


def test_balance_rule_gives_the_losing_side_extra_updates():
    ir, vis = tiny_batch()
    never = Trainer(replace(CFG, d_max=99.0, g_max=99.0), None, "cpu").update(ir, vis, 4)
    assert never["extra_d"] == 0 and never["extra_g"] == 0
    always = Trainer(replace(CFG, d_max=-1.0, g_max=-1.0, max_extra_d=3, max_extra_g=3), None, "cpu").update(ir, vis, 4)
    assert always["extra_d"] == 2 * 3 and always["extra_g"] == 3  # both D's and G, 3 extra each
    warm = Trainer(CFG, None, "cpu").update(ir, vis, 4, adversarial=False)  # warm-up: no D at all
    assert math.isnan(warm["loss_dv"]) and warm["adv_g"] == 0.0


def test_step_follows_the_schedule():
    """lr decays with the step, the warm-up steps train G alone, the rng picks the IR resolution."""
    import numpy as np

    ir, vis = tiny_batch()
    trainer = Trainer(replace(CFG, warmup_steps=2, same_res_fraction=0.5), None, "cpu")
    rng = np.random.default_rng(0)
    draws = np.random.default_rng(0).random(2)
    warm = trainer.step(1, (ir, vis), rng, None)
    assert math.isnan(warm["loss_dv"]) and warm["lr"] == pytest.approx(CFG.lr * CFG.decay_rate ** (1 / CFG.decay_steps))
    adversarial = trainer.step(2, (ir, vis), rng, None)
    assert not math.isnan(adversarial["loss_dv"])
    assert [warm["ratio"], adversarial["ratio"]] == [1 if d < 0.5 else 4 for d in draws]


def test_rmsprop_starts_like_tensorflow_1():
    # mean square initialised at 1: the first update is ~lr * g, not torch's ~lr * sign(g) * 3.16
    from train.ddcgan import tf_rmsprop

    layer = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(layer.weight)  # the step is then the weight itself, exactly
    opt = tf_rmsprop(layer, lr=0.002)
    before = layer.weight.detach().clone()
    layer.weight.grad = torch.full_like(layer.weight, 1e-3)
    opt.step()
    step = (before - layer.weight.detach()).item()
    assert step == pytest.approx(0.002 * 1e-3 / math.sqrt(0.9 + 0.1 * 1e-6), rel=1e-3)

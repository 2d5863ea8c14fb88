"""train/ddpatchgan.py (named test_train_ddpatchgan.py: see test_train_tlgan.py)."""
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from tests.helpers.synthetic import blob_and_stripes  # noqa: E402
from train.config import read_config  # noqa: E402
from train.ddpatchgan import PatchDiscriminator, Trainer, ir_weight_map  # noqa: E402
from train.harness import REPO  # noqa: E402

CFG = read_config(REPO / "train" / "configs" / "ddpatchgan.yaml")


def tiny_batch(n=2, size=64, seed=0):
    return blob_and_stripes(n, size, seed)


def test_patch_discriminator_sees_70x70():
    d = PatchDiscriminator()
    assert d(torch.rand(1, 1, 128, 128)).shape == (1, 1, 14, 14)
    # receptive field: one output depends on a 70x70 input window
    x = torch.zeros(1, 1, 128, 128, requires_grad=True)
    d.eval()(x)[0, 0, 7, 7].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_weight_map_is_ir_average_per_patch():
    ir = torch.zeros(1, 1, 64, 64)
    ir[..., :32, :] = 1.0  # hot upper half
    w = ir_weight_map(ir, torch.zeros(1, 1, 2, 2))
    assert w.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_one_step_lowers_the_losses():
    torch.manual_seed(0)
    trainer = Trainer(replace(CFG, lr_g=1e-3, lr_d=1e-4), None, "cpu")
    ir, vis = tiny_batch()

    def losses():
        with torch.no_grad():  # train-mode BN (batch statistics), as in the step itself
            fused = trainer.model(ir, vis)
            return {**trainer.losses_g(ir, vis, fused), **trainer.losses_d(ir, vis, fused)}

    before = losses()
    out = trainer.step(0, (ir, vis), None, None)
    after = losses()
    assert set(out) == {"g", "d", "ssim", "mse", "adv_i", "adv_v", "d_i", "d_v"}
    assert after["g"] < before["g"]
    assert after["ssim"] + after["mse"] < before["ssim"] + before["mse"]

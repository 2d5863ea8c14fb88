"""train/pyrfuse.py: the loss is the documented one, and optimisation steps lower it."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.helpers.synthetic import tiny_config  # noqa: E402
from train.harness import seed_everything, train  # noqa: E402
from train.pyrfuse import Trainer, fusion_loss  # noqa: E402


def test_loss_is_zero_for_the_brighter_source_and_positive_otherwise():
    ir = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    vis = 1 - ir
    assert fusion_loss(torch.maximum(ir, vis), ir, vis, 3.0)["intensity"].item() == 0.0
    assert fusion_loss(0.5 * (ir + vis), ir, vis, 3.0)["loss"].item() > 0.05


def test_steps_on_a_batch_lower_the_loss(tmp_path):
    cfg = tiny_config("pyrfuse", tmp_path)
    gen = seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = Trainer.load_data(cfg)
    trainer = Trainer(cfg, data, "cpu")
    batch = data.sample(rng)
    with torch.no_grad():
        before = fusion_loss(trainer.model(*batch), *batch, cfg.texture_weight)["loss"].item()
    for i in range(20):
        trainer.step(0, batch, rng, gen)  # step 0 every time: the full learning rate
    with torch.no_grad():
        after = fusion_loss(trainer.model(*batch), *batch, cfg.texture_weight)["loss"].item()
    assert after < 0.9 * before


def test_a_tiny_run_ships_weights_graph_and_record(tmp_path):
    record = train(tiny_config("pyrfuse", tmp_path), run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    assert record["steps"] == 4 and record["onnx"] == ["pyrfuse.onnx"]
    assert set(record["final_losses"]) == {"loss", "intensity", "texture"}
    assert (tmp_path / "out" / "pyrfuse.pt").stat().st_size > 0

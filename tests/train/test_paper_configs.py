"""train/configs/*_paper.yaml: the papers' schedules, kept for GPU users, run through the harness.

Two steps on the CPU with tiny patches of a synthetic split: every key loads as the model's typed
config and the run ends with weights, every variant's ONNX and a record, so
`python -m train train/configs/<model>_paper.yaml --device cuda` does not stop on a config error
after the user has rented the GPU.
"""
import json

import pytest

pytest.importorskip("torch")

from streamfuse.models import get_model  # noqa: E402
from tests.helpers.synthetic import tiny_config  # noqa: E402
from train.config import read_config  # noqa: E402
from train.harness import REPO, train  # noqa: E402

PAPER_CONFIGS = sorted(p.stem for p in (REPO / "train" / "configs").glob("*_paper.yaml"))


def test_every_trained_model_has_a_paper_config_or_is_one():
    assert PAPER_CONFIGS == ["ddcgan_paper", "ddpatchgan_paper", "metafusion_paper", "tlgan_paper"]


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_paper_config_runs_two_steps(config, tmp_path):
    model = config.removesuffix("_paper")
    paper = read_config(REPO / "train" / "configs" / f"{config}.yaml")
    two = {"steps": 1, "finetune_steps": 1} if model == "metafusion" else {"steps": 2}
    cfg = tiny_config(model, tmp_path, config=config, **two)
    train(cfg, "cpu", tmp_path / "run", tmp_path / "out")
    record = json.loads((tmp_path / "out" / f"{model}.json").read_text())
    assert record["config"]["model"] == model and record["steps"] == 2
    assert paper.total_steps() > 1000  # a paper schedule, not a CPU one
    spec = get_model(model)
    assert (tmp_path / "out" / f"{model}.pt").exists()
    assert all((tmp_path / "out" / spec.onnx_path(v).name).exists() for v in spec.variants)

"""train/configs/*_paper.yaml: the papers' schedules, kept for GPU users, run through their trainers.

Two steps on the CPU with small patches: every key the trainer reads is present and the run ends
with weights, ONNX and a record, so `python -m train train/configs/<model>_paper.yaml --device cuda`
does not stop on a config error after the user has rented the GPU.
"""
import importlib
import json

import pytest

pytest.importorskip("torch")

from train.common import REPO, load_config  # noqa: E402
from train.train import TRAINERS  # noqa: E402

pytestmark = pytest.mark.usefixtures("train_data")  # the runs read ../shared/data/train
SHRINK = {"batch_size": 2, "patch": 32, "log_every": 1, "checkpoint_every": 1}
PER_MODEL = {
    "ddcgan": {"steps": 2, "warmup_steps": 1, "val_batch": 2, "val_patch": 32, "snapshot_every": 1, "final_window": 2},
    "tlgan": {"steps": 2},
    "ddpatchgan": {"steps": 2},
    "metafusion": {"steps": 1, "finetune_steps": 1},
}


@pytest.mark.parametrize("model", sorted(PER_MODEL))
def test_paper_config_runs_two_steps(model, tmp_path):
    cfg = load_config(REPO / "train" / "configs" / f"{model}_paper.yaml")
    paper_steps = int(cfg["steps"])
    cfg.update(SHRINK, **PER_MODEL[model])
    if "datasets" in cfg:
        cfg["datasets"] = ["TNO"]  # the smallest training set loads fastest
    module_name, _, fn = TRAINERS[model].partition(":")
    getattr(importlib.import_module(module_name), fn)(cfg, device="cpu", run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    record = json.loads((tmp_path / "out" / f"{model}.json").read_text())
    assert record["config"]["model"] == model and paper_steps > 1000  # a paper schedule, not a CPU one
    assert (tmp_path / "out" / f"{model}.pt").exists() and (tmp_path / "out" / f"{model}.onnx").exists()

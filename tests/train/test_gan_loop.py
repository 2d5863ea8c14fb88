"""train/gan_loop.py: the shared GAN loop writes weights, ONNX and record, and resumes."""
import json

import pytest
import yaml

torch = pytest.importorskip("torch")

from train.common import REPO  # noqa: E402
from train.tlgan import train  # noqa: E402

CFG = yaml.safe_load((REPO / "train" / "configs" / "tlgan.yaml").read_text())


pytestmark = pytest.mark.usefixtures("train_data")  # the runs read ../shared/data/train


def tiny_run(tmp_path, **overrides):
    """A 32x32, batch-2 config on TNO only (the smallest training set loads fastest) and its folders."""
    cfg = {**CFG, "datasets": ["TNO"], "patch": 32, "batch_size": 2, "log_every": 1, "time_limit_minutes": 0,
           **overrides}
    run_dir, out = tmp_path / "run", tmp_path / "engines"
    run_dir.mkdir()
    return cfg, run_dir, out


def test_tiny_run_then_resume(tmp_path):
    cfg, run_dir, out = tiny_run(tmp_path, steps=2, checkpoint_every=1)
    train(cfg, device="cpu", run_dir=run_dir, out_dir=out)
    record = json.loads((out / "tlgan.json").read_text())
    assert record["steps"] == 2 and record["data"]["pairs_per_dataset"] == {"TNO": record["data"]["pairs"]}
    assert (out / "tlgan.pt").exists() and (out / "tlgan.onnx").exists()
    first = torch.load(out / "tlgan.pt", weights_only=True)

    train({**cfg, "steps": 3}, device="cpu", run_dir=run_dir, out_dir=out, resume=True)
    record = json.loads((out / "tlgan.json").read_text())
    assert record["resumed_from"] == 2 and record["steps"] == 3
    rows = (run_dir / "losses.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    second = torch.load(out / "tlgan.pt", weights_only=True)
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].dtype.is_floating_point)



def test_time_limit_counts_earlier_runs_and_stops_with_a_checkpoint(tmp_path, capsys):
    cfg, run_dir, out = tiny_run(tmp_path, steps=1, checkpoint_every=100)
    train(cfg, device="cpu", run_dir=run_dir, out_dir=out)
    # the first run's seconds already exceed a 1 ms limit: the resumed run does one step, saves, stops
    train({**cfg, "steps": 50, "time_limit_minutes": 1e-5}, device="cpu", run_dir=run_dir, out_dir=out, resume=True)
    assert "time limit of 1e-05 min reached after 2 steps" in capsys.readouterr().out
    assert json.loads((out / "tlgan.json").read_text())["steps"] == 2
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == 2

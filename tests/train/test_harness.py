"""train/harness.py: the one loop (resume, loss log, time limit, snapshots, validation) and the ship step."""
import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")

from streamfuse import StreamfuseError  # noqa: E402
from streamfuse.models import get_model  # noqa: E402
from tests.helpers.synthetic import tiny_config  # noqa: E402
from train.harness import TrainClock, fit, train  # noqa: E402


def test_clock_without_limit_never_stops():
    clock = TrainClock(0, seconds_before=1e6)
    assert not clock.out_of_time("m", 1) and clock.seconds() >= 1e6


def test_clock_counts_earlier_runs(capsys):
    clock = TrainClock(1, seconds_before=59.0)
    assert not clock.out_of_time("m", 5)
    clock.t0 -= 2.0  # two more seconds of this run
    assert clock.out_of_time("m", 6)
    assert capsys.readouterr().out.strip() == "m: time limit of 1 min reached after 6 steps"


def halves(cfg):
    """The first half of ``cfg``'s schedule (for MetaFusion: phase 1 and the start of phase 2)."""
    if cfg.model == "metafusion":
        return dataclasses.replace(cfg, finetune_steps=cfg.finetune_steps - cfg.total_steps() // 2)
    return dataclasses.replace(cfg, steps=cfg.steps // 2)


@pytest.mark.parametrize("model", ["tlgan", "res2netfuse", "metafusion"])
def test_resumed_run_ends_bit_for_bit_where_one_run_ends(model, tmp_path):
    cfg = tiny_config(model, tmp_path, steps=4) if model != "metafusion" else tiny_config(model, tmp_path, steps=1, finetune_steps=3)
    fit(cfg, "cpu", tmp_path / "one")
    _, first = fit(halves(cfg), "cpu", tmp_path / "two")
    assert first["steps"] == 2
    _, facts = fit(cfg, "cpu", tmp_path / "two", resume=True)
    assert facts["resumed_from"] == 2 and facts["steps"] == 4
    # every network, optimiser and random generator state
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False) for d in ("one", "two"))
    assert a["step"] == b["step"] == 4
    for group in ("modules", "optimizers", "rng"):
        for name in a[group]:
            assert _equal(a[group][name], b[group][name]), (group, name)
    log_one, log_two = ((tmp_path / d / "losses.csv").read_text() for d in ("one", "two"))
    assert log_one == log_two and len(log_one.splitlines()) == 5


def _equal(x, y) -> bool:
    """Deep equality of nested state (tensors compared exactly)."""
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_equal(u, v) for u, v in zip(x, y))
    if hasattr(x, "shape"):  # numpy arrays inside numpy's generator state
        return bool((x == y).all())
    return x == y


def test_record_names_the_commit_the_training_started_from(tmp_path, monkeypatch):
    """The shipped files themselves dirty the tree (engines/ is tracked): the record must carry the
    commit as it was when the run started, not after it wrote its outputs."""
    from train import harness

    weights = tmp_path / "out" / "res2netfuse.pt"
    monkeypatch.setattr(harness, "git_commit", lambda: "a" * 40 + ("+dirty" if weights.exists() else ""))
    record = train(tiny_config("res2netfuse", tmp_path, steps=1), run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    assert record["git_commit"] == "a" * 40


def test_a_resumed_record_lists_the_commit_of_every_run(tmp_path, monkeypatch):
    from train import harness

    cfg = tiny_config("tlgan", tmp_path, steps=1)
    monkeypatch.setattr(harness, "git_commit", lambda: "a" * 40)
    train(cfg, run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    monkeypatch.setattr(harness, "git_commit", lambda: "b" * 40)
    record = train(dataclasses.replace(cfg, steps=3), run_dir=tmp_path / "run", out_dir=tmp_path / "out", resume=True)
    assert record["git_commit"] == "b" * 40
    assert record["runs"] == [{"from_step": 0, "git_commit": "a" * 40}, {"from_step": 1, "git_commit": "b" * 40}]


def test_ship_writes_weights_every_variant_and_the_record(tmp_path):
    cfg = tiny_config("res2netfuse", tmp_path, steps=2)
    record = train(cfg, run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    spec = get_model("res2netfuse")
    assert record["onnx"] == [spec.onnx_path(v).name for v in spec.variants]
    assert all((tmp_path / "out" / name).stat().st_size > 0 for name in record["onnx"])
    saved = json.loads((tmp_path / "out" / "res2netfuse.json").read_text())
    assert saved == json.loads(json.dumps(record, default=str))
    assert saved["config"]["steps"] == 2 and saved["seed"] == cfg.seed and saved["steps"] == 2
    assert saved["git_commit"] == "unknown" or len(saved["git_commit"].removesuffix("+dirty")) == 40
    assert set(saved["final_losses"]) == {"loss", "mse", "ssim"} and saved["train_seconds"] >= 0
    assert saved["final_metrics"]["ssim_on_image"] <= 1
    state = torch.load(tmp_path / "out" / "res2netfuse.pt", weights_only=True)
    module = spec.build(load_weights=False)
    module.load_state_dict(state)  # the shipped state loads into the registry's module
    from streamfuse.export.onnx import read_metadata, record_id

    for v in spec.variants:  # each graph names the training that made it: the record's commit, the weights' hash
        meta = read_metadata(tmp_path / "out" / spec.onnx_path(v).name)
        assert meta["training_record"] == record_id(saved["git_commit"], tmp_path / "out" / "res2netfuse.pt")
        assert (meta["model"], meta["variant"]) == ("res2netfuse", v)


def test_time_limit_counts_earlier_runs_and_stops_with_a_checkpoint(tmp_path, capsys):
    cfg = tiny_config("tlgan", tmp_path, steps=1, checkpoint_every=100)
    train(cfg, run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    # the first run's seconds already exceed a 0.6 ms limit: the resumed run does one step, saves, stops
    train(dataclasses.replace(cfg, steps=50, time_limit_minutes=1e-5), run_dir=tmp_path / "run",
          out_dir=tmp_path / "out", resume=True)
    assert "time limit of 1e-05 min reached after 2 steps" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "tlgan.json").read_text())["steps"] == 2
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 2


def test_select_by_validation_ships_the_best_snapshot(tmp_path):
    cfg = tiny_config("ddcgan", tmp_path, steps=3, snapshot_every=1, select_by_validation=True)
    record = train(cfg, run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    losses = {int(k): v for k, v in record["validation_loss_by_step"].items()}
    assert sorted(losses) == [1, 2, 3] and record["shipped_step"] == min(losses, key=losses.get)
    shipped = torch.load(tmp_path / "out" / "ddcgan.pt", weights_only=True)
    if record["shipped_step"] < 3:
        expected = torch.load(tmp_path / "run" / f"snapshot_{record['shipped_step']:06d}.pt", weights_only=True)
    else:
        expected = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["modules"]["g"]
    assert all(torch.equal(shipped[k], expected[k]) for k in expected)
    assert sorted(record["onnx"]) == ["ddcgan-x1.onnx", "ddcgan.onnx"]


def test_fresh_run_replaces_the_old_log_and_snapshots(tmp_path):
    cfg = tiny_config("ddcgan", tmp_path, steps=4, snapshot_every=1)
    fit(cfg, "cpu", tmp_path / "run")
    fit(dataclasses.replace(cfg, steps=2), "cpu", tmp_path / "run")
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "run").glob("snapshot_*.pt")) == ["snapshot_000001.pt", "snapshot_000002.pt"]


def test_log_rows_are_means_over_the_window(tmp_path):
    cfg = tiny_config("tlgan", tmp_path, steps=4)
    fit(cfg, "cpu", tmp_path / "each")
    fit(dataclasses.replace(cfg, log_every=2), "cpu", tmp_path / "pairs")
    each = [[float(x) for x in r.split(",")] for r in (tmp_path / "each" / "losses.csv").read_text().splitlines()[1:]]
    pairs = [[float(x) for x in r.split(",")] for r in (tmp_path / "pairs" / "losses.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in pairs] == [2, 4]
    for row, (a, b) in zip(pairs, (each[0:2], each[2:4])):
        assert row[1:] == pytest.approx([(x + y) / 2 for x, y in zip(a[1:], b[1:])], rel=1e-4)


def test_a_checkpoint_of_another_schema_or_model_is_one_clear_error(tmp_path):
    cfg = tiny_config("tlgan", tmp_path, steps=1)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 3, "modules": {}}, run / "checkpoint.pt")  # the old trainers' layout
    with pytest.raises(StreamfuseError, match="not a checkpoint of this trainer"):
        train(cfg, run_dir=run, out_dir=tmp_path / "out", resume=True)
    train(cfg, run_dir=run, out_dir=tmp_path / "out")
    other = tiny_config("ddpatchgan", tmp_path, steps=2)
    with pytest.raises(StreamfuseError, match="a checkpoint of 'tlgan', not of 'ddpatchgan'"):
        train(other, run_dir=run, out_dir=tmp_path / "out", resume=True)


def test_the_documented_example_of_a_new_model_trains_and_ships(tmp_path, monkeypatch):
    """The example in train/harness.py's docstring, run as written (its network: Res2NetFuse)."""
    import textwrap

    from train import harness

    doc = harness.__doc__
    last = 'return {"loss": loss.item()}'
    example = textwrap.dedent(doc[doc.index("    @dataclass(kw_only=True)"):doc.index(last) + len(last)])
    header = ("from dataclasses import dataclass\nimport torch\nimport torch.nn.functional as F\n"
              "from train import harness\nfrom train.config import PairConfig\n"
              "from streamfuse.models.res2netfuse import Res2NetFuse as MyNet\n\n")
    (tmp_path / "mymodel_recipe.py").write_text(header + example + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(harness.RECIPES, "res2netfuse", "mymodel_recipe")  # stands in for a registered "mymodel"
    cfg = tiny_config("tlgan", tmp_path)  # only for its synthetic data_root
    config = tmp_path / "mymodel.yaml"
    config.write_text(f"model: res2netfuse\nseed: 1\nsteps: 2\npatch: 32\nbatch_size: 2\nlr: 1.0e-3\n"
                      f"data_root: {cfg.data_root}\nlog_every: 1\n")
    from train.config import read_config

    record = train(read_config(config), run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    assert record["steps"] == 2 and set(record["final_losses"]) == {"loss"}
    assert record["onnx"] == ["res2netfuse.onnx", "res2netfuse-mean.onnx"]
    assert (tmp_path / "out" / "res2netfuse.pt").exists()


def test_select_by_validation_needs_a_model_with_a_validation_loss(tmp_path):
    cfg = tiny_config("tlgan", tmp_path, select_by_validation=True)
    with pytest.raises(StreamfuseError, match="select_by_validation: model 'tlgan' has no validation loss"):
        fit(cfg, "cpu", tmp_path / "run")
    assert not (tmp_path / "run").exists()  # stopped before any step

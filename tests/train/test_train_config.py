"""train/config.py: typed training configs; every config in train/configs/ loads (named test_train_config.py:
pytest cannot hold two test_config.py modules without packages)."""
import subprocess
import sys

import pytest

from streamfuse import StreamfuseError
from train.config import parse_overrides, read_config
from train.harness import REPO, RECIPES

CONFIGS = sorted((REPO / "train" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_as_its_models_typed_config(path):
    cfg = read_config(path)
    assert cfg.model in RECIPES and path.stem.split("_")[0] == cfg.model
    assert type(cfg).__module__ == RECIPES[cfg.model] and cfg.total_steps() >= cfg.steps > 0


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


BASE = "model: tlgan\nseed: 1\nsteps: 2\npatch: 32\nbatch_size: 2\nlr_g: 1.0e-4\nlr_d: 1.0e-4\nzeta: 100\nlam: 2\n"


def test_a_minimal_config_fills_the_defaults(tmp_path):
    cfg = read_config(write(tmp_path, BASE))
    assert cfg.g3_anchor == "f1" and cfg.d_steps == 1 and cfg.gain_range is None and cfg.lam == 2.0
    assert isinstance(cfg.lam, float)  # ints are accepted for floats and stored as floats


@pytest.mark.parametrize("extra, message", [
    ("stpes: 3\n", "c.yaml: unknown key 'stpes'; did you mean 'steps'?"),
    ("g3_anchor: f2\n", "c.yaml: key 'g3_anchor' must be one of 'f1', 'mean', got 'f2'"),
    ("patch: 32.5\n", "c.yaml: key 'patch' must be an integer, got 32.5"),
    ("gain_range: [0.3, high]\n", "c.yaml: key 'gain_range' must be a list of numbers or null, got [0.3, 'high']"),
    ("datasets: TNO\n", "c.yaml: key 'datasets' must be a list of strings or null, got 'TNO'"),
])
def test_bad_keys_are_one_line_naming_file_and_key(tmp_path, extra, message):
    with pytest.raises(StreamfuseError) as err:
        read_config(write(tmp_path, BASE + extra))
    assert str(err.value).endswith(message) and "\n" not in str(err.value)


def test_missing_keys_and_unknown_models(tmp_path):
    with pytest.raises(StreamfuseError, match=r"c.yaml: missing keys 'lr_g', 'lr_d'$"):
        read_config(write(tmp_path, BASE.replace("lr_g: 1.0e-4\nlr_d: 1.0e-4\n", "")))
    with pytest.raises(StreamfuseError, match=r"unknown model 'tlgn'; did you mean 'tlgan'\?"):
        read_config(write(tmp_path, BASE.replace("model: tlgan", "model: tlgn")))
    with pytest.raises(StreamfuseError, match="expected a YAML mapping with at least a 'model' key"):
        read_config(write(tmp_path, "- 1\n"))


def test_overrides_are_typed_and_checked(tmp_path):
    cfg = read_config(write(tmp_path, BASE), parse_overrides(["steps=7", "gain_range=[0.5, 1]", "g3_anchor=mean"]))
    assert cfg.steps == 7 and cfg.gain_range == [0.5, 1.0] and cfg.g3_anchor == "mean"
    with pytest.raises(StreamfuseError, match="--set: unknown key 'step'; did you mean 'steps'"):
        read_config(write(tmp_path, BASE), {"step": 3})
    with pytest.raises(StreamfuseError, match="with --set: key 'steps' must be an integer, got 'many'"):
        read_config(write(tmp_path, BASE), parse_overrides(["steps=many"]))
    with pytest.raises(StreamfuseError, match="--set steps: expected KEY=VALUE"):
        parse_overrides(["steps"])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "train", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_cli_reports_a_config_error_in_one_line_and_exits_2(tmp_path):
    result = run_cli("tlgan", "--set", "zeta=lots", "--out", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {REPO / 'train/configs/tlgan.yaml'} with --set: key 'zeta' must be a number, got 'lots'"
    assert not (tmp_path / "out").exists()
    with pytest.raises(StreamfuseError, match="missing.yaml: training config not found"):
        read_config(tmp_path / "missing.yaml")


def test_cli_trains_and_ships_to_the_out_folder(tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    result = run_cli("res2netfuse", "--set", "steps=2", "--set", "size=32", "--set", "log_every=1", "--out", out,
                     "--run-dir", run)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {"res2netfuse.pt", "res2netfuse.json", "res2netfuse.onnx", "res2netfuse-mean.onnx"}
    assert (run / "checkpoint.pt").exists() and len((run / "losses.csv").read_text().splitlines()) == 3
    assert "res2netfuse: 2 steps (2 in this run)" in result.stdout

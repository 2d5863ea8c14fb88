"""The wheel installs anywhere with its models: built from this checkout, installed into a folder of
its own, and run from another directory on the bundled sample with the default model and TLGAN."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import pytest

from streamfuse import PACKAGE_DIR, REPO_DIR, SAMPLE_DIR

pytestmark = pytest.mark.slow


def run(cmd, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)
    return proc


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, site folder the wheel is installed into, environment that imports it from there)."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist",
                 REPO_DIR])
    assert built.returncode == 0, built.stderr
    wheel = next((tmp / "dist").glob("streamfuse-*.whl"))
    site = tmp / "site"
    # --target and --no-deps: no network; numpy, onnxruntime, ... come from this interpreter's site-packages
    inst = run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel])
    assert inst.returncode == 0, inst.stderr
    env = {k: v for k, v in os.environ.items() if k != "STREAMFUSE_ENGINES"}
    env["PYTHONPATH"] = str(site)
    return wheel, site, env


def test_the_wheel_holds_the_graphs_not_the_weights(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    graphs = sorted(p.name for p in (REPO_DIR / "engines").glob("*.onnx"))
    assert graphs and all(f"streamfuse/engines/{g}" in names for g in graphs)
    assert not [n for n in names if n.endswith((".pt", ".engine", ".timing"))]
    # every source and data file of the package (a subpackage missing from pyproject's list, a data
    # file its package-data globs miss)
    files = {str(p.relative_to(REPO_DIR)) for p in PACKAGE_DIR.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}
    assert files and not files - names, f"not in the wheel: {sorted(files - names)}"
    # nothing big beside the graphs (weights, media, caches): the rest of the package is under 5 MB
    graph_bytes = sum(p.stat().st_size for p in (REPO_DIR / "engines").glob("*.onnx"))
    assert wheel.stat().st_size < graph_bytes + 5e6


def test_installed_cli_runs_every_shipped_model_from_elsewhere(installed, tmp_path):
    _, site, env = installed
    cli = site / "bin" / "streamfuse"
    where = run([sys.executable, "-c", "import streamfuse; print(streamfuse.__file__)"], cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr

    models = run([cli, "models"], cwd=tmp_path, env=env)
    assert models.returncode == 0, models.stderr
    assert f"graphs and weights from {site / 'streamfuse' / 'engines'}" in models.stdout
    assert "tlgan          default            1/1          1/1      -" in models.stdout  # graph yes, .pt not shipped

    sample = site / "streamfuse" / "data" / "sample"
    # the whole sample with TLGAN; 3 frames with the default model (Res2NetFuse: ~4x TLGAN's compute per frame)
    for extra, frames in ((["--max-frames", "3"], 3), (["--model", "tlgan"], 20)):
        out = tmp_path / f"fused{frames}.mp4"
        res = run([cli, "run", "--ir", sample / "ir.mp4", "--vis", sample / "vis.mp4", "-o", out, "--no-progress",
                   *extra], cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        assert frame_count(out) == frames
    assert frame_count(sample / "vis.mp4") == 20


def test_installed_cli_gives_a_hint_that_works_there(installed, tmp_path):
    _, site, env = installed
    clips = [str(SAMPLE_DIR / name) for name in ("ir.mp4", "vis.mp4")]  # inputs are checked before the model
    res = run([site / "bin" / "streamfuse", "run", "--ir", clips[0], "--vis", clips[1], "-o", "x.mp4",
               "--model", "tlgan", "--backend", "onnxruntime"], cwd=tmp_path, env={**env, "STREAMFUSE_ENGINES": str(tmp_path)})
    err = res.stderr.strip()
    assert res.returncode == 2 and "\n" not in err, err
    assert err.startswith(f"error: {tmp_path / 'tlgan.onnx'}: ONNX graph for 'tlgan' not found")
    assert f"(STREAMFUSE_ENGINES={tmp_path}; this installation ships graphs, not weights" in err and "run.py" not in err

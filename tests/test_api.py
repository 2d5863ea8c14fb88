"""The public Python API: the README's example runs as written, ``import streamfuse`` stays light,
and ``Fusion`` is the pipeline's stage."""
import re
import subprocess
import sys

import numpy as np
import pytest

import streamfuse
from streamfuse import REPO_DIR, SAMPLE_DIR, StreamfuseError


def readme_example() -> str:
    section = (REPO_DIR / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's Python API section should hold one python example"
    return blocks[0]


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    import cv2

    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_example(), "README.md (Python API)", "exec"), namespace)
    fused = cv2.imread(str(tmp_path / "fused.png"))
    assert fused.shape == (512, 640, 3) and fused.std() > 10
    assert namespace["stats"].written == 5 and (tmp_path / "out" / "fused.mp4").stat().st_size > 0
    assert capsys.readouterr().out.startswith("5 frames at ")


def test_import_streamfuse_loads_no_runtime():
    code = ("import sys, streamfuse; streamfuse.Fusion, streamfuse.run; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_DIR, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_fusion_is_the_pipeline_stage():
    from streamfuse.stage import CpuStage
    from tests.helpers.clips import kaist_images

    fusion = streamfuse.Fusion(model="average", backend="onnxruntime")
    ir, vis = kaist_images()
    assert isinstance(fusion.stage, CpuStage)
    np.testing.assert_array_equal(fusion(ir, vis), CpuStage(fusion.fuser).process(ir, vis).fused)
    assert fusion(ir, vis[..., 0].copy()).shape == (512, 640)  # gray visible -> gray output


def test_api_errors_are_streamfuse_errors(tmp_path):
    with pytest.raises(StreamfuseError, match="unknown key 'max_frame'; did you mean 'max_frames'"):
        streamfuse.run(ir=str(SAMPLE_DIR / "ir.mp4"), vis=str(SAMPLE_DIR / "vis.mp4"), output=str(tmp_path / "o.mp4"),
                       max_frame=2)
    with pytest.raises(StreamfuseError, match="nope.yaml: calibration file not found"):
        streamfuse.Fusion(model="average", calib=tmp_path / "nope.yaml")

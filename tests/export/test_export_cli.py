"""The CLI side of this part: `run.py build` and `run.py export --check-fp16`."""
import importlib.util
from pathlib import Path

import cv2
import pytest

from streamfuse.cli import main

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_build_bad_size_and_missing_tensorrt(capsys):
    assert main(["build", "--size", "640"]) == 2
    assert "--size '640': expected WIDTHxHEIGHT" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        assert main(["build", "--model", "res2netfuse", "--size", "640x512"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: TensorRT is not installed") and "pip install tensorrt" in err and "\n" not in err


def test_check_fp16_on_real_pairs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from streamfuse.export.onnx import export_onnx
    from streamfuse.models import get_model

    tno = SHARED_DATA / "TNO"
    if not tno.is_dir():
        pytest.skip(f"real data {tno} not present")
    data = tmp_path / "pairs"
    for side in ("ir", "vis"):  # two real TNO pairs, shrunk to keep the check quick
        (data / side).mkdir(parents=True)
        for stem in ("Kaptein_1654", "bunker"):
            img = cv2.imread(str(tno / side / f"{stem}.bmp"), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(data / side / f"{stem}.png"), cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA))
    engines = tmp_path / "engines"
    monkeypatch.setenv("STREAMFUSE_ENGINES", str(engines))
    spec = get_model("res2netfuse")
    export_onnx("res2netfuse", "l1", out=engines / "res2netfuse.onnx", module=spec.build("l1", load_weights=False))
    capsys.readouterr()
    code = main(["export", "--model", "res2netfuse", "--variant", "l1", "--check-fp16", "--data", str(data), "--pairs", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "largest |activation| per layer on 2 real pair(s)" in out
    assert "0 beyond the FP16 range" in out and "every operator supported" in out
    assert out.strip().endswith("FP16 check: pass")

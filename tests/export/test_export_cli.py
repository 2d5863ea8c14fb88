"""The CLI side of this part: `run.py build` and `run.py export --check-fp16`."""
import importlib.util

import cv2
import pytest

from streamfuse import SAMPLE_DIR
from streamfuse.cli import main
from tests.helpers.clips import m3svd_frames


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

    data = tmp_path / "pairs"
    m3svd = dict(zip(("ir", "vis"), m3svd_frames(1)))
    for side in ("ir", "vis"):  # the two bundled real pairs (a KAIST still, an M3SVD frame), shrunk to keep it quick
        (data / side).mkdir(parents=True)
        images = {"kaist": cv2.imread(str(SAMPLE_DIR / "images" / side / "set08_V000_I02159.png"), cv2.IMREAD_UNCHANGED),
                  "m3svd": m3svd[side][0]}
        for stem, img in images.items():
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

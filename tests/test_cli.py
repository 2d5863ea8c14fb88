"""The `fuse` and `models` commands, end to end, including every bad-input case."""
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from streamfuse import REPO_DIR
from streamfuse.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO_DIR / "run.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO_DIR, timeout=300)


def test_fuse_tno_folder_through_a_subprocess(tno, tmp_path):
    r = run_cli("fuse", "--ir", tno / "ir", "--vis", tno / "vis", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outs) == 18
    assert "fused 18 pair(s)" in r.stdout and "ms per pair" in r.stdout
    first = cv2.imread(str(outs[0]), cv2.IMREAD_UNCHANGED)
    src = cv2.imread(str(tno / "vis" / f"{outs[0].stem}.bmp"), cv2.IMREAD_UNCHANGED)
    assert first.shape[:2] == src.shape[:2]


def test_fuse_one_pair_with_mean_strategy(tno, tmp_path, capsys):
    out = tmp_path / "f.png"
    assert main(["fuse", "--ir", str(tno / "ir/Farm.bmp"), "--vis", str(tno / "vis/Farm.bmp"), "-o", str(out),
                 "--strategy", "mean", "--backend", "onnxruntime"]) == 0
    assert cv2.imread(str(out)).shape == (371, 472, 3)
    assert "res2netfuse/mean" in capsys.readouterr().out


def test_models_lists_res2netfuse(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "res2netfuse" in out and "l1|mean" in out
    assert "metafusion     x1|x2|x4           1/1|1/2|1/4  3/3" in out  # every variant's graph is there


def pair_dir(tmp_path, tno, stems):
    for side in ("ir", "vis"):
        (tmp_path / side).mkdir(parents=True, exist_ok=True)
    for stem, sides in stems.items():
        for side in sides:
            shutil.copy(tno / side / f"{stem}.bmp", tmp_path / side / f"{stem}.bmp")
    return tmp_path / "ir", tmp_path / "vis"


def test_unpaired_stems_are_listed_and_the_rest_fused(tno, tmp_path, caplog):
    ir, vis = pair_dir(tmp_path, tno, {"DHV_163": ("ir", "vis"), "Farm": ("ir",), "Marne_02": ("vis",)})
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "-o", str(tmp_path / "o")]) == 0
    err = caplog.text
    assert "1 IR file(s) without a partner, skipped: Farm" in err
    assert "1 visible file(s) without a partner, skipped: Marne_02" in err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["DHV_163.png"]


def test_corrupt_image_names_the_file_and_others_still_fused(tno, tmp_path, caplog, capsys):
    ir, vis = pair_dir(tmp_path, tno, {"DHV_163": ("ir", "vis"), "Farm": ("ir", "vis")})
    (ir / "Farm.bmp").write_bytes(b"BM this is not a bitmap")
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "-o", str(tmp_path / "o")]) == 0
    assert "Farm.bmp: cannot decode as an IR image" in caplog.text
    assert "1 pair(s) failed" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["DHV_163.png"]  # no half-written file


@pytest.mark.parametrize("case, expect", [
    ("missing", "IR image file not found"),
    ("corrupt", "cannot decode as an IR image"),
    ("empty_dir", "no image files"),
    ("no_common", "no file stems in common"),
    ("model", "unknown model 'res2net' (did you mean 'res2netfuse'?)"),
    ("backend", "unknown backend 'onnx'"),
    ("mixed", "must both be files or both be folders"),
])
def test_bad_input_is_one_line_and_exit_2(tno, tmp_path, case, expect):
    ir, vis, out = tno / "ir/Farm.bmp", tno / "vis/Farm.bmp", tmp_path / "out.png"
    extra = []
    if case == "missing":
        ir = tmp_path / "nope.png"
    elif case == "corrupt":
        ir = tmp_path / "bad.png"
        ir.write_bytes(b"\x89PNG garbage")
    elif case == "empty_dir":
        (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
        ir, vis, out = tmp_path / "a", tmp_path / "b", tmp_path / "o"
    elif case == "no_common":
        ir, vis = pair_dir(tmp_path, tno, {"Farm": ("ir",), "DHV_163": ("vis",)})
        out = tmp_path / "o"
    elif case == "model":
        extra = ["--model", "res2net"]
    elif case == "backend":
        extra = ["--backend", "onnx"]
    elif case == "mixed":
        ir = tno / "ir"
    r = run_cli("fuse", "--ir", ir, "--vis", vis, "-o", out, *extra)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert not out.exists() or (out.is_dir() and not any(out.iterdir()))


def test_fuse_and_run_take_any_graph_by_its_metadata(tmp_path, capsys):
    from streamfuse import SAMPLE_DIR
    from streamfuse.models import get_model

    copy = tmp_path / "renamed.onnx"
    shutil.copy(get_model("ddcgan").onnx_path("x4"), copy)
    ir, vis = (SAMPLE_DIR / "images" / side / "set08_V000_I02159.png" for side in ("ir", "vis"))
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "-o", str(tmp_path / "a.png"), "--onnx", str(copy),
                 "--backend", "onnxruntime"]) == 0
    assert "ddcgan/x4 on onnxruntime" in capsys.readouterr().out
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "-o", str(tmp_path / "b.png"), "--model", "ddcgan",
                 "--backend", "onnxruntime"]) == 0
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "a.png")), cv2.imread(str(tmp_path / "b.png")))
    capsys.readouterr()
    assert main(["run", "--ir", str(SAMPLE_DIR / "ir.mp4"), "--vis", str(SAMPLE_DIR / "vis.mp4"), "-o",
                 str(tmp_path / "f.mp4"), "--onnx", str(copy), "--backend", "onnxruntime", "--max-frames", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 fused frame(s)" in out and "(ddcgan/x4 on onnxruntime" in out

"""The `fuse` and `models` commands, end to end, including every bad-input case."""
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from streamfuse import REPO_DIR
from streamfuse.cli import main
from tests.helpers.clips import kaist_images, m3svd_frames


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO_DIR / "run.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO_DIR, timeout=300)


@pytest.fixture
def pairs(tmp_path):
    """A folder of real pairs from the bundled sample: the KAIST still (kaist, 640x512) and M3SVD
    frames 0, 5, 10 (m3svd_00NN, 640x480), as pairs/{ir,vis}/<stem>.png."""
    root = tmp_path / "pairs"
    irs, viss = m3svd_frames(11, size=(640, 480))
    images = {"kaist": kaist_images(), **{f"m3svd_{i:04d}": (irs[i], viss[i]) for i in (0, 5, 10)}}
    for side in ("ir", "vis"):
        (root / side).mkdir(parents=True)
    for stem, (ir, vis) in images.items():
        cv2.imwrite(str(root / "ir" / f"{stem}.png"), ir)
        cv2.imwrite(str(root / "vis" / f"{stem}.png"), vis)
    return root


def test_fuse_sample_folder_through_a_subprocess(pairs, tmp_path):
    r = run_cli("fuse", "--ir", pairs / "ir", "--vis", pairs / "vis", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outs) == 4
    assert "fused 4 pair(s)" in r.stdout and "ms per pair" in r.stdout
    first = cv2.imread(str(outs[0]), cv2.IMREAD_UNCHANGED)
    src = cv2.imread(str(pairs / "vis" / f"{outs[0].stem}.png"), cv2.IMREAD_UNCHANGED)
    assert first.shape[:2] == src.shape[:2]


def test_fuse_one_pair_with_mean_strategy(pairs, tmp_path, capsys):
    out = tmp_path / "f.png"
    assert main(["fuse", "--ir", str(pairs / "ir/kaist.png"), "--vis", str(pairs / "vis/kaist.png"), "-o", str(out),
                 "--model", "res2netfuse", "--strategy", "mean", "--backend", "onnxruntime"]) == 0
    assert cv2.imread(str(out)).shape == (512, 640, 3)
    assert "res2netfuse/mean" in capsys.readouterr().out


def test_models_lists_res2netfuse(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "res2netfuse" in out and "l1|mean" in out
    assert "metafusion     x1|x2|x4           1/1|1/2|1/4  3/3" in out  # every variant's graph is there


def pair_dir(tmp_path, pairs, stems):
    for side in ("ir", "vis"):
        (tmp_path / side).mkdir(parents=True, exist_ok=True)
    for stem, sides in stems.items():
        for side in sides:
            shutil.copy(pairs / side / f"{stem}.png", tmp_path / side / f"{stem}.png")
    return tmp_path / "ir", tmp_path / "vis"


def test_unpaired_stems_are_listed_and_the_rest_fused(pairs, tmp_path, caplog):
    ir, vis = pair_dir(tmp_path, pairs, {"m3svd_0000": ("ir", "vis"), "kaist": ("ir",), "m3svd_0005": ("vis",)})
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "-o", str(tmp_path / "o")]) == 0
    err = caplog.text
    assert "1 IR file(s) without a partner, skipped: kaist" in err
    assert "1 visible file(s) without a partner, skipped: m3svd_0005" in err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["m3svd_0000.png"]


def test_corrupt_image_names_the_file_and_others_still_fused(pairs, tmp_path, caplog, capsys):
    ir, vis = pair_dir(tmp_path, pairs, {"m3svd_0000": ("ir", "vis"), "kaist": ("ir", "vis")})
    (ir / "kaist.png").write_bytes(b"\x89PNG this is not a PNG")
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "-o", str(tmp_path / "o")]) == 0
    assert "kaist.png: cannot decode as an IR image" in caplog.text
    assert "1 pair(s) failed" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["m3svd_0000.png"]  # no half-written file


@pytest.mark.parametrize("case, expect", [
    ("missing", "IR image file not found"),
    ("corrupt", "cannot decode as an IR image"),
    ("empty_dir", "no image files"),
    ("no_common", "no file stems in common"),
    ("model", "unknown model 'res2net' (did you mean 'res2netfuse'?)"),
    ("backend", "unknown backend 'onnx'"),
    ("mixed", "must both be files or both be folders"),
])
def test_bad_input_is_one_line_and_exit_2(pairs, tmp_path, case, expect):
    ir, vis, out = pairs / "ir/kaist.png", pairs / "vis/kaist.png", tmp_path / "out.png"
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
        ir, vis = pair_dir(tmp_path, pairs, {"kaist": ("ir",), "m3svd_0000": ("vis",)})
        out = tmp_path / "o"
    elif case == "model":
        extra = ["--model", "res2net"]
    elif case == "backend":
        extra = ["--backend", "onnx"]
    elif case == "mixed":
        ir = pairs / "ir"
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

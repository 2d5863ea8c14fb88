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
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "-o", str(tmp_path / "o")]) == 1
    assert "kaist.png: cannot decode as an IR image" in caplog.text
    assert "1 of 2 pair(s) failed: kaist" in capsys.readouterr().err
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


def one_error_line(r) -> str:
    """The only line on stderr of a refused command: it starts with 'error:' (no traceback, no usage)."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_fuse_folder_with_a_bad_pair_fuses_the_rest_names_it_and_exits_1(pairs, tmp_path):
    (pairs / "vis" / "m3svd_0005.png").write_bytes(b"\x89PNG truncated")
    r = run_cli("fuse", "--ir", pairs / "ir", "--vis", pairs / "vis", "-o", tmp_path / "out", "--model", "max")
    assert r.returncode == 1, r.stderr
    assert "fused 3 pair(s)" in r.stdout
    assert "1 of 4 pair(s) failed: m3svd_0005 (see above)" in r.stderr.splitlines()
    assert "m3svd_0005.png: cannot decode as a visible image" in r.stderr  # the reason, with its article right
    assert sorted(p.stem for p in (tmp_path / "out").iterdir()) == ["kaist", "m3svd_0000", "m3svd_0010"]


@pytest.mark.parametrize("args, expect", [
    (["--precision", "fp8"], "precision 'fp8': expected one of fp32, fp16, int8"),
    (["--precision", "int8"], "precision 'int8': no backend, not int8"),
    (["--precision", "fp16", "--backend", "onnxruntime"], "precision 'fp16': backend 'onnxruntime' runs fp32, not fp16"),
    (["--agc", "nan,99"], "--agc 'nan,99': expected 0 <= low < high <= 100"),
    (["-o", "{blocker}/sub/out.png"], "-o {blocker}/sub/out.png: cannot write to folder"),
    (["-o", "{blocker}/sub"], "-o {blocker}/sub: cannot write to folder"),
])
def test_fuse_refuses_bad_options_and_outputs_in_one_line_before_the_model_loads(pairs, tmp_path, args, expect):
    """One line and no "INFO: backend auto -> ..." line: nothing was loaded."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    args = [a.format(blocker=blocker) for a in args]
    out = [] if "-o" in args else ["-o", tmp_path / "out.png"]
    r = run_cli("fuse", "--ir", pairs / "ir/kaist.png", "--vis", pairs / "vis/kaist.png", *out, *args)
    assert r.returncode == 2
    assert expect.format(blocker=blocker) in one_error_line(r)
    assert not (tmp_path / "out.png").exists() and blocker.read_text().startswith("a file")


RUN = "run --ir {ir} --vis {vis} --model max"
CALIBRATE = "calibrate --ir {ir} --vis {vis} --auto"


@pytest.mark.parametrize("command, expect", [
    (RUN + " -o {tmp}/f.mp4 --offset-ms nan", "argument --offset-ms: 'nan' is not a finite number"),
    (RUN + " -o {tmp}/f.mp4 --tolerance-ms inf", "argument --tolerance-ms: 'inf' is not a finite number"),
    (RUN + " -o {tmp}/f.mp4 --max-wait-ms=-inf", "argument --max-wait-ms: '-inf' is not a finite number"),
    ("batch {tmp} -o {tmp}/out --fps nan", "argument --fps: 'nan' is not a finite number"),
    (CALIBRATE + " -o {tmp}/rig.yaml --fov-ratio inf", "argument --fov-ratio: 'inf' is not a finite number"),
    (RUN + " -o {tmp}/f.mp4 --precision fp8", "precision 'fp8': expected one of fp32, fp16, int8"),
    (RUN + " -o {existing}", "{existing}: is an existing folder; to write one image per frame into it, say images://{existing}"),
    ("run --ir {ir} --vis {tmp}/missing.mp4 -o {tmp}/f.mp4", "{tmp}/missing.mp4: no such video file"),
    (RUN + " -o {blocker}/f.mp4", "{blocker}/f.mp4: cannot write to folder"),
    ("eval --fused {tmp} --ir {tmp} --vis {tmp} --out {blocker}/report", "--out {blocker}/report: cannot write to folder"),
    ("bench --models max --backends onnxruntime --sizes 64x64 --frames 2 --out {blocker}/bench",
     "--out {blocker}/bench: cannot write to folder"),
    (CALIBRATE + " -o {blocker}/rig.yaml", "-o {blocker}/rig.yaml: cannot write to folder"),
    (CALIBRATE + " -o {tmp}/rig.yaml --overlay {blocker}/o.png", "--overlay {blocker}/o.png: cannot write to folder"),
    ("batch {tmp} -o {blocker}/out", "-o {blocker}/out: cannot write to folder"),
])
def test_every_command_refuses_bad_numbers_and_unwritable_outputs_in_one_line(tmp_path, command, expect):
    """Before any work: one line, exit 2, nothing written anywhere (the model never loads: no INFO line)."""
    from streamfuse import SAMPLE_DIR

    names = {"ir": SAMPLE_DIR / "ir.mp4", "vis": SAMPLE_DIR / "vis.mp4", "tmp": tmp_path,
             "blocker": tmp_path / "file.txt", "existing": tmp_path / "frames"}
    names["blocker"].write_text("x")
    names["existing"].mkdir()
    (names["existing"] / "keep.txt").write_text("mine")
    before = sorted(tmp_path.rglob("*"))
    r = run_cli(*[word.format(**names) for word in command.split()])
    assert r.returncode == 2
    assert expect.format(**names) in one_error_line(r)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no folder made


def test_ctrl_c_while_the_model_loads_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    """A real SIGINT, raised while load_fuser runs (where a user's Ctrl-C lands in the first seconds)."""
    import os
    import signal

    import streamfuse.backends
    from streamfuse import SAMPLE_DIR

    real_load = streamfuse.backends.load_fuser

    def load_then_ctrl_c(*args, **kwargs):
        fuser = real_load(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return fuser

    monkeypatch.setattr(streamfuse.backends, "load_fuser", load_then_ctrl_c)
    out = tmp_path / "fused.mp4"
    code = main(["run", "--ir", str(SAMPLE_DIR / "ir.mp4"), "--vis", str(SAMPLE_DIR / "vis.mp4"), "-o", str(out),
                 "--model", "max", "--backend", "onnxruntime", "--no-progress"])  # (auto calls load_fuser again)
    printed, err = capsys.readouterr()
    assert code == 130, err
    assert f"interrupted before the first fused frame; nothing written to {out}" in printed, err
    assert "wrote 0" not in printed and not out.exists()


def test_a_run_that_fuses_nothing_says_so_and_exits_1(tmp_path):
    from streamfuse import SAMPLE_DIR

    out = tmp_path / "fused.mp4"  # an offset of an hour: no IR frame has a visible partner
    r = run_cli("run", "--ir", SAMPLE_DIR / "ir.mp4", "--vis", SAMPLE_DIR / "vis.mp4", "-o", out, "--model", "max",
                "--offset-ms", "3600000", "--no-progress")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"no frame was fused, nothing written to {out}; stopped by: " in r.stdout
    assert not out.exists()


def test_same_file_as_ir_and_visible_is_a_warning(pairs, tmp_path, caplog):
    ir = pairs / "ir" / "kaist.png"
    assert main(["fuse", "--ir", str(ir), "--vis", f"{pairs}/vis/../ir/kaist.png", "-o", str(tmp_path / "f.png"),
                 "--model", "max"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"--ir and --vis are the same source ({ir}): the output is that input fused with itself"]


def test_eval_with_a_bad_pair_scores_the_rest_and_exits_1(pairs, tmp_path):
    fused = tmp_path / "max"
    fused.mkdir()
    for p in (pairs / "vis").iterdir():
        shutil.copy(p, fused / p.name)  # any 8-bit image of the right size scores
    (pairs / "ir" / "m3svd_0010.png").write_bytes(b"not an image")
    r = run_cli("eval", "--ir", pairs / "ir", "--vis", pairs / "vis", "--fused", fused, "--metrics", "EN,SD",
                "--out", tmp_path / "report")
    assert r.returncode == 1, r.stderr
    assert "1 of 4 pair(s) failed: m3svd_0010 (see above)" in r.stderr.splitlines()
    assert "m3svd_0010.png: cannot decode as an IR image" in r.stderr
    rows = (tmp_path / "report" / "per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and not any("m3svd_0010" in row for row in rows)


def test_bench_with_a_measurement_that_could_not_load_exits_1(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a graph")
    r = run_cli("bench", "--models", "max", "--backends", "onnxruntime", "--sizes", "64x64", "--frames", "2",
                "--onnx", bad, "--out", tmp_path / "bench")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "1 of 1 measurement(s) failed: max/onnxruntime/64x64 (see above)" in r.stderr.splitlines()
    assert (tmp_path / "bench.md").is_file()

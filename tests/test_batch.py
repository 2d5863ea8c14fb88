"""`run.py batch`: dataset layouts, per-sequence outputs, resume after SIGKILL, failure isolation, Ray.

Datasets are built in tmp_path from real frames: the bundled M3SVD sample (always) and, where
../shared/data exists, M3SVD and LLVIP frames; 8 frames per sequence at 160x120 keep it quick.
Batches run as `run.py batch` subprocesses (the kill test needs one) or through cli.main (Ray).
"""
from __future__ import annotations

import csv
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import pytest

from streamfuse import REPO_DIR, SAMPLE_DIR, StreamfuseError
from streamfuse.batch import find_sequences, read_manifest
from streamfuse.io.sinks import open_sink
from streamfuse.io.sources import open_source

FRAMES = 8
SIZE = (160, 120)
MODEL = ["--model", "average", "--device", "cpu"]  # the batch machinery is under test, not a model (cpu: no torch import)


@functools.lru_cache(maxsize=None)
def sample_frames(kind: str) -> tuple:
    """The first FRAMES frames of the bundled sample video, downscaled to SIZE."""
    with open_source(str(SAMPLE_DIR / f"{kind}.mp4"), kind=kind) as src:
        return tuple(cv2.resize(f.image, SIZE, interpolation=cv2.INTER_AREA) for f, _ in zip(src, range(FRAMES)))


def write_frames(folder: Path, frames, ext: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / f"I{i:05d}{ext}"), img)


def write_video(path: Path, frames, fps: float = 30.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_sink(str(path), fps=fps) as out:
        for i, img in enumerate(frames):
            out.write(img, round(i * 1e9 / fps))


def kaist_tree(root: Path, names) -> Path:
    for name in names:
        write_frames(root / name / "lwir", sample_frames("ir"))
        write_frames(root / name / "visible", sample_frames("vis"))
    return root


def pairs_tree(root: Path) -> Path:
    """Two video pairs, and one sequence as ir/ + vis/ frame folders."""
    for name in ("a", "b"):
        write_video(root / f"{name}_ir.mp4", sample_frames("ir"))
        write_video(root / f"{name}_vis.mp4", sample_frames("vis"))
    write_frames(root / "c" / "ir", sample_frames("ir"), ".png")
    write_frames(root / "c" / "vis", sample_frames("vis"), ".png")
    return root


def run_batch(*args, check_rc: int | None = 0, progress: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO_DIR / "run.py"), "batch", *map(str, args)] + ([] if progress else ["--no-progress"])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_DIR, env=dict(os.environ), timeout=600)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


def video_times(path: Path) -> list[Fraction]:
    """Presentation times (s) of every decoded frame of a video, decoded with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.pts * stream.time_base for frame in container.decode(stream)]


def check_video(path: Path, frames: int, fps: float) -> None:
    times = video_times(path)
    assert len(times) == frames, path
    # each frame keeps its visible source's time, to the container's precision (MKV: 1 ms)
    assert all(abs(float(t) - i / fps) <= 0.001 for i, t in enumerate(times)), (path, times)


def children(pid: int) -> list[int]:
    """Process ids of the children of ``pid`` (Linux /proc)."""
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def summary_rows(out: Path) -> dict[str, dict]:
    with (out / "summary.csv").open(newline="") as f:
        return {row["sequence"]: row for row in csv.DictReader(f)}


# ------------------------------------------------------------------------------------- layouts
def test_find_sequences_recognises_kaist_pairs_and_m3svd(tmp_path):
    kaist_tree(tmp_path / "kaist", ["set00/V000", "set01/V003"])
    pairs_tree(tmp_path / "ino")
    for kind, folder in (("ir", "infrared"), ("vis", "visible")):  # M3SVD: infrared/<seq>/, visible/<seq>/
        write_frames(tmp_path / "m3svd" / folder / "0111_1716", sample_frames(kind)[:5], ".png")
    write_video(tmp_path / "ino" / "lonely_ir.mp4", sample_frames("ir")[:2])
    (tmp_path / "kaist" / "set01" / "calibration.yaml").write_text((REPO_DIR / "calibration/identity.yaml").read_text())

    seqs = {s.name: s for s in find_sequences(tmp_path)}
    assert sorted(seqs) == ["ino/a", "ino/b", "ino/c", "ino/lonely", "kaist/set00/V000", "kaist/set01/V003",
                            "m3svd/0111_1716"]
    assert {s.layout for n, s in seqs.items() if n.startswith("kaist")} == {"kaist"}
    assert seqs["kaist/set00/V000"].frames == FRAMES and seqs["m3svd/0111_1716"].frames == 5
    assert seqs["ino/a"].frames == FRAMES and seqs["ino/a"].ir.endswith("a_ir.mp4")
    assert seqs["ino/lonely"].problem.endswith("lonely_ir.mp4: no visible partner found")
    assert seqs["kaist/set01/V003"].calib == str(tmp_path / "kaist/set01/calibration.yaml")
    assert seqs["kaist/set00/V000"].calib is None
    assert [s.name for s in find_sequences(tmp_path, "kaist")] == ["kaist/set00/V000", "kaist/set01/V003"]


def test_frame_folders_with_unmatched_names_cannot_run(tmp_path):
    kaist_tree(tmp_path, ["set00/V000"])
    (tmp_path / "set00/V000/visible/I00003.jpg").unlink()
    (seq,) = find_sequences(tmp_path)
    assert "1 frame(s) without a partner" in seq.problem and "I00003" in seq.problem


def test_manifest_csv_and_yaml(tmp_path):
    (tmp_path / "rows.csv").write_text("ir,vis,output,calib,offset_ms\n"
                                       "clips/x_ir.mp4,clips/x_vis.mp4,site1/x.mkv,rig.yaml,-33.3\n"
                                       "/abs/ir,/abs/vis,site1/y,,\n")
    x, y = read_manifest(tmp_path / "rows.csv")
    assert (x.name, x.suffix, x.offset_ms, x.calib) == ("site1/x", ".mkv", -33.3, str(tmp_path / "rig.yaml"))
    assert x.ir == str(tmp_path / "clips/x_ir.mp4") and "ir source not found" in x.problem
    assert (y.name, y.suffix, y.calib, y.offset_ms) == ("site1/y", ".mp4", None, None)
    (tmp_path / "rows.yaml").write_text("- {ir: a.mp4, vis: b.mp4, output: out/a}\n")
    assert read_manifest(tmp_path / "rows.yaml")[0].vis == str(tmp_path / "b.mp4")
    (tmp_path / "bad.csv").write_text("ir,vis,output,fps\na,b,c,30\n")
    with pytest.raises(StreamfuseError, match=r"bad.csv line 2: unknown column 'fps'"):
        read_manifest(tmp_path / "bad.csv")


# ------------------------------------------------------------------------------------- batches
def test_batch_two_workers_fuses_every_sequence(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    kaist_tree(data / "kaist", ["set00/V000", "set00/V001"])
    pairs_tree(data / "pairs")
    calib = (REPO_DIR / "calibration/identity.yaml").read_text().replace("output_size: null", "output_size: [96, 72]")
    assert "output_size: [96, 72]" in calib
    (data / "kaist/set00/V001/calibration.yaml").write_text(calib)

    proc = run_batch(data, "-o", out, "--workers", 2, "--fps", 20, *MODEL, progress=True)
    assert "found 5 sequence(s) (2 kaist, 3 pairs), 40 frame pairs" in proc.stdout
    bars = {name: (int(done), int(total)) for name, done, total in  # the last state of each progress bar
            re.findall(r"(sequences|frames): +\d+%\|[^|]*\| (\d+)/(\d+) ", proc.stderr)}
    assert bars == {"sequences": (5, 5), "frames": (40, 40)}, proc.stderr
    rows = summary_rows(out)
    assert {name: row["status"] for name, row in rows.items()} == {
        "kaist/set00/V000": "done", "kaist/set00/V001": "done", "pairs/a": "done", "pairs/b": "done", "pairs/c": "done"}
    workers = set()
    for name, fps in (("kaist/set00/V000", 20), ("kaist/set00/V001", 20), ("pairs/a", 30), ("pairs/b", 30),
                      ("pairs/c", 20)):
        check_video(out / f"{name}.mp4", FRAMES, fps)
        record = json.loads((out / f"{name}.json").read_text())
        assert record["stats"]["written"] == FRAMES and record["stats"]["read"] == {"ir": FRAMES, "vis": FRAMES}
        assert rows[name]["fused"] == str(FRAMES)
        assert record["worker"]["model_loads"] == 1  # one model load per worker process, not per sequence
        workers.add(record["worker"]["pid"])
    assert 1 <= len(workers) <= 2
    with av.open(str(out / "kaist/set00/V001.mp4")) as c:  # its calibration.yaml was used
        assert (c.streams.video[0].width, c.streams.video[0].height) == (96, 72)
    with av.open(str(out / "kaist/set00/V000.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == SIZE
    assert "5 done, 0 skipped (complete), 0 failed; 40 frames fused" in (out / "summary.md").read_text()


def test_images_keep_the_source_frame_names(tmp_path):
    data, out = kaist_tree(tmp_path / "data", ["set02/V000"]), tmp_path / "out"
    run_batch(data, "-o", out, "--images", "--workers", 1, *MODEL)
    names = sorted(p.name for p in (out / "set02/V000").iterdir())
    assert names == [f"I{i:05d}.jpg" for i in range(FRAMES)]
    assert cv2.imread(str(out / "set02/V000/I00000.jpg")).shape == (SIZE[1], SIZE[0], 3)
    again = run_batch(data, "-o", out, "--images", "--workers", 1, *MODEL)
    assert "skipped set02/V000: 8 frames" in again.stderr


def test_manifest_batch_with_calibration_and_offset(tmp_path):
    data, out = pairs_tree(tmp_path / "clips"), tmp_path / "out"
    (tmp_path / "rig.yaml").write_text((REPO_DIR / "calibration/identity.yaml").read_text())
    (tmp_path / "rows.csv").write_text("ir,vis,output,calib,offset_ms\n"
                                       "clips/a_ir.mp4,clips/a_vis.mp4,site/a.mkv,rig.yaml,0\n"
                                       "clips/b_ir.mp4,clips/b_vis.mp4,site/b,,-100\n")
    proc = run_batch(tmp_path / "rows.csv", "-o", out, "--workers", 1, *MODEL)
    assert "found 2 sequence(s) (2 manifest), 16 frame pairs" in proc.stdout
    check_video(out / "site/a.mkv", FRAMES, 30)
    assert json.loads((out / "site/a.json").read_text())["calib"] == str(tmp_path / "rig.yaml")
    # IR 100 ms (3 frames) late: the last 3 visible frames have no partner
    assert len(video_times(out / "site/b.mp4")) == FRAMES - 3
    assert summary_rows(out)["site/b"]["paired"] == str(FRAMES - 3)


def test_killed_batch_resumes_without_redoing_complete_sequences(tmp_path):
    names = [f"set00/V{i:03d}" for i in range(6)]
    data, out = kaist_tree(tmp_path / "data", names), tmp_path / "out"
    cmd = [sys.executable, str(REPO_DIR / "run.py"), "batch", str(data), "-o", str(out), "--workers", "2",
           "--no-progress", *MODEL]
    proc = subprocess.Popen(cmd, cwd=REPO_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("set00/*.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the batch ended before a sequence was complete"
        workers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    for pid in workers:  # the workers die with the batch process; wait until they are gone
        while Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text():
            time.sleep(0.02)
    complete = sorted(p.with_suffix("").relative_to(out).as_posix() for p in out.glob("set00/*.json"))
    assert complete and len(complete) < len(names), complete
    mtimes = {name: (out / f"{name}.mp4").stat().st_mtime_ns for name in complete}

    again = run_batch(data, "-o", out, "--workers", 2, *MODEL)
    for name in complete:
        assert f"skipped {name}: 8 frames" in again.stderr
        assert (out / f"{name}.mp4").stat().st_mtime_ns == mtimes[name]
    rows = summary_rows(out)
    assert sorted(n for n, r in rows.items() if r["status"] == "skipped") == complete
    assert sorted(n for n, r in rows.items() if r["status"] == "done") == sorted(set(names) - set(complete))
    for name in names:
        check_video(out / f"{name}.mp4", FRAMES, 30)
    assert not list(out.rglob(".partial-*"))


def test_a_failing_sequence_is_one_line_and_the_others_complete(tmp_path):
    data, out = pairs_tree(tmp_path / "data"), tmp_path / "out"
    (data / "bad_ir.mp4").write_bytes(os.urandom(4096))  # corrupt
    write_video(data / "bad_vis.mp4", sample_frames("vis"))
    write_video(data / "lonely_vis.mp4", sample_frames("vis"))  # missing partner

    proc = run_batch(data, "-o", out, "--workers", 2, *MODEL, check_rc=1)
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, proc.stderr
    assert any(line.startswith("FAILED bad: ") and "bad_ir.mp4: cannot open as a video" in line for line in failed)
    assert any(line.startswith("FAILED lonely: ") and "no IR partner found" in line for line in failed)
    assert "Traceback" not in proc.stderr
    rows = summary_rows(out)
    assert rows["bad"]["status"] == rows["lonely"]["status"] == "failed"
    for name in ("a", "b", "c"):
        assert rows[name]["status"] == "done"
        check_video(out / f"{name}.mp4", FRAMES, 30)
    assert not (out / "bad.mp4").exists() and not (out / "bad.json").exists()


def test_ray_batch_on_a_local_cluster(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'streamfuse[ray]')")
    from streamfuse.cli import main

    data, out = tmp_path / "data", tmp_path / "out"
    kaist_tree(data / "kaist", ["set00/V000"])
    pairs_tree(data / "pairs")
    (data / "pairs" / "bad_ir.mp4").write_bytes(os.urandom(4096))
    write_video(data / "pairs" / "bad_vis.mp4", sample_frames("vis"))
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        rc = main(["batch", str(data), "-o", str(out), "--ray", "--no-progress", *MODEL])
    finally:
        ray.shutdown()
    assert rc == 1
    rows = summary_rows(out)
    assert rows["pairs/bad"]["status"] == "failed" and "cannot open as a video" in rows["pairs/bad"]["reason"]
    for name in ("kaist/set00/V000", "pairs/a", "pairs/b", "pairs/c"):
        assert rows[name]["status"] == "done"
        check_video(out / f"{name}.mp4", FRAMES, 30)
        assert json.loads((out / f"{name}.json").read_text())["worker"]["model_loads"] == 1


def test_batch_of_shared_m3svd_and_llvip_frames(tmp_path, shared_data):
    """Real sequences from ../shared/data: M3SVD as infrared/<seq> + visible/<seq>, LLVIP as KAIST sets."""
    data, out = tmp_path / "data", tmp_path / "out"
    for dataset, layout, count, size in (("M3SVD", {"ir": "infrared/{}", "vis": "visible/{}"}, 10, (160, 120)),
                                         ("LLVIP", {"ir": "set00/{}/lwir", "vis": "set00/{}/visible"}, 6, (160, 128))):
        for kind, pattern in layout.items():
            files = sorted((shared_data / dataset / kind).iterdir())[: 2 * count]
            for part in range(2):
                for i, path in enumerate(files[part * count:(part + 1) * count]):
                    img = cv2.resize(cv2.imread(str(path)), size, interpolation=cv2.INTER_AREA)
                    folder = data / dataset.lower() / pattern.format(f"V{part:03d}")
                    folder.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(folder / f"{path.stem}.png"), img)
    proc = run_batch(data, "-o", out, "--workers", 2, *MODEL)
    assert "found 4 sequence(s) (2 kaist, 2 pairs), 32 frame pairs" in proc.stdout
    for name, frames in (("m3svd/V000", 10), ("m3svd/V001", 10), ("llvip/set00/V000", 6), ("llvip/set00/V001", 6)):
        check_video(out / f"{name}.mp4", frames, 30)

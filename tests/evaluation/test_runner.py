"""``run.py eval``: real image files, real ONNX Runtime sessions, real PyAV-encoded videos."""
from __future__ import annotations

import csv
import logging
import re
import shutil

import av
import cv2
import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.evaluation import runner as ev
from streamfuse.cli import main
from streamfuse.models import get_model, list_models


def scene(seed, h=48, w=64):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 60 + 90 * np.sin(x / (4.0 + seed)) * np.cos(y / 7.0) + rng.normal(0, 5, (h, w))
    img[h // 3:h // 2, w // 4:w // 2] = 230 - 40 * seed
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def dataset(tmp_path):
    """data/{ir,vis} with 3 pairs, and two methods' fused folders (the second misses one stem)."""
    stems = ["a", "b", "c"]
    for k, stem in enumerate(stems):
        ir, vis = scene(2 * k), scene(2 * k + 1)
        (tmp_path / "data" / "ir").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "vis").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / "ir" / f"{stem}.png"), ir)
        cv2.imwrite(str(tmp_path / "data" / "vis" / f"{stem}.png"), cv2.cvtColor(vis, cv2.COLOR_GRAY2BGR))
        for method in ("mean", "brightest"):
            if method == "brightest" and stem == "b":
                continue
            fused = ((ir.astype(np.uint16) + vis) // 2).astype(np.uint8) if method == "mean" else np.maximum(ir, vis)
            (tmp_path / method).mkdir(exist_ok=True)
            cv2.imwrite(str(tmp_path / method / f"{stem}.png"), fused)
    return tmp_path


def test_fused_folders_missing_stems_are_listed_and_the_rest_scored(dataset, caplog):
    with caplog.at_level(logging.WARNING, logger="streamfuse"):
        scores = ev.score_folders(dataset / "data" / "ir", dataset / "data" / "vis",
                                  [dataset / "mean", dataset / "brightest"], ["EN", "SD", "Qabf"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 3 source stems have no fused image" in warnings[0] and warnings[0].endswith("missing: b")
    assert sorted(scores.table["mean"]) == ["a", "b", "c"]
    assert sorted(scores.table["brightest"]) == ["a", "c"]
    assert scores.summary()["brightest"]["EN"][2] == 2


def test_eval_cli_writes_reports_with_best_marked(dataset, capsys):
    out = dataset / "report"
    code = main(["eval", "--ir", str(dataset / "data" / "ir"), "--vis", str(dataset / "data" / "vis"),
                 "--fused", str(dataset / "mean"), "--fused", str(dataset / "brightest"),
                 "--metrics", "SD,Nabf,PSNR", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {(r["method"], r["metric"]) for r in rows} == {(m, k) for m in ("mean", "brightest") for k in ("SD", "Nabf", "PSNR")}
    for metric, higher in (("SD", True), ("Nabf", False), ("PSNR", True)):
        pair = {r["method"]: r for r in rows if r["metric"] == metric}
        means = {m: float(r["mean"]) for m, r in pair.items()}
        winner = (max if higher else min)(means, key=means.get)
        if means["mean"] != means["brightest"]:
            assert pair[winner]["best"] == "1" and sum(r["best"] == "1" for r in pair.values()) == 1
    md = (out / "results.md").read_text()
    assert "| method | n | SD ↑ | Nabf ↓ | PSNR ↑ |" in md and "**" in md
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 2 * ev.TILE_H  # rows a and c (b lacks a method)
    assert len(list(csv.DictReader(open(out / "per_image.csv")))) == 5


def test_size_mismatch_names_the_files_and_only_that_pair_fails(dataset, caplog):
    cv2.imwrite(str(dataset / "mean" / "c.png"), scene(9, 40, 50))
    scores = ev.score_folders(dataset / "data" / "ir", dataset / "data" / "vis", [dataset / "mean"], ["EN"])
    assert scores.failed == ["c"] and sorted(scores.table["mean"]) == ["a", "b"] and scores.pairs == 3
    assert re.search(r"mean/c.png is 50x40 but its source .*ir/c.png is 64x48", caplog.text)


def test_unreadable_fused_file_is_named_counted_and_exits_1(dataset, caplog, capsys):
    (dataset / "mean" / "a.png").write_bytes(b"\x89PNG truncated")
    assert main(["eval", "--ir", str(dataset / "data" / "ir"), "--vis", str(dataset / "data" / "vis"),
                 "--fused", str(dataset / "mean"), "--out", str(dataset / "r")]) == 1
    assert "1 of 3 pair(s) failed: a (see above)" in capsys.readouterr().err
    assert re.search(r"mean/a.png: cannot decode", caplog.text)
    for stem in "bc":
        (dataset / "mean" / f"{stem}.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(StreamfuseError, match=r"^none of the 3 pair\(s\) could be scored \(see above\)$"):
        ev.score_folders(dataset / "data" / "ir", dataset / "data" / "vis", [dataset / "mean"], ["EN"])


def test_eval_needs_exactly_one_mode(dataset):
    with pytest.raises(StreamfuseError, match="exactly one of"):
        from streamfuse.cli import build_parser, cmd_eval

        cmd_eval(build_parser().parse_args(["eval", "--fused", "x", "--models", "all"]))


def test_models_mode_fuses_with_baselines_on_onnxruntime(dataset):
    scores = ev.fuse_and_score("average,max,laplacian", dataset / "data", dataset / "out", ["SD", "Nabf"])
    assert list(scores.table) == ["average", "max", "laplacian"]
    for method in scores.table:
        for stem in "abc":
            assert (dataset / "out" / "fused" / method / f"{stem}.png").is_file()
    # the average never makes an edge stronger than both sources (up to uint8 rounding): ~no artefacts
    # by Nabf, while choose-max pyramid details do add some
    summary = scores.summary()
    assert summary["average"]["Nabf"][0] < 1e-5 < summary["laplacian"]["Nabf"][0]
    # the pixel maximum is brighter and more contrasted than the average
    assert summary["max"]["SD"][0] > summary["average"]["SD"][0]


def test_several_datasets_get_prefixed_stems_per_dataset_tables_and_reuse(dataset, tmp_path, caplog):
    other = tmp_path / "other"
    shutil.copytree(dataset / "data", other)
    (other / "ir" / "c.png").unlink()
    (other / "vis" / "c.png").unlink()
    out = tmp_path / "both"
    args = ["eval", "--models", "average,laplacian", "--data", str(dataset / "data"), "--data", str(other),
            "--out", str(out), "--metrics", "SD,EN"]
    assert main(args) == 0
    fused = out / "fused" / "laplacian" / "other" / "a.png"
    assert fused.is_file() and (out / "fused" / "average" / "data" / "c.png").is_file()
    # interleaved: the first rows of a contact sheet show both datasets
    assert [s for s, _, _ in ev.dataset_pairs([dataset / "data", other])][:2] == ["data/a", "other/a"]
    text = (out / "results.md").read_text()
    assert "\n## data\n" in text and "\n## other\n" in text
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert sorted(r["stem"] for r in rows if r["method"] == "average") == ["data/a", "data/b", "data/c", "other/a", "other/b"]
    # --reuse-fused scores the image on disk: mark one, and its score changes; without the flag it is re-fused
    before = {r["stem"]: float(r["SD"]) for r in rows if r["method"] == "laplacian"}
    cv2.imwrite(str(fused), np.zeros((48, 64), np.uint8))
    with caplog.at_level(logging.INFO, logger="streamfuse"):
        assert main(args + ["--reuse-fused"]) == 0
    assert "reused 10 of 10 fused images" in caplog.text
    reused = {r["stem"]: float(r["SD"]) for r in csv.DictReader(open(out / "per_image.csv")) if r["method"] == "laplacian"}
    assert reused["other/a"] == 0.0 and reused["data/a"] == before["data/a"]
    assert main(args) == 0
    assert cv2.imread(str(fused), cv2.IMREAD_GRAYSCALE).std() > 0


def test_usability_bar_counts_wins_against_both_baselines():
    scores = ev.Scores(list(ev.BAR_METRICS) + ["TTC", "CCmax"])
    base = {m: 1.0 for m in ev.BAR_METRICS}
    for stem, ttc in (("a", 0.9), ("b", 0.3), ("c", 0.6)):
        scores.add("average", stem, {**base, "TTC": 0.3, "CCmax": 0.8})
        scores.add("max", stem, {**base, "SD": 3.0, "TTC": 0.7, "CCmax": 0.9})
        # beats average on all 8 and max on all but SD
        scores.add("model", stem, {**{m: 2.0 for m in ev.BAR_METRICS}, "SD": 2.5, "TTC": ttc, "CCmax": 0.95})
        scores.add("copy", stem, {**{m: 2.0 for m in ev.BAR_METRICS}, "SD": 9.0, "TTC": 0.9, "CCmax": 0.99 if stem == "c" else 0.5})
    bar = ev.usability(scores)
    assert set(bar) == {"model", "copy"}
    assert len(bar["model"]["beats_average"]) == 8 and len(bar["model"]["beats_max"]) == 7
    assert bar["model"]["beats_max"] == [m for m in ev.BAR_METRICS if m != "SD"]
    assert bar["model"]["ttc_median"] == pytest.approx(0.6) and bar["model"]["ttc_below_half"] == 1
    assert bar["model"]["usable"] and not bar["copy"]["usable"]  # one image with CCmax 0.99
    scores.table["model"]["a"]["TTC"] = scores.table["model"]["c"]["TTC"] = 0.4
    assert not ev.usability(scores)["model"]["usable"]  # median TTC 0.4
    assert "| copy |" in ev.usability_section(scores) and "**no**" in ev.usability_section(scores)


def test_mean_rank_averages_each_metrics_rank_and_ties_share_the_better_one():
    scores = ev.Scores(list(ev.BAR_METRICS))
    scores.add("a", "x", {m: 3.0 for m in ev.BAR_METRICS})  # first everywhere
    scores.add("b", "x", {**{m: 1.0 for m in ev.BAR_METRICS}, "SCD": 3.0})  # third on 7, tied first on SCD
    scores.add("c", "x", {m: 2.0 for m in ev.BAR_METRICS})  # second on 7, third on SCD
    assert ev.mean_ranks(scores.summary()) == {"a": 1.0, "b": (3 * 7 + 1) / 8, "c": (2 * 7 + 3) / 8}
    table = ev.markdown_table(scores)
    assert table.splitlines()[0].endswith("| mean rank ↓ |")
    assert "| **1.00** |" in table.splitlines()[2] and "| 2.75 |" in table.splitlines()[3]
    alone = ev.Scores(list(ev.BAR_METRICS))
    alone.add("a", "x", {m: 3.0 for m in ev.BAR_METRICS})
    assert "mean rank" not in ev.markdown_table(alone)  # one method: nothing to rank against


def test_all_means_baselines_plus_models_with_weights(tmp_path, monkeypatch, caplog):
    # an engines folder with only the baselines' graphs: no trained model has weights there
    baselines = sorted(spec.name for spec in list_models(trained=False))  # average, gff, hmsd, laplacian, max
    for name in baselines:
        shutil.copy(get_model(name).onnx_path(), tmp_path / f"{name}.onnx")
    monkeypatch.setenv("STREAMFUSE_ENGINES", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="streamfuse"):
        chosen = ev.resolve_models("all")
    assert sorted(chosen) == [(name, None) for name in baselines] and "gff" in baselines
    assert "not evaluated (no weights shipped): " in caplog.text and "res2netfuse" in caplog.text


def write_video(path, frames, fps=10):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "10"}
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(cv2.cvtColor(f, cv2.COLOR_GRAY2RGB), format="rgb24")))
        container.mux(stream.encode())


def test_video_mode_scores_flicker_from_encoded_videos(tmp_path, caplog, capsys):
    ir = [np.roll(scene(1), 2 * t, axis=1) for t in range(8)]
    vis = [np.roll(scene(2), -t, axis=0) for t in range(8)]
    stable = [((i.astype(np.uint16) + v) // 2).astype(np.uint8) for i, v in zip(ir, vis)]
    pumping = [np.clip(f.astype(np.int16) + 40 * (t % 2), 0, 255).astype(np.uint8) for t, f in enumerate(stable)]
    for name, frames in (("ir", ir), ("vis", vis), ("stable", stable), ("pumping", pumping)):
        write_video(tmp_path / f"{name}.mp4", frames)
    # sources as image folders (the other accepted form), one frame short of the videos
    for name, frames in (("ir", ir), ("vis", vis)):
        (tmp_path / name).mkdir()
        for t, f in enumerate(frames[:7]):
            cv2.imwrite(str(tmp_path / name / f"{t:03d}.png"), f)
    steady, frames = ev.score_video(tmp_path / "stable.mp4", tmp_path / "ir.mp4", tmp_path / "vis.mp4")
    assert frames == 8
    with caplog.at_level(logging.WARNING, logger="streamfuse"):
        flicker, _ = ev.score_video(tmp_path / "pumping.mp4", tmp_path / "ir", tmp_path / "vis")
    assert "frame counts differ: scored the first 7 frames; left over: fused 1" in caplog.text
    assert flicker["Flicker"] > 10 * max(steady["Flicker"], 0.1)
    assert flicker["TSI"] > steady["TSI"]
    out = tmp_path / "report"
    assert main(["eval", "--video", str(tmp_path / "stable.mp4"), "--video", str(tmp_path / "pumping.mp4"),
                 "--ir", str(tmp_path / "ir.mp4"), "--vis", str(tmp_path / "vis.mp4"), "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert "| method | frames | Flicker ↓ | FlickerRatio ↓ | TSI ↓ |" in md
    assert "| stable | 8 |" in md and "| pumping | 8 |" in md

    (tmp_path / "broken.mp4").write_bytes(b"not a video")  # one bad video of two: the other is scored, exit 1
    assert main(["eval", "--video", str(tmp_path / "broken.mp4"), "--video", str(tmp_path / "stable.mp4"),
                 "--ir", str(tmp_path / "ir.mp4"), "--vis", str(tmp_path / "vis.mp4"), "--out", str(out)]) == 1
    assert "broken.mp4: cannot open as a video" in caplog.text
    assert "1 of 2 video(s) failed: broken (see above)" in capsys.readouterr().err
    assert "| stable | 8 |" in (out / "results.md").read_text() and "broken" not in (out / "results.md").read_text()


def test_video_mode_rejects_bad_sources(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"no video here")
    with pytest.raises(StreamfuseError, match="junk.mp4: cannot open as a video"):
        ev.score_video(tmp_path / "junk.mp4", tmp_path / "junk.mp4", tmp_path / "junk.mp4")
    with pytest.raises(StreamfuseError, match="missing.mp4: no such video file or image folder"):
        ev.score_video(tmp_path / "missing.mp4", tmp_path / "junk.mp4", tmp_path / "junk.mp4")

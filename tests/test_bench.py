"""run.py bench on a tiny size: real clips, real ONNX Runtime, JSON and Markdown written."""
from __future__ import annotations

import json

import pytest

from streamfuse import StreamfuseError
from streamfuse.bench import parse_sizes, run_bench
from streamfuse.cli import main


def test_bench_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--models", "average", "--backends", "onnxruntime,tensorrt", "--sizes", "96x64",
                 "--frames", "4", "--out", str(out)])
    assert code == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    ok, absent = doc["rows"]
    assert ok["status"] == "ok" and ok["size"] == "96x64" and ok["backend"] == "onnxruntime"
    for part in ("model_only", "pipeline", "serial"):
        assert ok[part]["fps"] > 0
    assert ok["model_only"]["ms_p95"] >= ok["model_only"]["ms_p50"] > 0
    assert ok["pipeline_over_model"] == pytest.approx(ok["pipeline"]["fps"] / ok["model_only"]["fps"], abs=1e-3)
    assert ok["pipeline"]["stages"]["model"]["n"] == 4  # every frame went through the pipeline
    assert absent["status"].startswith("not available here") or absent["status"].startswith("could not load")
    md = out.with_suffix(".md").read_text()
    assert "| average (default) | onnxruntime | 96x64 |" in md and "| average | tensorrt | 96x64 |" in md
    assert "wrote" in capsys.readouterr().out


def test_bad_arguments_are_named():
    with pytest.raises(StreamfuseError, match="--sizes '640'"):
        parse_sizes("640")
    with pytest.raises(StreamfuseError, match="unknown backend 'onnx'"):
        run_bench(models=["average"], backends=["onnx"], sizes=[(64, 64)], frames=2)
    with pytest.raises(StreamfuseError, match="unknown model 'res2net'"):
        run_bench(models=["res2net"], backends=["onnxruntime"], sizes=[(64, 64)], frames=2)


def test_bench_writes_to_out_bench_unless_asked(tmp_path, monkeypatch, capsys):
    """A trial run leaves the published docs/benchmarks.* alone: the default output is out/bench/."""
    from streamfuse import REPO_DIR

    published = [REPO_DIR / "docs" / f"benchmarks.{ext}" for ext in ("md", "json")]
    before = [p.read_bytes() if p.exists() else None for p in published]
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--models", "average", "--backends", "onnxruntime", "--sizes", "64x48", "--frames", "2"]) == 0
    doc = json.loads((tmp_path / "out" / "bench" / "benchmarks.json").read_text())
    assert doc["rows"][0]["status"] == "ok" and (tmp_path / "out" / "bench" / "benchmarks.md").is_file()
    assert [p.read_bytes() if p.exists() else None for p in published] == before
    assert "wrote out/bench/benchmarks.md" in capsys.readouterr().out


def test_the_batch_section_survives_a_new_bench_table(tmp_path):
    from streamfuse.bench import BATCH_HEADING, kept_section

    md = tmp_path / "benchmarks.md"
    assert kept_section(md, BATCH_HEADING) == ""
    md.write_text("# Benchmarks\n\nold table\n\n## Batch\n\nbatch figures\n\n## Expected GPU speed\n\nestimate\n")
    assert kept_section(md, BATCH_HEADING) == "\n## Batch\n\nbatch figures\n"
    md.write_text("# Benchmarks\n\n## Batch\n\nlast section\n")
    assert kept_section(md, BATCH_HEADING) == "\n## Batch\n\nlast section\n"

"""``run.py gpucheck``: everything this project can only check on a CUDA machine, in one command.

1. ``python -m pytest -m gpu`` (the GPU stage against the CPU stage, TensorRT engines of every
   shipped model against ONNX Runtime, the pipeline on TensorRT), log and JUnit XML kept;
2. ``run.py bench`` on the GPU backends (torch-cuda, tensorrt-fp32, tensorrt = FP16, onnxruntime-cuda)
   at 640x512, 30 frames per measurement.

Everything goes to ``out/gpucheck/`` (``--out``): ``pytest.log``, ``pytest.xml``, ``bench.md``,
``bench.json`` and ``summary.md``. It exits 0 only when every gpu test passed (none skipped) and
every GPU backend measured. Without a CUDA device it says so in one line and exits 2 before
running anything.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from streamfuse import REPO_DIR, StreamfuseError

GPU_BACKENDS = ("torch-cuda", "tensorrt-fp32", "tensorrt", "onnxruntime-cuda")
DEFAULT_OUT = "out/gpucheck"


def require_cuda() -> str:
    """The CUDA device's name; StreamfuseError (one line) when there is none."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise StreamfuseError("gpucheck: no CUDA device usable here: PyTorch is not installed "
                              "(install the CUDA build of torch on a machine with an NVIDIA GPU, see docs/gpu.md)")
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise StreamfuseError(f"gpucheck: no CUDA device present (torch {torch.__version__}, {build}); "
                              "run it on a machine with an NVIDIA GPU and the CUDA build of torch (docs/gpu.md)")
    return torch.cuda.get_device_name()


def run_pytest(out: Path) -> dict:
    """``pytest -m gpu`` in the repository, output to out/pytest.log; counts from the JUnit XML."""
    tests = REPO_DIR / "tests"
    if not tests.is_dir():
        raise StreamfuseError(f"gpucheck: {tests} not found; run it from a clone of the repository (the tests are not "
                              "part of the installed package)")
    xml = out / "pytest.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", f"--junitxml={xml}", str(tests)]
    with open(out / "pytest.log", "w") as log:
        rc = subprocess.run(cmd, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    skips = []
    if xml.exists():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in counts}
        skips = [f"{case.get('name')}: {skip.get('message', '')}" for case in suite.iter("testcase")
                 for skip in case.findall("skipped")]
    counts["skip_reasons"] = skips
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["returncode"] = rc
    return counts


def gpucheck(out: str | Path = DEFAULT_OUT, frames: int = 30, models: tuple[str, ...] = ("pyrfuse", "res2netfuse")) -> int:
    """Run the check; returns the exit code (0: every gpu test passed and every GPU backend measured)."""
    from streamfuse.bench import run_bench

    gpu = require_cuda()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"gpucheck on {gpu}: pytest -m gpu (log: {out / 'pytest.log'})", flush=True)
    tests = run_pytest(out)
    print(f"  {tests['passed']} passed, {tests['failures'] + tests['errors']} failed, {tests['skipped']} skipped",
          flush=True)
    print(f"gpucheck: run.py bench --backends {','.join(GPU_BACKENDS)} --sizes 640x512 --frames {frames}", flush=True)
    doc = run_bench(models=models, backends=GPU_BACKENDS, sizes=((640, 512),), frames=frames, out=out / "bench")
    lines = [f"# GPU check: {gpu}", "", f"{platform.platform()}, Python {platform.python_version()}", "",
             f"pytest -m gpu: {tests['passed']} passed, {tests['failures']} failed, {tests['errors']} errors, "
             f"{tests['skipped']} skipped (pytest.log, pytest.xml)",
             *[f"- skipped {reason}" for reason in tests["skip_reasons"]], "",
             "| model | backend | model fps | pipeline fps | serial fps | status |", "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        ok = r["status"] == "ok"
        cells = (f"{r['model_only']['fps']:.1f} | {r['pipeline']['fps']:.1f} | {r['serial']['fps']:.1f}" if ok
                 else " | | ")
        lines.append(f"| {r['model']} | {r['backend']} | {cells} | {r['status']} |")
    passed = (tests["returncode"] == 0 and tests["tests"] > 0 and tests["skipped"] == 0
              and all(r["status"] == "ok" for r in doc["rows"]))
    lines += ["", f"result: {'PASS' if passed else 'FAIL'}"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    print(f"wrote {out}/summary.md, pytest.log, pytest.xml, bench.md, bench.json")
    return 0 if passed else 1

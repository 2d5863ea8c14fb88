"""run.py gpucheck on a machine without CUDA: one plain line, a non-zero exit, nothing run or written."""
import subprocess
import sys

import pytest

from streamfuse import REPO_DIR
from streamfuse.backends import cuda_available


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA: gpucheck would run for real")
def test_without_cuda_it_says_so_and_fails(tmp_path):
    out = tmp_path / "gpucheck"
    r = subprocess.run([sys.executable, str(REPO_DIR / "run.py"), "gpucheck", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gpucheck: no CUDA device present"), r.stderr
    assert "docs/gpu.md" in lines[0] and not out.exists()

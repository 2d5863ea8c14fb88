"""streamfuse: real-time infrared + visible video fusion.

Python API (imported on first use, so ``import streamfuse`` loads no inference runtime):

- ``streamfuse.Fusion(model=..., backend=..., calib=...)``: ``fusion(ir_frame, vis_frame) -> fused BGR``;
- ``streamfuse.run(ir=..., vis=..., output=..., **options) -> Stats``: the video pipeline.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamfuse.api import Fusion, run

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
SAMPLE_DIR = PACKAGE_DIR / "data" / "sample"


class StreamfuseError(Exception):
    """An error a user can act on; the CLI prints its message as one line and exits non-zero."""

    def __str__(self) -> str:
        # one line, whatever a file name, key or value quoted in it holds
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


def finite_number(value) -> bool:
    """An int or float that is not NaN or infinite (bools and numeric strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def read_yaml(path, what: str):
    """Parse a YAML file; a missing file or a syntax error is one StreamfuseError naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise StreamfuseError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise StreamfuseError(f"{path}: cannot read the {what} ({reason})") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise StreamfuseError(f"{path}: not valid YAML (nested too deeply)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise StreamfuseError(f"{path}: not valid YAML{at}") from None


__all__ = ["Fusion", "run", "StreamfuseError", "SAMPLE_DIR", "__version__"]


def __getattr__(name: str) -> Any:
    """``Fusion`` and ``run`` come from streamfuse.api, imported when first asked for."""
    if name in ("Fusion", "run"):
        from streamfuse import api

        return getattr(api, name)
    raise AttributeError(f"module 'streamfuse' has no attribute '{name}'")

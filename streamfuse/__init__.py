"""streamfuse: real-time infrared + visible video fusion."""
from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
SAMPLE_DIR = PACKAGE_DIR / "data" / "sample"


class StreamfuseError(Exception):
    """An error a user can act on; the CLI prints its message as one line and exits non-zero."""

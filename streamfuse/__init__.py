"""streamfuse: real-time infrared + visible video fusion."""
from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
SAMPLE_DIR = PACKAGE_DIR / "data" / "sample"


class StreamfuseError(Exception):
    """An error a user can act on; the CLI prints its message as one line and exits non-zero."""


def read_yaml(path, what: str):
    """Parse a YAML file; a missing file or a syntax error is one StreamfuseError naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise StreamfuseError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise StreamfuseError(f"{path}: not valid YAML{at}") from None

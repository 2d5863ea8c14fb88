"""Parse source and sink URIs into (kind, target, params), and check options against what a kind takes.

Sources
  ``clip.mp4``, ``file:///abs/clip.mkv``     video file (any FFmpeg container/codec)  -> kind "file"
  ``frames/``, ``frames/*.png``, ``images://frames?fps=30``  image sequence          -> kind "images"
  ``rtsp://host:8554/path``                  RTSP stream                               -> kind "rtsp"
  ``/dev/video0``, ``v4l2:///dev/video0?size=640x512&fps=30&pixel_format=y16``       -> kind "v4l2"
Sinks
  ``out.mp4``, ``out.mkv``, ``out.mov``      H.264 video file                          -> kind "video"
  ``images://outdir``, ``outdir/``           one PNG per frame (an existing folder named
                                             without either is refused)                -> kind "images"
  ``display://``, ``display://title``        OpenCV window                             -> kind "display"
  ``rtsp://host:8554/path``                  publish to an RTSP server                 -> kind "rtsp"
  ``http://127.0.0.1:8090?token=...``        browser live view (streamfuse/io/http.py) -> kind "http"
  ``null://``                                discard (benchmarks)                      -> kind "null"

A query string (``?key=value&...``) is read only on the ``images://``, ``v4l2://``, ``file://``,
``display://`` and ``http://`` schemes (an RTSP URL's query belongs to the camera). Values that look like numbers become
int/float/bool. Keyword options given in code override the query.
"""
from __future__ import annotations

import difflib
import glob
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from streamfuse import StreamfuseError

log = logging.getLogger("streamfuse")

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov"}
_QUERY_SCHEMES = {"images", "v4l2", "file", "display", "http"}


@dataclass(frozen=True)
class ParsedURI:
    kind: str
    target: str  # a path, glob, device or URL
    params: dict = field(default_factory=dict)


def parse_value(text: str):
    """An option value from text: int, float, true/false, or the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _split_scheme(uri: str) -> tuple[str | None, str, dict]:
    """'scheme://rest?query' -> (scheme, rest, params); a plain path -> (None, path, {})."""
    if "://" not in uri:
        return None, uri, {}
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    params = {}
    if scheme in _QUERY_SCHEMES and "?" in rest:
        rest, query = rest.split("?", 1)
        params = {k: parse_value(v) for k, v in parse_qsl(query, keep_blank_values=True)}
    return scheme, unquote(rest) if scheme in _QUERY_SCHEMES else rest, params


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def parse_source(uri: str) -> ParsedURI:
    uri = str(uri)
    if not uri.strip():
        raise StreamfuseError("empty source URI (expected a video file, image folder, rtsp:// or /dev/videoN)")
    scheme, rest, params = _split_scheme(uri)
    if scheme in ("rtsp", "rtsps"):
        return ParsedURI("rtsp", uri, {})
    if scheme == "v4l2":
        return ParsedURI("v4l2", rest or "/dev/video0", params)
    if scheme == "images":
        return ParsedURI("images", rest, params)
    if scheme == "file":
        if Path(rest).is_dir() or _has_glob(rest):
            return ParsedURI("images", rest, params)
        return ParsedURI("file", rest, params)
    if scheme is not None:
        raise StreamfuseError(
            f"{redact_uri(uri)}: unknown source scheme '{scheme}://' (expected a file path, file://, images://, rtsp:// or v4l2://)")
    if rest.startswith("/dev/video"):
        return ParsedURI("v4l2", rest, {})
    if Path(rest).is_dir() or (_has_glob(rest) and not Path(rest).exists()):
        return ParsedURI("images", rest, {})
    return ParsedURI("file", rest, {})


def parse_sink(uri: str) -> ParsedURI:
    uri = str(uri)
    if not uri.strip():
        raise StreamfuseError("empty output URI (expected out.mp4, out.mkv, images://dir, display://, rtsp:// or null://)")
    scheme, rest, params = _split_scheme(uri)
    if scheme == "null":
        return ParsedURI("null", "", params)
    if scheme == "display":
        return ParsedURI("display", rest or "streamfuse", params)
    if scheme in ("rtsp", "rtsps"):
        return ParsedURI("rtsp", uri, {})
    if scheme == "images":
        return ParsedURI("images", rest, params)
    if scheme == "http":
        return ParsedURI("http", rest.rstrip("/"), params)
    if scheme not in (None, "file"):
        raise StreamfuseError(
            f"{redact_uri(uri)}: unknown output scheme '{scheme}://' "
            "(expected out.mp4/.mkv/.mov, images://, display://, rtsp://, http:// or null://)")
    if rest.endswith(("/", "\\")):
        return ParsedURI("images", rest, params)
    if Path(rest).suffix.lower() in VIDEO_SUFFIXES:
        return ParsedURI("video", rest, params)
    if Path(rest).is_dir():  # never dump frames into a folder that was meant as something else
        raise StreamfuseError(f"{redact_uri(uri)}: is an existing folder; to write one image per frame into it, "
                              f"say images://{rest} (a video needs a file name, e.g. {Path(rest) / 'fused.mp4'})")
    raise StreamfuseError(
        f"{redact_uri(uri)}: cannot tell the output type from '{Path(rest).suffix or 'no extension'}' "
        f"(expected {', '.join(sorted(VIDEO_SUFFIXES))}, a folder ending in '/', images://, display://, rtsp:// or null://)")


def warn_if_same_source(ir: str, vis: str) -> bool:
    """One warning when the IR and visible inputs are the same file, folder, device or URL (after
    resolving paths): the output would be that input fused with itself. Returns whether they are."""
    a, b = parse_source(ir), parse_source(vis)
    if a.kind != b.kind:
        return False
    local = a.kind in ("file", "images", "v4l2")
    same = Path(a.target).resolve() == Path(b.target).resolve() if local else a.target == b.target
    if same:
        log.warning("--ir and --vis are the same source (%s): the output is that input fused with itself",
                    redact_uri(ir))
    return same


# user:password@ after any scheme://, and secret-looking query values; found anywhere in a text
_USERINFO_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:?#]*):[^\s/?#]*@")
_SECRET_QUERY = re.compile(r"([?&](?:token|password|passwd|pwd|pass|secret|key)=)[^&#\s]*", re.IGNORECASE)


def redact_uri(text) -> str:
    """A URI, or any text holding URIs (an error message, a log line), safe to show: a password
    becomes *** (rtsp://admin:S3cret@cam/ir -> rtsp://admin:***@cam/ir), and so does a token or
    password given in a query. Every printer (errors, logs, statistics, probe, calibration files,
    batch summaries, the browser view) goes through this one function."""
    text = _USERINFO_PASSWORD.sub(r"\1:***@", str(text))
    return _SECRET_QUERY.sub(r"\1***", text)


class RedactingFormatter(logging.Formatter):
    """Log lines with every URI's password redacted (the CLI's and the batch workers' handler)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_uri(super().format(record))


def positive_number(uri: str, name: str, value, unit: str = "") -> float:
    """An option that must be a positive number (fps, timeouts); one-line error naming the stream."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not (number > 0 and math.isfinite(number)):
        raise StreamfuseError(f"{redact_uri(uri)}: {name} must be a positive number{unit}, got '{value}'")
    return number


def check_options(uri: str, given: dict, allowed) -> None:
    """Reject option names a source/sink kind does not take, with a did-you-mean."""
    allowed = sorted(allowed)
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise StreamfuseError(f"{redact_uri(uri)}: unknown option '{key}' (takes {', '.join(allowed)}){hint}")


def expand_images(target: str) -> list[Path]:
    """The files of an image sequence: a folder's image files or a glob's matches, in natural order."""
    from streamfuse.io.images import IMAGE_EXTS

    if _has_glob(target) and not Path(target).is_dir():
        files = [Path(p) for p in glob.glob(target)]
        files = [p for p in files if p.is_file()]
    else:
        folder = Path(target)
        if not folder.is_dir():
            raise StreamfuseError(f"{target}: image sequence folder not found")
        files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise StreamfuseError(f"{target}: no image files (expected *.png/*.jpg/*.bmp/*.tif frames)")
    return sorted(files, key=_natural_key)


def _natural_key(path: Path):
    """'frame2' sorts before 'frame10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]

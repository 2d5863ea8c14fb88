"""The one typed configuration of a pipeline run: a YAML file and command-line options.

Precedence: built-in defaults < the YAML file (``--config``) < options given on the command line.
Every field below is also a YAML key of the same name (``offset_ms`` is ``--offset-ms`` on the
command line). Unknown keys and wrongly typed values are rejected with one line naming the key::

    ir: recordings/ir.mp4
    vis: recordings/vis.mp4
    output: out/fused.mp4           # or several: [out/fused.mp4, "http://0.0.0.0:8090"]
    token: change-me                # the browser view's token (needed off 127.0.0.1)
    calib: calibration/rig.yaml
    mode: lossless
    offset_ms: -500
    output_options: {crf: 20, preset: veryfast}

Relative paths are taken from the current directory, as on the command line.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


from streamfuse import StreamfuseError, finite_number, read_yaml
from streamfuse.models.registry import DEFAULT_MODEL

MODES = ("auto", "lossless", "live")


@dataclass
class RunConfig:
    ir: str | None = None  # IR source URI: video file, image folder/glob, rtsp://, /dev/videoN
    vis: str | None = None  # visible source URI
    # sink URI, or a list of them, all fed the same frames: out.mp4/.mkv, images://dir, display://,
    # rtsp://, http://host:port (browser view), null://
    output: str | list[str] | None = None
    token: str | None = None  # the browser view's token (http:// outputs); needed to serve beyond 127.0.0.1
    calib: str | None = None  # calibration YAML (homography IR -> VIS); None: identity / plain resize
    model: str = DEFAULT_MODEL
    variant: str | None = None  # model variant (res2netfuse: l1 | mean)
    backend: str = "auto"  # auto | onnxruntime | openvino | torch | tensorrt
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"
    threads: int | None = None  # intra-op threads of CPU backends (None: the backend default, 1)
    onnx_path: str | None = None  # run this ONNX graph instead of the shipped one (onnxruntime/openvino)
    mode: str = "auto"  # auto (lossless for files/sequences, live if a source is live) | lossless | live
    offset_ms: float | None = None  # added to IR pts; None: the calibration file's time_offset_ms, else 0
    tolerance_ms: float | None = None  # pairing tolerance; None: half the slower stream's frame period
    max_wait_ms: float = 200.0  # live mode: longest wait for a partner frame before dropping
    mosaic: bool = False  # write IR | VIS | fused side by side instead of the fused frame alone
    overlay: bool = False  # draw the registered IR's edges over the output (checks the calibration live)
    agc: list[float] = field(default_factory=lambda: [1.0, 99.0])  # 16-bit IR percentiles mapped to 0 and 1
    queue_size: int = 4  # frames held between stages
    max_frames: int | None = None  # stop after this many fused frames
    progress: bool = True  # on a terminal: a progress bar with the live status, redrawn every second
    status_every: float = 10.0  # otherwise (or progress off): log the status every this many seconds; 0: never
    ir_options: dict = field(default_factory=dict)  # passed to open_source for the IR (e.g. transport: tcp)
    vis_options: dict = field(default_factory=dict)
    output_options: dict = field(default_factory=dict)  # each to the outputs that take it (e.g. crf: 20, preset: fast)

    @property
    def outputs(self) -> list[str]:
        """The output URIs, one or several."""
        if self.output is None:
            return []
        return [self.output] if isinstance(self.output, str) else list(self.output)

    def validate(self) -> "RunConfig":
        """Check values that types alone do not catch; returns self."""
        for key, flag in (("ir", "--ir"), ("vis", "--vis"), ("output", "-o/--output")):
            if not getattr(self, key):
                raise StreamfuseError(f"missing '{key}': give {flag} or set '{key}:' in the config file")
        if self.token is not None and not any(uri.lower().startswith("http://") for uri in self.outputs):
            raise StreamfuseError("'token' (--token) is for a browser view output, and there is none "
                                  "(add e.g. -o http://0.0.0.0:8090)")
        from streamfuse.backends import check_precision

        check_precision(self.precision, self.backend)
        if self.mode not in MODES:
            raise StreamfuseError(f"mode '{self.mode}': expected one of {', '.join(MODES)}")
        if len(self.agc) != 2 or not 0 <= self.agc[0] < self.agc[1] <= 100:
            raise StreamfuseError(f"agc {self.agc}: expected two percentiles [low, high] with 0 <= low < high <= 100")
        for key in ("queue_size", "threads", "max_frames"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise StreamfuseError(f"'{key}' must be >= 1, got {value}")
        for key in ("tolerance_ms", "max_wait_ms", "status_every"):
            value = getattr(self, key)
            if value is not None and not value >= 0:  # also NaN
                raise StreamfuseError(f"'{key}' must be >= 0, got {value}")
        return self


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _types() -> dict[str, typing.Any]:
    return typing.get_type_hints(RunConfig)


def _describe(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        names = [_describe(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in typing.get_args(tp) else "")
    origin = typing.get_origin(tp) or tp
    if origin is list:
        return "a list of strings" if typing.get_args(tp) == (str,) else "a list of finite numbers"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
            dict: "a mapping"}.get(origin, str(tp))


def coerce(key: str, value, where: str):
    """``value`` checked against the type of field ``key``; ints are accepted for floats."""
    tp = _types()[key]
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    candidates = typing.get_args(tp) if union else (tp,)
    if value is None:
        if type(None) in candidates:
            return None
        raise StreamfuseError(f"{where}: key '{key}' must be {_describe(tp)}, got null")
    for candidate in candidates:
        ok, checked = _check(candidate, value)
        if ok:
            return checked
    raise StreamfuseError(f"{where}: key '{key}' must be {_describe(tp)}, got {value!r}")


def _check(tp, value) -> tuple[bool, typing.Any]:
    """(accepted, value converted) for one non-union type."""
    origin = typing.get_origin(tp) or tp
    if origin is bool:
        return isinstance(value, bool), value
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin is float:
        return (True, float(value)) if finite_number(value) else (False, value)
    if origin is str:
        return isinstance(value, str), value
    if origin is dict:
        return (True, dict(value)) if isinstance(value, dict) else (False, value)
    if origin is list and isinstance(value, (list, tuple)):
        if typing.get_args(tp) == (str,):
            return all(isinstance(v, str) for v in value), list(value)
        return (True, [float(v) for v in value]) if all(finite_number(v) for v in value) else (False, value)
    return False, value


def unknown_key(key, where: str) -> StreamfuseError:
    close = difflib.get_close_matches(str(key), list(FIELDS), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(FIELDS)}"
    return StreamfuseError(f"{where}: unknown key '{key}'{hint}")


def load_yaml(path) -> dict:
    """The checked keys of a YAML config file, as a dict of field values."""
    path = Path(path)
    data = read_yaml(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StreamfuseError(f"{path}: expected a mapping of keys ({', '.join(FIELDS)}), got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if key not in FIELDS:
            raise unknown_key(key, str(path))
        out[key] = coerce(key, value, str(path))
    return out


def make_config(path=None, **overrides) -> RunConfig:
    """Defaults < YAML file at ``path`` < ``overrides`` (None values in overrides are ignored)."""
    values = load_yaml(path) if path else {}
    for key, value in overrides.items():
        if key not in FIELDS:
            raise unknown_key(key, "option")
        if value is not None:
            values[key] = coerce(key, value, "option")
    return RunConfig(**values)

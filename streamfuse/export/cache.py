"""TensorRT engine cache: one plain serialized engine per (ONNX, TensorRT, GPU, precision, shapes).

An engine only runs on the GPU model and TensorRT version that built it, so each engine file
``<cache dir>/<onnx stem>-<precision>-<vis WxH>[-ir<WxH>].engine`` has a sidecar
``<engine>.json`` recording the key it was built for: sha256 of the ONNX, TensorRT version, GPU
name, compute capability, precision and input shapes, plus the engine's own sha256. An engine
whose sidecar is missing, unreadable or does not match (stale ONNX, other GPU, other TensorRT,
engine file replaced) is rebuilt, with one log line saying why. The engine file itself is the
bytes TensorRT serialized, nothing prepended, so ``trtexec --loadEngine`` and other tools load it.
The cache dir is ``engines/`` when writable, else the user's cache (``registry.engine_cache_dir``).

The builder is a parameter (``build(onnx_path, precision=..., shapes=..., **kwargs) -> bytes``),
so this logic is tested without TensorRT.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from streamfuse import StreamfuseError

log = logging.getLogger("streamfuse")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt: str
    gpu: str
    compute_capability: str
    precision: str
    shapes: tuple[tuple[str, tuple], ...]  # (input name, shape or (min, opt, max)), sorted by name

    def to_json(self) -> dict:
        d = asdict(self)
        d["shapes"] = {name: _listify(shape) for name, shape in self.shapes}
        return d


def _listify(value):
    return [_listify(v) for v in value] if isinstance(value, (list, tuple)) else value


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_key(onnx_path: str | Path, precision: str, shapes: dict[str, tuple], target: dict) -> EngineKey:
    """``target`` = {"tensorrt": version, "gpu": name, "compute_capability": "8.7"} (see export.tensorrt.current_target)."""
    return EngineKey(
        onnx_sha256=sha256_file(onnx_path),
        tensorrt=str(target["tensorrt"]),
        gpu=str(target["gpu"]),
        compute_capability=str(target["compute_capability"]),
        precision=precision,
        shapes=tuple(sorted((name, tuple(_tupleize(s))) for name, s in shapes.items())),
    )


def _tupleize(value):
    return tuple(_tupleize(v) for v in value) if isinstance(value, (list, tuple)) else int(value)


def _opt_shape(shape) -> tuple:
    """The optimum shape of a fixed shape (n, c, h, w) or a (min, opt, max) triple."""
    return tuple(shape[1]) if isinstance(shape[0], (list, tuple)) else tuple(shape)


def engine_path(onnx_path: str | Path, precision: str, shapes: dict[str, tuple], cache_dir: str | Path) -> Path:
    """engines/<onnx stem>-<precision>-<vis WxH>[-ir<WxH>].engine: one file per model/precision/size."""
    vis = _opt_shape(shapes["vis"])
    name = f"{Path(onnx_path).stem}-{precision}-{vis[-1]}x{vis[-2]}"
    ir = _opt_shape(shapes["ir"]) if "ir" in shapes else vis
    if tuple(ir[-2:]) != tuple(vis[-2:]):
        name += f"-ir{ir[-1]}x{ir[-2]}"
    if vis[0] != 1:
        name += f"-n{vis[0]}"
    if any(isinstance(s[0], (list, tuple)) and s[0] != s[2] for s in shapes.values()):
        name += "-dyn"
    return Path(cache_dir) / f"{name}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def stale_reason(engine: Path, key: EngineKey) -> str | None:
    """Why ``engine`` cannot be used for ``key`` (None: it can)."""
    side = sidecar_path(engine)
    if not engine.exists():
        return "no engine built yet"
    if not side.exists():
        return f"no sidecar {side.name} records what it was built for"
    try:
        meta = json.loads(side.read_text())
        built = meta["key"]
    except (ValueError, KeyError, TypeError):
        return f"sidecar {side.name} is unreadable"
    want = key.to_json()
    if built.get("onnx_sha256") != want["onnx_sha256"]:
        return "the ONNX graph changed since it was built"
    if built.get("tensorrt") != want["tensorrt"]:
        return f"built with TensorRT {built.get('tensorrt')}, this is TensorRT {want['tensorrt']}"
    if (built.get("gpu"), built.get("compute_capability")) != (want["gpu"], want["compute_capability"]):
        return (f"built on {built.get('gpu')} (sm {built.get('compute_capability')}), "
                f"this is {want['gpu']} (sm {want['compute_capability']})")
    if built != want:
        diff = ", ".join(k for k in want if built.get(k) != want[k])
        return f"built for other settings ({diff})"
    if meta.get("engine_sha256") != sha256_file(engine):
        return "the engine file was replaced since its sidecar was written"
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def cached_engine(onnx_path: str | Path, precision: str, shapes: dict[str, tuple], target: dict,
                  build: Callable[..., bytes], cache_dir: str | Path | None = None, force: bool = False,
                  **build_kwargs) -> Path:
    """Path of an engine for this ONNX/precision/shapes on ``target``, building it with ``build`` if
    there is none or the cached one is stale or foreign (one log line says which)."""
    from streamfuse.models.registry import engine_cache_dir

    onnx_path = Path(onnx_path)
    if not onnx_path.exists():
        raise StreamfuseError(f"{onnx_path}: ONNX graph not found")
    if precision not in ("fp16", "fp32"):
        raise StreamfuseError(f"TensorRT precision must be fp16 or fp32, not '{precision}'")
    cache_dir = Path(cache_dir) if cache_dir else engine_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = make_key(onnx_path, precision, shapes, target)
    path = engine_path(onnx_path, precision, shapes, cache_dir)
    reason = "rebuild forced" if force else stale_reason(path, key)
    if reason is None:
        log.debug("TensorRT engine %s is up to date", path)
        return path
    verb = "building" if reason == "no engine built yet" else "rebuilding"
    log.info("%s TensorRT %s engine %s (%s); this takes a minute or two", verb, precision, path, reason)
    t0 = time.perf_counter()
    blob = bytes(build(onnx_path, precision=precision, shapes=shapes, **build_kwargs))
    if not blob:
        raise StreamfuseError(f"{onnx_path}: the TensorRT builder returned an empty engine")
    seconds = time.perf_counter() - t0
    _write_atomic(path, blob)
    meta = {
        "key": key.to_json(),
        "engine_sha256": hashlib.sha256(blob).hexdigest(),
        "onnx": str(onnx_path),
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
    }
    _write_atomic(sidecar_path(path), (json.dumps(meta, indent=2) + "\n").encode())
    log.info("built %s in %.0f s (%.1f MB)", path, seconds, len(blob) / 1e6)
    return path

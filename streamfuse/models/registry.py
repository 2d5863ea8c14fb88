"""Model registry: one table that drives export, loading, the CLI and benchmarks.

A model is registered by name with a ``ModelSpec``. The spec names the torch builder as a
``"module:callable"`` string so that listing or fusing with a shipped ONNX graph never imports
torch. Weights and graphs live in ``engines_dir()``:

- ``<name>.pt``    torch state dict (trained models only; in the repository, not in the wheel)
- ``<name>.json``  training record (data, steps, seed, losses, git commit, time)
- ``<name>.onnx``  graph for the default variant; ``<name>-<variant>.onnx`` for the others

Every exported graph describes itself in its ``metadata_props`` (``GRAPH_FACTS``): model, variant,
IR scale, pad multiple, training record, opset, producer. ``spec_for_graph`` turns them back into
the spec a backend runs the graph with, so a graph file alone (``--onnx any.onnx``) runs correctly.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from streamfuse import PACKAGE_DIR, REPO_DIR, StreamfuseError

log = logging.getLogger("streamfuse")

# metadata_props keys every exported graph carries (values are strings)
GRAPH_FACTS = ("model", "variant", "ir_scale", "pad_multiple", "training_record", "opset", "producer")

# The model used when none is named: the real-time CPU default (docs/benchmarks.md, docs/results.md).
DEFAULT_MODEL = "pyrfuse"


def engines_dir() -> Path:
    """Where model graphs and weights are read: $STREAMFUSE_ENGINES, else the graphs installed with
    the package (``streamfuse/engines`` in a wheel), else the repository's ``engines/``."""
    if os.environ.get("STREAMFUSE_ENGINES"):
        return Path(os.environ["STREAMFUSE_ENGINES"])
    installed = PACKAGE_DIR / "engines"
    return installed if installed.is_dir() else REPO_DIR / "engines"


def engine_cache_dir() -> Path:
    """Where built TensorRT engines go: ``engines_dir()`` when it is writable, else the user's cache
    ($XDG_CACHE_HOME/streamfuse/engines, default ~/.cache/streamfuse/engines), e.g. for a wheel
    installed into a read-only site-packages."""
    d = engines_dir()
    existing = next(p for p in (d, *d.parents) if p.exists())  # the folder, or the nearest one to create it in
    if existing.is_dir() and os.access(existing, os.W_OK):
        return d
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamfuse" / "engines"


def install_hint(extra: str) -> str:
    """How to add an optional extra here: editable in a source checkout, from the index otherwise."""
    return f"pip install -e '.[{extra}]'" if (REPO_DIR / "pyproject.toml").is_file() else f"pip install 'streamfuse[{extra}]'"


def cli_command() -> str:
    """How to call the command line here: ``python run.py`` in a source checkout, else the installed script."""
    run_py = REPO_DIR / "run.py"
    if not run_py.is_file():
        return "streamfuse"
    return "python run.py" if Path.cwd().resolve() == REPO_DIR else f"python {run_py}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    paper: str
    builder: str  # "package.module:callable"; called as builder(variant=..., **arch) -> torch.nn.Module
    summary: str = ""
    trained: bool = True  # False for baselines (no weights to load)
    variants: tuple[str, ...] = ("default",)  # first one is the default
    # IR input is (ceil(H / ir_scale), ceil(W / ir_scale)) for a visible frame of H x W.
    ir_scale: int = 1
    # H and W of the visible input are reflect-padded to a multiple of this before inference.
    pad_multiple: int = 1
    extra: dict = field(default_factory=dict)
    # True for a structure timed by `bench` only (random weights): never evaluated or listed as a model
    speed_only: bool = False
    # False when the graph needs float32 (FP16 cannot hold what it computes); FP16 checks skip it
    fp16: bool = True
    # False for graphs that keep many full-resolution wide tensors alive at once: ONNX Runtime's CPU arena
    # grows in doubling chunks and keeps them (DDcGAN and MetaFusion at 1280x1024: 11-12 GB with it,
    # 3.8-4.5 GB without, at the same speed); small graphs run faster with it (fewer page faults)
    cpu_arena: bool = True
    # training-config keys that shape the network (widths, depths): build() passes them to the builder
    # from the shipped weights' record engines/<name>.json, so the module always matches those weights
    arch_keys: tuple[str, ...] = ()

    @property
    def default_variant(self) -> str:
        return self.variants[0]

    def check_variant(self, variant: str | None) -> str:
        variant = variant or self.default_variant
        if variant not in self.variants:
            raise StreamfuseError(
                f"model '{self.name}' has no variant '{variant}'; expected one of {', '.join(self.variants)}"
            )
        return variant

    def ir_scale_for(self, variant: str | None = None) -> int:
        """IR down-scale of ``variant``: ``extra["ir_scale"][variant]`` when a variant differs, else ``ir_scale``."""
        return self.extra.get("ir_scale", {}).get(self.check_variant(variant), self.ir_scale)

    def weights_path(self) -> Path:
        return engines_dir() / f"{self.name}.pt"

    def record_path(self) -> Path:
        return engines_dir() / f"{self.name}.json"

    def onnx_path(self, variant: str | None = None) -> Path:
        variant = self.check_variant(variant)
        stem = self.name if variant == self.default_variant else f"{self.name}-{variant}"
        return engines_dir() / f"{stem}.onnx"

    def training_record(self) -> dict | None:
        path = self.record_path()
        return json.loads(path.read_text()) if path.exists() else None

    def graph_facts(self, variant: str | None = None) -> dict[str, str]:
        """What a graph of ``variant`` needs to be run: the ``GRAPH_FACTS`` the registry knows."""
        variant = self.check_variant(variant)
        return {"model": self.name, "variant": variant, "ir_scale": str(self.ir_scale_for(variant)),
                "pad_multiple": str(self.pad_multiple)}

    def build(self, variant: str | None = None, load_weights: bool = True):
        """Build the torch module (needs torch) with the shipped weights loaded."""
        variant = self.check_variant(variant)
        module_name, _, attr = self.builder.partition(":")
        try:
            builder = getattr(importlib.import_module(module_name), attr)
        except ModuleNotFoundError as exc:
            if exc.name == "torch":
                raise StreamfuseError(
                    f"model '{self.name}' on the torch backend needs PyTorch: {install_hint('torch')}"
                ) from exc
            raise
        record = self.training_record() if self.arch_keys else None
        arch = {k: record["config"][k] for k in self.arch_keys if record and k in record.get("config", {})}
        model = builder(variant=variant, **arch)
        if self.trained and load_weights:
            import torch

            path = self.weights_path()
            if not path.exists():
                raise StreamfuseError(f"{path}: weights for '{self.name}' not found ({weights_hint(self)})")
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        return model.eval()


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    _load_builtin()
    key = name.lower()
    if key not in _REGISTRY:
        raise StreamfuseError(f"unknown model '{name}'{did_you_mean(key, _REGISTRY)}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def list_models(trained: bool | None = None, speed_only: bool | None = False) -> list[ModelSpec]:
    """Registered models, trained first. ``speed_only=False`` (default) leaves out the speed
    references, ``True`` lists only them, ``None`` lists everything."""
    _load_builtin()
    specs = sorted(_REGISTRY.values(), key=lambda s: (s.speed_only, not s.trained, s.name))
    return [s for s in specs if (trained is None or s.trained == trained)
            and (speed_only is None or s.speed_only == speed_only)]


def spec_for_graph(meta: dict[str, str], spec: ModelSpec, variant: str, path: str | Path) -> tuple[ModelSpec, str]:
    """The spec and variant to run the graph at ``path`` with, from its metadata ``meta``.

    A graph's own facts (model, variant, IR scale, pad multiple) win over ``spec``/``variant``, the
    ones asked for, so a graph copied to any name runs as it was exported. Graphs exported without
    metadata run as asked."""
    if "model" not in meta:
        log.debug("%s: no model metadata; running it as %s/%s", path, spec.name, variant)
        return spec, variant
    try:
        name, var = meta["model"], meta.get("variant") or "default"
        scale, pad = int(meta.get("ir_scale", 1)), int(meta.get("pad_multiple", 1))
    except ValueError:
        raise StreamfuseError(f"{path}: metadata ir_scale/pad_multiple must be integers, "
                              f"got '{meta.get('ir_scale')}'/'{meta.get('pad_multiple')}'") from None
    if scale < 1 or pad < 1:
        raise StreamfuseError(f"{path}: metadata ir_scale and pad_multiple must be >= 1, got {scale} and {pad}")
    _load_builtin()
    base = _REGISTRY.get(name) or ModelSpec(name=name, paper=f"ONNX graph {Path(path).name}", builder="", trained=False,
                                            variants=(var,))
    if name != spec.name or var != variant:
        log.info("%s is %s/%s (its metadata); running it as that", path, name, var)
    if var in base.variants and base.graph_facts(var) == {"model": name, "variant": var, "ir_scale": str(scale),
                                                          "pad_multiple": str(pad)}:
        return base, var
    ir_scales = {**base.extra.get("ir_scale", {}), var: scale}
    variants = base.variants if var in base.variants else (*base.variants, var)
    return dataclasses.replace(base, variants=variants, pad_multiple=pad, extra={**base.extra, "ir_scale": ir_scales}), var


def graph_not_found(path: str | Path, spec: ModelSpec | None = None) -> str:
    """The one-line error for a missing graph, with the hint that works here."""
    where = f"{path}: ONNX graph" + (f" for '{spec.name}'" if spec else "") + " not found"
    if spec is None:
        return where
    if spec.trained and not spec.weights_path().exists():
        hint = weights_hint(spec)
    elif importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
        hint = f"exporting it needs PyTorch and onnx: {install_hint('torch')}, then {cli_command()} export --model {spec.name}"
    else:
        hint = f"export it: {cli_command()} export --model {spec.name}"
    if os.environ.get("STREAMFUSE_ENGINES"):
        hint = f"STREAMFUSE_ENGINES={os.environ['STREAMFUSE_ENGINES']}; {hint}"
    return f"{where} ({hint})"


def weights_hint(spec: ModelSpec) -> str:
    """What to do about missing weights: train them in a source checkout; elsewhere use the shipped graphs."""
    if (REPO_DIR / "train").is_dir():
        return f"train it: python -m train {spec.name}"
    return ("this installation ships graphs, not weights: run it on onnxruntime/openvino/tensorrt, or point "
            "STREAMFUSE_ENGINES at a folder holding its graph")


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _load_builtin() -> None:
    # The built-in table lives in streamfuse.models; importing it registers every model.
    importlib.import_module("streamfuse.models")

"""Model registry: one table that drives export, loading, the CLI and benchmarks.

A model is registered by name with a ``ModelSpec``. The spec names the torch builder as a
``"module:callable"`` string so that listing or fusing with a shipped ONNX graph never imports
torch. Weights and graphs live in ``engines/``:

- ``<name>.pt``    torch state dict (trained models only)
- ``<name>.json``  training record (data, steps, seed, losses, git commit, time)
- ``<name>.onnx``  graph for the default variant; ``<name>-<variant>.onnx`` for the others
"""
from __future__ import annotations

import difflib
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from streamfuse import REPO_DIR, StreamfuseError

# The model used when none is named: the real-time CPU default (docs/benchmarks.md, docs/results.md).
DEFAULT_MODEL = "pyrfuse"


def engines_dir() -> Path:
    """Where shipped weights and built engines live (override with STREAMFUSE_ENGINES)."""
    return Path(os.environ.get("STREAMFUSE_ENGINES", REPO_DIR / "engines"))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    paper: str
    builder: str  # "package.module:callable"; called as builder(variant=...) -> torch.nn.Module
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

    def build(self, variant: str | None = None, load_weights: bool = True):
        """Build the torch module (needs torch) with the shipped weights loaded."""
        variant = self.check_variant(variant)
        module_name, _, attr = self.builder.partition(":")
        try:
            builder = getattr(importlib.import_module(module_name), attr)
        except ModuleNotFoundError as exc:
            if exc.name == "torch":
                raise StreamfuseError(
                    f"model '{self.name}' on the torch backend needs PyTorch: pip install -e '.[torch]'"
                ) from exc
            raise
        model = builder(variant=variant)
        if self.trained and load_weights:
            import torch

            path = self.weights_path()
            if not path.exists():
                raise StreamfuseError(f"{path}: weights for '{self.name}' not found (train it: python -m train {self.name})")
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


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _load_builtin() -> None:
    # The built-in table lives in streamfuse.models; importing it registers every model.
    importlib.import_module("streamfuse.models")

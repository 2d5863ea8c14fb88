"""Typed training configs: one dataclass per model, read from YAML plus ``--set key=value``.

``TrainConfig`` holds the keys the loop reads (seed, steps, cadences, time limit, threads, output of
the loss log); ``PairConfig`` adds the random-patch data of the training split. A model's config
subclasses one of them and adds its own hyper-parameters as typed fields (a field without a default
is a key every YAML of that model must give). Unknown keys, missing keys and wrongly typed values
are one ``StreamfuseError`` naming the file and the key (with a did-you-mean for typos).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from streamfuse import StreamfuseError, read_yaml


@dataclass(kw_only=True)
class TrainConfig:
    model: str
    seed: int
    steps: int  # optimisation steps (an upper bound when time_limit_minutes stops the run first)
    log_every: int = 10  # one CSV row per this many steps: the mean of each loss over them
    checkpoint_every: int = 100  # resume state (every module, optimiser and random generator)
    snapshot_every: int = 0  # the shipped module's weights alone, candidates for select_by_validation; 0: none
    select_by_validation: bool = False  # ship the snapshot (or final weights) with the lowest validation loss
    time_limit_minutes: float = 0.0  # wall time of all runs of this schedule (resumes included); 0: no limit
    threads: int = 1  # torch intra-op threads
    autocast: typing.Literal["fp32", "bf16"] = "fp32"  # bf16: each step under torch.autocast (weights and optimiser stay fp32)
    cut_from_paper: str = ""  # what this schedule changes from the paper's (copied into the record with the config)

    def total_steps(self) -> int:
        return self.steps


@dataclass(kw_only=True)
class PairConfig(TrainConfig):
    data_root: str = "../shared/data/train"  # training split only (relative paths: from the repo root)
    datasets: list[str] | None = None  # dataset folders under data_root; None: all of them
    patch: int  # square crops of patch x patch pixels
    batch_size: int
    gain_range: list[float] | None = None  # per-source random gain of each crop, [lo, hi] (train/datasets.py)


def _describe(tp) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if type(None) in typing.get_args(tp):
        return _describe(args[0]) + " or null"
    origin = typing.get_origin(tp) or tp
    if origin is list:
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(typing.get_args(tp)[0], "values")
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(origin, str(tp))


def _check(tp, value):
    """``value`` as type ``tp`` (ints accepted for floats), or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
    elif origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return _check(inner, value)
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_check(typing.get_args(tp)[0], v) for v in value]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise TypeError


def unknown_key(key: str, known, where: str, what: str = "key") -> StreamfuseError:
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known {what}s: {', '.join(known)}"
    return StreamfuseError(f"{where}: unknown {what} '{key}'{hint}")


def build_config(cls: type[TrainConfig], values: dict, where: str) -> TrainConfig:
    """``cls(**values)`` with every key and type checked; errors are one line starting with ``where``."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    checked = {}
    for key, value in values.items():
        if key not in fields:
            raise unknown_key(key, fields, where)
        try:
            checked[key] = _check(hints[key], value)
        except TypeError:
            raise StreamfuseError(f"{where}: key '{key}' must be {_describe(hints[key])}, got {value!r}") from None
    missing = [name for name, f in fields.items() if name not in checked
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise StreamfuseError(f"{where}: missing key{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}")
    return cls(**checked)


def parse_overrides(items: list[str]) -> dict:
    """``["key=value", ...]`` (values in YAML syntax: 200, 1e-4, true, [0.3, 1.2]) -> dict."""
    import yaml

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise StreamfuseError(f"--set {item}: expected KEY=VALUE, e.g. --set steps=200")
        out[key.strip()] = yaml.safe_load(text)
    return out


def read_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """The typed config of ``path`` (its ``model`` key picks the class) with ``overrides`` applied."""
    from train.harness import recipe  # the model's module defines its Config

    path = Path(path)
    data = read_yaml(path, "training config")
    if not isinstance(data, dict) or "model" not in data:
        raise StreamfuseError(f"{path}: expected a YAML mapping with at least a 'model' key")
    cls = recipe(str(data["model"]), str(path)).Config
    cfg = build_config(cls, data, str(path))
    if overrides:
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in overrides:
            if key not in fields:
                raise unknown_key(key, fields, "--set")
        cfg = build_config(cls, {**dataclasses.asdict(cfg), **overrides}, f"{path} with --set")
    return cfg

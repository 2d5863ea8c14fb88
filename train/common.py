"""What every trainer shares: seeding, config, CSV loss log, checkpoints, the training record."""
from __future__ import annotations

import csv
import json
import platform
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def load_config(path: str | Path) -> dict:
    path = Path(path)
    cfg = yaml.safe_load(path.read_text())
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise SystemExit(f"{path}: expected a YAML mapping with at least a 'model' key")
    cfg["config_path"] = str(path)
    return cfg


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "streamfuse", "train"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class TrainClock:
    """Training wall time of all runs of one schedule (resumes included), against the config's
    ``time_limit_minutes`` (0 or missing: no limit), so a shared CPU stops a run at a known cost."""

    def __init__(self, cfg: dict, seconds_before: float = 0.0):
        self.minutes = float(cfg.get("time_limit_minutes") or 0)
        self.t0 = time.time() - seconds_before

    def seconds(self) -> float:
        return time.time() - self.t0

    def out_of_time(self, name: str, done: int) -> bool:
        """True, printing one line that says so, once the limit is passed after ``done`` steps."""
        if not self.minutes or self.seconds() <= self.minutes * 60:
            return False
        print(f"{name}: time limit of {self.minutes:g} min reached after {done} steps")
        return True


class LossLog:
    """Appends one CSV row per logged step (resumes append to the same file)."""

    def __init__(self, path: Path, fields: list[str]):
        self.path = path
        self.fields = ["step", *fields]
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, self.fields)
        if new:
            self.writer.writeheader()

    def write(self, step: int, values: dict) -> None:
        self.writer.writerow({"step": step, **{k: f"{float(v):.6g}" for k, v in values.items()}})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def save_checkpoint(path: Path, step: int, modules: dict, optimizers: dict, extra: dict | None = None) -> None:
    state = {"step": step, "modules": {k: m.state_dict() for k, m in modules.items()},
             "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "rng": torch.get_rng_state(), "np_rng": np.random.get_state(), "py_rng": random.getstate(), **(extra or {})}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, modules: dict, optimizers: dict) -> int:
    """Restore modules, optimisers and RNG states; return the step to continue from."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    for k, m in modules.items():
        m.load_state_dict(state["modules"][k])
    for k, o in optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    torch.set_rng_state(state["rng"])
    np.random.set_state(state["np_rng"])
    random.setstate(state["py_rng"])
    return int(state["step"])


def write_record(name: str, cfg: dict, out_dir: Path, extra: dict) -> Path:
    """engines/<name>.json: how the shipped weights were made."""
    record = {
        "model": name,
        "config": cfg,
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch threads={torch.get_num_threads()}",
        **extra,
    }
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path

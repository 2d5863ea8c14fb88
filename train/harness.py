"""The one training loop and the one ship step every model uses.

``train(cfg)`` seeds everything, sets the torch threads, loads the data, resumes from
``<run_dir>/checkpoint.pt`` if asked, then calls the model's ``step`` once per step. Around the
step it writes the loss log (``losses.csv``, the mean of each loss per ``log_every`` steps), the
resume checkpoint (``checkpoint_every``), snapshots of the shipped module (``snapshot_every``) and
stops at ``time_limit_minutes`` (all runs of the schedule together). ``ship`` then writes
``<out>/<model>.pt``, one ONNX graph per registry variant and the training record
``<out>/<model>.json``. A run resumed at step k ends bit for bit where one uninterrupted run would.

Adding a model is three parts in one file ``train/<model>.py`` plus one line in ``RECIPES``:

    @dataclass(kw_only=True)
    class Config(PairConfig):            # the YAML keys: seed, steps, patch, ... + these
        lr: float

    class Trainer(harness.Trainer):
        def __init__(self, cfg: Config, data, device: str):
            self.net = MyNet().to(device)  # MyNet: the module streamfuse.models registers as "mymodel"
            self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
            self.modules, self.optimizers, self.shipped = {"net": self.net}, {"opt": self.opt}, self.net
            self.device = device

        def step(self, i, batch, rng, gen) -> dict[str, float]:
            ir, vis = (t.to(self.device) for t in batch)
            loss = F.l1_loss(self.net(ir, vis), torch.maximum(ir, vis))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            return {"loss": loss.item()}

``step(i, batch, rng, gen)``: ``i`` the 0-based step (schedules, phases), ``batch`` what
``load_data(cfg).sample(rng)`` drew (default: IR and visible patches, N x 1 x P x P in [0, 1]),
``rng`` the numpy generator for any further random draws, ``gen`` a torch generator; it returns the
same loss names every step. Optional hooks: ``load_data`` (other data than training-split patches),
``export_module`` (a different module per ONNX variant), ``validation_loss`` (for
``select_by_validation``), ``final_metrics`` (extra numbers for the record). The model must be
registered in ``streamfuse.models`` (name, variants) so that the ship step can export it.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import json
import platform
import random
import subprocess
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from streamfuse import REPO_DIR, StreamfuseError
from train.config import TrainConfig, unknown_key

REPO = REPO_DIR
CHECKPOINT_SCHEMA = 1

# model name -> the module defining its ``Config`` and ``Trainer``
RECIPES = {
    "res2netfuse": "train.res2netfuse",
    "ddcgan": "train.ddcgan",
    "tlgan": "train.tlgan",
    "ddpatchgan": "train.ddpatchgan",
    "metafusion": "train.metafusion",
    "pyrfuse": "train.pyrfuse",
}


def recipe(model: str, where: str = "model") -> ModuleType:
    if model not in RECIPES:
        raise unknown_key(model, RECIPES, where, what="model")
    return importlib.import_module(RECIPES[model])


class Trainer(abc.ABC):
    """What the loop needs from a model; subclasses set the three attributes and define ``step``."""

    modules: dict[str, nn.Module]  # every network a checkpoint restores
    optimizers: dict[str, torch.optim.Optimizer]
    shipped: nn.Module  # the fusion module saved as <model>.pt and exported

    @staticmethod
    def load_data(cfg):
        """The data ``step`` gets: by default random aligned patches of the training split."""
        from train.datasets import PairPatches

        return PairPatches(cfg)

    @abc.abstractmethod
    def step(self, i: int, batch, rng: np.random.Generator, gen: torch.Generator) -> dict[str, float]:
        """One optimisation step (every update of every network) on ``batch``; returns the losses."""

    def export_module(self, variant: str) -> nn.Module:
        """The module exported as ONNX for registry variant ``variant``."""
        return self.shipped

    def validation_loss(self, module: nn.Module) -> float:
        """Loss of ``module`` (the shipped module with a candidate's weights), lower is better; a model
        that defines it can use ``select_by_validation``."""
        raise StreamfuseError(f"{type(self).__module__}: no validation loss")

    def final_metrics(self) -> dict:
        """Extra numbers for the training record, computed after the last step."""
        return {}


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def git_commit() -> str:
    """HEAD, with ``+dirty`` when tracked or untracked (not ignored) files differ from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class TrainClock:
    """Training wall time of all runs of one schedule (resumes included) against a limit in minutes
    (0: none), so a shared CPU stops a run at a known cost."""

    def __init__(self, minutes: float, seconds_before: float = 0.0):
        self.minutes = float(minutes)
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
    """losses.csv: one row per logged step, the mean of each loss over the steps since the last row
    (NaN entries, e.g. a discriminator loss in a warm-up step, are left out of the mean)."""

    def __init__(self, path: Path, append: bool):
        self.path = path
        self.fields: list[str] | None = None
        if append and path.exists():
            self.fields = path.read_text().splitlines()[0].split(",")[1:]
        else:
            path.unlink(missing_ok=True)

    def write(self, step: int, rows: list[dict]) -> dict:
        mean = {k: _nanmean([r[k] for r in rows]) for k in rows[0]}
        if self.fields is None:
            self.fields = list(mean)
            self.path.write_text(",".join(["step", *self.fields]) + "\n")
        elif list(mean) != self.fields:
            raise ValueError(f"{self.path}: step returned losses {list(mean)}, the log has {self.fields}; "
                             "a step must return the same names every time")
        with self.path.open("a") as f:
            f.write(",".join([str(step), *(f"{mean[k]:.6g}" for k in self.fields)]) + "\n")
        return mean


def _nanmean(values) -> float:
    finite = [float(v) for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def save_checkpoint(path: Path, cfg: TrainConfig, step: int, seconds: float, runs: list[dict], trainer: Trainer,
                    rng: np.random.Generator, gen: torch.Generator) -> None:
    state = {
        "schema": CHECKPOINT_SCHEMA, "model": cfg.model, "step": step, "seconds": seconds, "runs": runs,
        "modules": {k: m.state_dict() for k, m in trainer.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in trainer.optimizers.items()},
        "rng": {"torch": torch.get_rng_state(), "numpy_global": np.random.get_state(), "python": random.getstate(),
                "numpy": rng.bit_generator.state, "torch_generator": gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, cfg: TrainConfig, trainer: Trainer, rng: np.random.Generator,
                    gen: torch.Generator) -> tuple[int, float, list[dict]]:
    """Restore modules, optimisers and every random generator; returns (step, seconds trained so far,
    the earlier runs: [{"from_step", "git_commit"}], empty for checkpoints written before runs were kept)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("schema") != CHECKPOINT_SCHEMA:
        raise StreamfuseError(f"{path}: not a checkpoint of this trainer (schema {CHECKPOINT_SCHEMA}); "
                              "start without --resume or choose another --run-dir")
    if state["model"] != cfg.model:
        raise StreamfuseError(f"{path}: a checkpoint of '{state['model']}', not of '{cfg.model}'")
    for k, m in trainer.modules.items():
        m.load_state_dict(state["modules"][k])
    for k, o in trainer.optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    r = state["rng"]
    torch.set_rng_state(r["torch"])
    np.random.set_state(r["numpy_global"])
    random.setstate(r["python"])
    rng.bit_generator.state = r["numpy"]
    gen.set_state(r["torch_generator"])
    if r["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(r["cuda"])
    return int(state["step"]), float(state["seconds"]), list(state.get("runs", []))


def train(cfg: TrainConfig, device: str = "cpu", run_dir: Path | None = None, out_dir: Path | None = None,
          resume: bool = False) -> dict:
    """Train ``cfg.model`` and ship it to ``out_dir`` (default engines/); returns the training record."""
    trainer, facts = fit(cfg, device, Path(run_dir or REPO / "runs" / cfg.model), resume)
    out_dir = Path(out_dir or REPO / "engines")
    record = ship(cfg, trainer, out_dir, facts)
    print(f"{cfg.model}: {facts['steps']} steps ({facts['steps'] - facts['resumed_from']} in this run), "
          f"{facts['train_seconds']:.0f} s in all -> {out_dir}")
    return record


def fit(cfg: TrainConfig, device: str, run_dir: Path, resume: bool = False) -> tuple[Trainer, dict]:
    """The loop: returns the trained model's Trainer and the facts for the training record."""
    commit = git_commit()  # before this run writes anything (its own outputs would make the tree dirty)
    torch.set_num_threads(cfg.threads)
    gen = seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    trainer_cls = recipe(cfg.model).Trainer
    data = trainer_cls.load_data(cfg)
    trainer = trainer_cls(cfg, data, device)
    if cfg.select_by_validation and trainer_cls.validation_loss is Trainer.validation_loss:
        raise StreamfuseError(f"select_by_validation: model '{cfg.model}' has no validation loss; set it to false")

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.pt"
    start, seconds_before, runs = 0, 0.0, []
    if resume and ckpt.exists():
        start, seconds_before, runs = load_checkpoint(ckpt, cfg, trainer, rng, gen)
    elif resume:
        print(f"{cfg.model}: no checkpoint at {ckpt}, starting at step 0")
    # each run of a resumed schedule may start from another commit: the record lists them all
    runs = [*runs, {"from_step": start, "git_commit": commit}]
    if start == 0:
        for old in run_dir.glob("snapshot_*.pt"):  # another run's candidates must not compete
            old.unlink()
    log = LossLog(run_dir / "losses.csv", append=start > 0)
    clock = TrainClock(cfg.time_limit_minutes, seconds_before)
    total = cfg.total_steps()
    window: list[dict] = []
    last_logged: dict = {}
    done = start
    bar = tqdm(range(start, total), initial=start, total=total, desc=cfg.model, unit="step", mininterval=10)
    for i in bar:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.autocast == "bf16"):
            window.append(trainer.step(i, data.sample(rng), rng, gen))
        done = i + 1
        out_of_time = clock.out_of_time(cfg.model, done)
        if done % cfg.log_every == 0 or done == total or out_of_time:
            last_logged = log.write(done, window)
            window = []
            bar.set_postfix({k: f"{v:.4g}" for k, v in list(last_logged.items())[:3]})
        if done % cfg.checkpoint_every == 0 or done == total or out_of_time:
            save_checkpoint(ckpt, cfg, done, clock.seconds(), runs, trainer, rng, gen)
        if cfg.snapshot_every and done % cfg.snapshot_every == 0:
            torch.save(trainer.shipped.state_dict(), run_dir / f"snapshot_{done:06d}.pt")
        if out_of_time:
            break
    seconds = clock.seconds()

    record = {
        "data": data.record(), "steps": done, "steps_planned": total, "resumed_from": start, "device": device,
        "train_seconds": round(seconds, 1), "final_losses": {k: round(v, 6) for k, v in last_logged.items()},
        "loss_log": str(_relative(run_dir / "losses.csv")), "git_commit": commit, "runs": runs,
    }
    metrics = trainer.final_metrics()
    if metrics:
        record["final_metrics"] = metrics
    if cfg.select_by_validation:
        record.update(select_by_validation(trainer, run_dir, done))
    return trainer, record


def select_by_validation(trainer: Trainer, run_dir: Path, done: int) -> dict:
    """Load the snapshot (or the final weights) with the lowest validation loss into ``trainer.shipped``."""
    module = trainer.shipped.cpu()
    candidates = {int(p.stem.split("_")[1]): torch.load(p, map_location="cpu", weights_only=True)
                  for p in sorted(run_dir.glob("snapshot_*.pt"))}
    candidates = {step: state for step, state in candidates.items() if step < done}
    candidates[done] = {k: v.clone() for k, v in module.state_dict().items()}
    losses = {}
    for step, state in candidates.items():
        module.load_state_dict(state)
        losses[step] = trainer.validation_loss(module)
    best = min(losses, key=losses.get)
    module.load_state_dict(candidates[best])
    return {"validation_loss_by_step": losses, "shipped_step": best}


def export_graph(model: str, variant: str, module: nn.Module, out: Path, training_record: str | None = None) -> Path:
    """The one call of the ONNX exporter (streamfuse.export.onnx); ``training_record`` goes into the graph's metadata."""
    from streamfuse.export.onnx import export_onnx

    return export_onnx(model, variant, out=out, module=module, training_record=training_record)


def ship(cfg: TrainConfig, trainer: Trainer, out_dir: Path, facts: dict) -> dict:
    """Write <out>/<model>.pt, every registry variant's ONNX and the training record <out>/<model>.json."""
    from streamfuse.models import get_model

    spec = get_model(cfg.model)
    out_dir.mkdir(parents=True, exist_ok=True)
    module = trainer.shipped.cpu().eval()
    from streamfuse.export.onnx import record_id

    weights = out_dir / f"{cfg.model}.pt"
    torch.save(module.state_dict(), weights)
    onnx = [export_graph(cfg.model, v, trainer.export_module(v).cpu().eval(), out_dir / spec.onnx_path(v).name,
                         record_id(facts["git_commit"], weights)).name
            for v in spec.variants]
    record = {
        "model": cfg.model, "seed": cfg.seed, "config": dataclasses.asdict(cfg), **facts, "onnx": onnx,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch threads={torch.get_num_threads()}",
    }
    (out_dir / f"{cfg.model}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return record


def _relative(path: Path) -> Path:
    path = path.resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path

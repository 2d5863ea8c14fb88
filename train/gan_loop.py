"""The training loop the GAN trainers share (TLGAN, DDPatchGAN): random patch batches, a CSV loss
log, checkpoints with resume, an optional wall-time limit, then the shipped weights, ONNX and record.

A trainer object provides ``step(ir, vis, gen) -> dict of losses``, ``modules()``, ``optimizers()``
and ``model`` (the fusion module that ships).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streamfuse.export.onnx import export_onnx
from train.common import REPO, LossLog, TrainClock, load_checkpoint, save_checkpoint, seed_everything, write_record
from train.datasets import PairDataset


def train_gan(name: str, make_trainer, logged: list[str], cfg: dict, device: str, run_dir: Path, out_dir: Path,
              resume: bool = False) -> dict:
    """Train ``make_trainer(cfg, device)`` on the pair folders of ``cfg['data_root']``; returns the record."""
    torch.set_num_threads(int(cfg.get("threads", 1)))
    gen = seed_everything(int(cfg["seed"]))  # soft labels and other torch randomness
    data = PairDataset(cfg["data_root"], datasets=cfg.get("datasets"))
    rng = np.random.default_rng(int(cfg["seed"]))  # patches and flips
    trainer = make_trainer(cfg, device)
    ckpt = run_dir / "checkpoint.pt"
    start, seconds_before = 0, 0.0
    if resume and ckpt.exists():
        start = load_checkpoint(ckpt, trainer.modules(), trainer.optimizers())
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        rng = state["data_rng"]
        gen.set_state(state["label_rng"])
        seconds_before = float(state.get("seconds", 0.0))
    log = LossLog(run_dir / "losses.csv", logged)
    steps, batch, patch = int(cfg["steps"]), int(cfg["batch_size"]), int(cfg["patch"])
    log_every = int(cfg["log_every"])
    clock = TrainClock(cfg, seconds_before)
    recent: list[dict] = []
    done = start
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=name, unit="step", mininterval=10)
    for step in bar:
        ir, vis = data.sample_batch(batch, patch, rng, cfg.get("gain_range"))
        losses = trainer.step(ir, vis, gen)
        recent = (recent + [losses])[-log_every:]
        done = step + 1
        out_of_time = clock.out_of_time(name, done)
        if done % log_every == 0 or done == steps or out_of_time:
            log.write(done, {k: np.mean([r[k] for r in recent]) for k in logged})
            bar.set_postfix({k: f"{losses[k]:.3f}" for k in logged[:2]})
        if done % int(cfg["checkpoint_every"]) == 0 or done == steps or out_of_time:
            save_checkpoint(ckpt, done, trainer.modules(), trainer.optimizers(),
                            {"data_rng": rng, "label_rng": gen.get_state(), "seconds": clock.seconds()})
        if out_of_time:
            break
    log.close()
    seconds = clock.seconds()
    final = {k: round(float(np.mean([r[k] for r in recent])), 5) for k in logged} if recent else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    model = trainer.model.cpu().eval()
    torch.save(model.state_dict(), out_dir / f"{name}.pt")
    onnx = export_onnx(name, out=out_dir / f"{name}.onnx", module=model)
    record = {
        "data": {"root": cfg["data_root"], "pairs": len(data),
                 "pairs_per_dataset": {d: sum(n.startswith(d + "/") for n in data.names())
                                       for d in sorted({n.split("/")[0] for n in data.names()})}},
        "steps": done, "steps_planned": steps, "batch_size": batch, "patch": [patch, patch], "resumed_from": start,
        "device": device, "train_seconds": round(seconds, 1),
        "final_losses_mean_of_last_log_window": final,
        "loss_log": str((run_dir / "losses.csv").relative_to(REPO)) if run_dir.is_relative_to(REPO) else str(run_dir),
        "onnx": [onnx.name],
    }
    write_record(name, cfg, out_dir, record)
    print(f"{name}: {done} steps in {seconds:.0f} s -> {out_dir}")
    return record

"""Training entry point.

    python -m train res2netfuse                      # train/configs/res2netfuse.yaml
    python -m train train/configs/ddcgan.yaml --device cuda --resume
    python train/train.py train/configs/ddcgan.yaml --set steps=200

Each config names its ``model``; the trainer for it is looked up in TRAINERS. A run writes
``runs/<name>/`` (losses.csv, checkpoint.pt for resume) and, when it finishes, the shipped files
``engines/<name>.pt``, ``engines/<name>.json`` (training record) and the ONNX graph(s).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `train` and `streamfuse` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.common import REPO, load_config  # noqa: E402

TRAINERS = {
    "res2netfuse": "train.res2netfuse:train",
    "ddcgan": "train.ddcgan:train",
    "tlgan": "train.tlgan:train",
    "ddpatchgan": "train.ddpatchgan:train",
    "metafusion": "train.metafusion:train",
}


def parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description="Train a fusion model from a YAML config.")
    p.add_argument("config", help="config path, or a model name (uses train/configs/<name>.yaml)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--resume", action="store_true", help="continue from runs/<name>/checkpoint.pt")
    p.add_argument("--run-dir", default=None, help="where logs and checkpoints go (default runs/<config name>)")
    p.add_argument("--out", default=str(REPO / "engines"), help="where the finished weights, record and ONNX go")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = p.parse_args(argv)

    path = Path(args.config)
    if not path.suffix:
        path = REPO / "train" / "configs" / f"{args.config}.yaml"
    if not path.exists():
        p.error(f"{path}: config not found")
    cfg = load_config(path)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in cfg:
            p.error(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(sorted(cfg))}")
        cfg[key] = parse_value(value)
    if cfg["model"] not in TRAINERS:
        p.error(f"{path}: model '{cfg['model']}' has no trainer; known: {', '.join(TRAINERS)}")
    module_name, _, fn = TRAINERS[cfg["model"]].partition(":")
    trainer = getattr(importlib.import_module(module_name), fn)
    run_dir = Path(args.run_dir or REPO / "runs" / path.stem)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer(cfg, device=args.device, run_dir=run_dir, out_dir=Path(args.out), resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())

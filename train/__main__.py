"""``python -m train <model or config.yaml> [--device cuda] [--resume] [--set key=value ...]``.

    python -m train res2netfuse                      # train/configs/res2netfuse.yaml
    python -m train train/configs/ddcgan.yaml --device cuda --resume
    python -m train ddcgan --set steps=200 --out out/ddcgan --run-dir runs/ddcgan_short

A run writes ``runs/<config name>/`` (losses.csv, checkpoint.pt for --resume, snapshots) and, when
it ends, ``<out>/<model>.pt``, every variant's ONNX and ``<out>/<model>.json`` (the training
record); ``--out`` defaults to engines/, where the shipped weights live. User errors print one
line and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamfuse import REPO_DIR as REPO
from streamfuse import StreamfuseError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description="Train a fusion model from a YAML config.")
    p.add_argument("config", help="config path, or a model name (uses train/configs/<name>.yaml)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt")
    p.add_argument("--run-dir", default=None, help="logs, checkpoint and snapshots (default runs/<config name>)")
    p.add_argument("--out", default=str(REPO / "engines"), help="where the weights, ONNX and record go (default engines/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    args = p.parse_args(argv)
    try:
        from train.config import parse_overrides, read_config
        from train.harness import train

        path = Path(args.config)
        if not path.suffix:
            path = REPO / "train" / "configs" / f"{args.config}.yaml"
        cfg = read_config(path, parse_overrides(args.set))
        train(cfg, device=args.device, run_dir=Path(args.run_dir or REPO / "runs" / path.stem),
              out_dir=Path(args.out), resume=args.resume)
    except (StreamfuseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (resume with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python run.py <command>`` or ``streamfuse <command>``.

Each command is a pair ``add_<name>(parser)`` / ``cmd_<name>(args) -> exit code``, listed in
COMMANDS. Errors a user can act on (StreamfuseError, a usage mistake) print as one line and exit 2,
checked before any work; a command over several items (pairs, sequences, measurements) does the
rest when some fail, names them in one line and exits 1.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

from streamfuse import StreamfuseError
from streamfuse.io.uri import RedactingFormatter, redact_uri
from streamfuse.models.registry import DEFAULT_MODEL

log = logging.getLogger("streamfuse")

EPILOG = """examples:
  python run.py run --ir streamfuse/data/sample/ir.mp4 --vis streamfuse/data/sample/vis.mp4 -o out/fused.mp4
  python run.py run --ir "file://$PWD/streamfuse/data/sample/ir.mp4?loop=true" \
      --vis "file://$PWD/streamfuse/data/sample/vis.mp4?loop=true" -o out/fused.mp4 -o http://127.0.0.1:8090
  python run.py fuse --ir ir.png --vis vis.png -o fused.png
  python run.py fuse --ir data/TNO/ir --vis data/TNO/vis -o out/ --model res2netfuse --strategy mean
  python run.py models
  python run.py calibrate --ir ir.mp4 --vis vis.mp4 --auto --sync -o calibration/rig.yaml
"""


class Parser(argparse.ArgumentParser):
    """A usage mistake is one line too (argparse prints the whole usage before it)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def number(text: str) -> float:
    """A finite float option (argparse's float takes 'nan' and 'inf')."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def precision_help() -> str:
    from streamfuse.backends import precision_table

    return f"fp32 | fp16 | int8 where the backend runs it ({precision_table()}; default fp32)"


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (see `models`; default {DEFAULT_MODEL})")
    p.add_argument("--variant", default=None, help="model variant (e.g. res2netfuse: l1 | mean)")
    p.add_argument("--strategy", choices=["l1", "mean"], default=None, help="Res2NetFuse fusion strategy (= --variant)")
    p.add_argument("--backend", default="auto", help="auto | onnxruntime | openvino | torch | tensorrt")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--precision", default="fp32", help=precision_help())
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for CPU backends (default 1)")
    p.add_argument("--onnx", default=None, help="run this ONNX graph (its metadata names the model) instead of the shipped one")


def fuser_from_args(args):
    from streamfuse.backends import DEFAULT_THREADS, load_fuser

    extra = {}
    if args.onnx:
        if not Path(args.onnx).is_file():
            raise StreamfuseError(f"{args.onnx}: ONNX graph not found (--onnx)")
        extra["onnx_path"] = Path(args.onnx)
    return load_fuser(args.model, backend=args.backend, device=args.device, precision=args.precision,
                      variant=args.variant or args.strategy, threads=args.threads or DEFAULT_THREADS, **extra)


# ---------------------------------------------------------------- fuse
def add_fuse(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ir", required=True, help="IR image, or a folder of IR images")
    p.add_argument("--vis", required=True, help="visible image, or a folder paired with --ir by file stem")
    p.add_argument("-o", "--output", required=True, help="output image (single pair) or folder")
    p.add_argument("--agc", default="1,99", help="percentiles for 16-bit IR auto gain (default 1,99)")
    add_model_args(p)


def cmd_fuse(args) -> int:
    from tqdm import tqdm

    from streamfuse.io.images import IMAGE_EXTS, check_folder_writable, read_pair, source_pairs, write_image
    from streamfuse.io.uri import warn_if_same_source
    from streamfuse.stage import make_stage

    agc = parse_agc(args.agc)
    ir, vis, out = Path(args.ir), Path(args.vis), Path(args.output)
    if ir.is_dir() != vis.is_dir():
        raise StreamfuseError(f"--ir {ir} and --vis {vis} must both be files or both be folders")
    warn_if_same_source(args.ir, args.vis)
    if ir.is_dir():
        pairs = source_pairs(ir, vis)
        if out.suffix.lower() in IMAGE_EXTS:
            raise StreamfuseError(f"-o {out}: folder mode writes a folder, not an image file")
        jobs = [(stem, i, v, out / f"{stem}.png") for stem, i, v in pairs]
    else:
        if out.suffix.lower() not in IMAGE_EXTS:
            out = out / f"{ir.stem}.png"
        read_pair(ir, vis)  # a missing or undecodable pair fails here, before the model loads
        jobs = [(ir.stem, ir, vis, out)]
    check_folder_writable(out if ir.is_dir() else out.parent, f"-o {args.output}")
    fuser = fuser_from_args(args)
    stage = make_stage(fuser, agc=agc)
    t0 = time.perf_counter()
    failed = []
    bar = tqdm(jobs, unit="pair", disable=len(jobs) < 2, file=sys.stderr)
    for stem, i, v, o in bar:
        try:
            write_image(o, stage.process(*read_pair(i, v)).fused)
        except StreamfuseError as exc:
            if len(jobs) == 1:
                raise
            failed.append(stem)
            log.error("%s", exc)
    dt = time.perf_counter() - t0
    done = len(jobs) - len(failed)
    print(f"fused {done} pair(s) with {fuser.spec.name}/{fuser.variant} on {fuser.backend} ({fuser.device}) "
          f"in {dt:.2f} s, {1000 * dt / max(done, 1):.1f} ms per pair -> {out}")
    return report_failures(failed, len(jobs), "pair")


def report_failures(failed: list[str], total: int, what: str) -> int:
    """The exit code of a command over several items: one line naming the failed ones, and 1, if any failed."""
    if not failed:
        return 0
    names = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
    print(f"{len(failed)} of {total} {what}(s) failed: {names} (see above)", file=sys.stderr)
    return 1


def parse_agc(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise StreamfuseError(f"--agc '{text}': expected two percentiles 'low,high', e.g. 1,99") from None
    if not 0 <= lo < hi <= 100:
        raise StreamfuseError(f"--agc '{text}': expected 0 <= low < high <= 100")
    return lo, hi


# ---------------------------------------------------------------- models
def add_models(p: argparse.ArgumentParser) -> None:
    """`models` takes no options."""


def cmd_models(args) -> int:
    from streamfuse.backends import available_backends
    from streamfuse.models import list_models
    from streamfuse.models.registry import engines_dir

    print(f"{'model':14s} {'variants':18s} {'IR scale':12s} {'graphs':8s} {'weights':10s} paper")
    for spec in list_models(speed_only=None):
        if spec.speed_only:
            weights = "random"
        elif not spec.trained:
            weights = "baseline"
        else:
            weights = "shipped" if spec.weights_path().exists() else "-"
        ir_scales = "|".join(f"1/{spec.ir_scale_for(v)}" for v in spec.variants)
        graphs = f"{sum(spec.onnx_path(v).exists() for v in spec.variants)}/{len(spec.variants)}"
        note = " [speed reference, random weights: bench only]" if spec.speed_only else ""
        print(f"{spec.name:14s} {'|'.join(spec.variants):18s} {ir_scales:12s} {graphs:8s} {weights:10s} {spec.paper}{note}")
    print(f"graphs and weights from {engines_dir()} (set STREAMFUSE_ENGINES to use another folder)")
    print(f"backends available here: {', '.join(available_backends())}")
    return 0


# ---------------------------------------------------------------- export
def add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--variant", default=None, help="one variant (default: all variants of the model)")
    p.add_argument("-o", "--output", default=None, help="output .onnx (default engines/<model>[-variant].onnx); the "
                                                          "graph records model, variant, IR scale, pad multiple in its metadata")
    p.add_argument("--check-fp16", action="store_true",
                   help="instead of exporting, check the ONNX (exported first if missing) for FP16/TensorRT: "
                        "per-layer max |activation| on real pairs vs the FP16 range, fp16-vs-fp32 PSNR, TensorRT ops")
    p.add_argument("--data", default=None, help="pairs for --check-fp16: a folder with ir/ and vis/, or of such "
                                                "folders (default: the bundled sample)")
    p.add_argument("--pairs", type=int, default=5, help="how many pairs --check-fp16 uses (default 5)")
    p.add_argument("--max-side", type=int, default=640,
                   help="--check-fp16 shrinks pairs to this longest side (default 640; 0 = native size)")


def cmd_export(args) -> int:
    from streamfuse.export.onnx import export_onnx
    from streamfuse.models import get_model

    spec = get_model(args.model)
    variants = [args.variant] if args.variant else list(spec.variants)
    if args.check_fp16:
        return check_fp16(spec, variants, args)
    for v in variants:
        print(export_onnx(spec.name, v, out=args.output if args.variant else None))
    return 0


def check_fp16(spec, variants, args) -> int:
    from streamfuse.evaluation.fp16_report import fp16_report
    from streamfuse.export.fp16 import FP16_MAX
    from streamfuse.export.onnx import export_onnx
    from streamfuse.export.tensorrt import TRT_MAX_OPSET, tensorrt_problems

    ok = True
    for v in variants:
        path = Path(args.output) if args.output and args.variant else spec.onnx_path(v)
        if not path.exists():
            export_onnx(spec.name, v, out=path)
        report = fp16_report(spec.name, v, args.data, onnx_path=path, limit=args.pairs, max_side=args.max_side)
        print(report.text())
        problems = tensorrt_problems(path)
        print(f"  TensorRT ONNX parser (8.5, opset <= {TRT_MAX_OPSET}): "
              + ("every operator supported" if not problems else "; ".join(problems)))
        ok &= not problems and report.worst.max_abs < FP16_MAX and report.min_psnr >= 40.0
    print("FP16 check: " + ("pass" if ok else "FAIL (see above)"))
    return 0 if ok else 1


# ---------------------------------------------------------------- build (TensorRT)
def add_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--variant", default=None, help="model variant (default: the model's default)")
    p.add_argument("--precision", choices=["fp16", "fp32"], default="fp16")
    p.add_argument("--size", default="640x512", help="visible frame size WxH the engine is built for (default 640x512)")
    p.add_argument("--ir-size", default=None, help="IR input size WxH when it differs (DDcGAN, MetaFusion)")
    p.add_argument("--workspace", type=int, default=1024, help="builder workspace in MiB (default 1024)")
    p.add_argument("--onnx", default=None, help="ONNX graph (default engines/<model>[-variant].onnx)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached engine is up to date")


def parse_size(text: str, option: str) -> tuple[int, int]:
    """'640x512' -> (h, w) = (512, 640)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise StreamfuseError(f"{option} '{text}': expected WIDTHxHEIGHT, e.g. 640x512") from None
    if w <= 0 or h <= 0:
        raise StreamfuseError(f"{option} '{text}': width and height must be positive")
    return h, w


def cmd_build(args) -> int:
    import json

    from streamfuse.export.cache import sidecar_path
    from streamfuse.export.tensorrt import engine_for
    from streamfuse.models import get_model

    spec = get_model(args.model)
    variant = spec.check_variant(args.variant)
    vis_hw = parse_size(args.size, "--size")
    ir_hw = parse_size(args.ir_size, "--ir-size") if args.ir_size else None
    path = engine_for(spec, variant, args.precision, vis_hw, ir_hw, onnx_path=Path(args.onnx) if args.onnx else None,
                      force=args.force, workspace=args.workspace << 20)
    key = json.loads(sidecar_path(path).read_text())["key"]
    print(f"{path}: {spec.name}/{variant} {args.precision} {args.size}, TensorRT {key['tensorrt']}, "
          f"{key['gpu']} (sm {key['compute_capability']})")
    return 0


# ---------------------------------------------------------------- eval
def add_eval(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = """modes:
  score fused images:  python run.py eval --ir data/TNO/ir --vis data/TNO/vis --fused out/methodA --fused out/methodB
  fuse, then score:    python run.py eval --models all --data data/TNO --out out/eval_tno
  several datasets:    python run.py eval --models all --data data/TNO --data data/LLVIP --out out/eval_all
  temporal stability:  python run.py eval --video out/fused.mp4 --ir ir.mp4 --vis vis.mp4
writes results.md, results.csv, per_image.csv and contact_sheet.png to --out"""
    p.add_argument("--ir", help="IR source: image folder (with --fused) or video file / frame folder (with --video)")
    p.add_argument("--vis", help="visible source: image folder (with --fused) or video file / frame folder (with --video)")
    p.add_argument("--fused", action="append", default=[], metavar="DIR",
                   help="folder of fused images named like the sources; repeat to compare methods (named by folder)")
    p.add_argument("--models", help="'all' (baselines + every exported model) or name[:variant],... to fuse --data with")
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="folder with ir/ and vis/ subfolders for --models; repeat for several datasets "
                        "(the report adds one table per dataset)")
    p.add_argument("--reuse-fused", action="store_true",
                   help="with --models: score fused images already in --out that are newer than the model's ONNX "
                        "instead of fusing again")
    p.add_argument("--video", action="append", default=[], metavar="FUSED",
                   help="fused video (or frame folder) for temporal metrics against --ir/--vis; repeatable")
    p.add_argument("--out", default="out/eval", help="report folder (default out/eval)")
    p.add_argument("--metrics", default=None, help="comma-separated subset, e.g. EN,MI,Qabf (default: all)")
    p.add_argument("--sheet-rows", type=int, default=6, help="image pairs in the contact sheet (default 6)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads for --models (default 1)")


def cmd_eval(args) -> int:
    from streamfuse.evaluation import runner as ev
    from streamfuse.evaluation.metrics import check_metric_names
    from streamfuse.io.images import check_folder_writable

    modes = [name for name, on in (("--fused", args.fused), ("--models", args.models), ("--video", args.video)) if on]
    if len(modes) != 1:
        raise StreamfuseError("eval needs exactly one of --fused DIR, --models NAMES (with --data) or --video FILE"
                              + (f"; got {' and '.join(modes)}" if modes else ""))
    metrics = check_metric_names(args.metrics.split(",")) if args.metrics else None
    out = Path(args.out)
    check_folder_writable(out, f"--out {out}")
    if args.video:
        if not (args.ir and args.vis):
            raise StreamfuseError("--video needs --ir and --vis (the source videos or frame folders)")
        results, failed = {}, []
        for video in args.video:
            try:
                results[Path(video).stem] = ev.score_video(video, args.ir, args.vis)
            except StreamfuseError as exc:
                if len(args.video) == 1:
                    raise
                log.error("%s", exc)
                failed.append(Path(video).stem)
        if not results:
            raise StreamfuseError(f"none of the {len(args.video)} video(s) could be scored (see above)")
        paths = ev.write_video_report(results, out)
        outcome = (failed, len(args.video), "video")
    elif args.fused:
        if not (args.ir and args.vis):
            raise StreamfuseError("--fused needs --ir DIR and --vis DIR (the source images)")
        scores = ev.score_folders(args.ir, args.vis, args.fused, metrics)
        paths = ev.write_reports(scores, out, f"Fusion quality: {Path(args.ir).parent.name or args.ir}",
                                 ev.source_pairs(args.ir, args.vis), args.sheet_rows)
        outcome = (scores.failed, scores.pairs, "pair")
    else:
        if not args.data:
            raise StreamfuseError("--models needs --data DIR (a folder with ir/ and vis/)")
        pairs = ev.dataset_pairs(args.data)
        scores = ev.fuse_and_score(args.models, args.data, out, metrics, args.threads, args.reuse_fused)
        paths = ev.write_reports(scores, out, f"Fusion quality: {', '.join(Path(d).name for d in args.data)}",
                                 pairs, args.sheet_rows)
        outcome = (scores.failed, scores.pairs, "pair")
    print(paths["markdown"].read_text())
    if not args.video:
        print(ev.timing_line(scores))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return report_failures(*outcome)


# ---------------------------------------------------------------- run (video pipeline)
def add_pipeline_model_options(p: argparse.ArgumentParser, threads_help: str) -> None:
    """Model and backend options of `run` and `batch` (no defaults here: unset ones come from the YAML config)."""
    p.add_argument("--model", help=f"model name (default {DEFAULT_MODEL}; see `models`)")
    p.add_argument("--variant", help="model variant (res2netfuse: l1 | mean)")
    p.add_argument("--backend", help="auto | onnxruntime | openvino | torch | tensorrt (default auto)")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--precision", help=precision_help())
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--onnx", dest="onnx_path", help="run this ONNX graph instead of the shipped one")


def add_run(p: argparse.ArgumentParser) -> None:
    # Every option is also a key of the YAML --config file (same name, '_' for '-'); the command line wins.
    # Defaults live in streamfuse.config.RunConfig, so options here default to None ("not given").
    p.add_argument("--ir", help="IR source: video file, image folder/glob, rtsp://..., /dev/videoN")
    p.add_argument("--vis", help="visible source (same kinds)")
    p.add_argument("-o", "--output", action="append",
                   help="out.mp4 / out.mkv, images://dir, display://, rtsp://..., http://HOST:PORT (browser view), "
                        "null://; repeat for several outputs, e.g. -o out.mp4 -o http://0.0.0.0:8090")
    p.add_argument("--token", help="token the browser view asks for (needed to serve beyond 127.0.0.1)")
    p.add_argument("--config", help="YAML file with any of the options below (see docs/pipeline.md)")
    p.add_argument("--calib", help="calibration YAML (homography IR -> visible; default: identity / resize)")
    add_pipeline_model_options(p, threads_help="intra-op threads of CPU backends (default 1)")
    p.add_argument("--mode", choices=["auto", "lossless", "live"],
                   help="lossless: every matched pair (files); live: newest frames, bounded latency (default auto)")
    p.add_argument("--offset-ms", type=number, help="added to IR timestamps (IR pts + offset = visible pts)")
    p.add_argument("--tolerance-ms", type=number, help="pairing tolerance (default half the slower frame period)")
    p.add_argument("--max-wait-ms", type=number, help="live: longest wait for a partner frame (default 200)")
    p.add_argument("--mosaic", action="store_true", default=None, help="write IR | visible | fused side by side")
    p.add_argument("--overlay", action="store_true", default=None,
                   help="draw the registered IR's edges in magenta over the output, to check the calibration")
    p.add_argument("--agc", help="percentiles for 16-bit IR auto gain (default 1,99)")
    p.add_argument("--max-frames", type=int, help="stop after this many fused frames")
    p.add_argument("--queue-size", type=int, help="frames held between stages (default 4)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar on a terminal (the status is logged every --status-every seconds instead)")
    p.add_argument("--status-every", type=number, metavar="SECONDS",
                   help="when stderr is not a terminal: log fps, latency, drops and reconnects every SECONDS "
                        "(default 10; 0: never)")


def cmd_run(args) -> int:
    from streamfuse.config import FIELDS, make_config
    from streamfuse.io.uri import warn_if_same_source
    from streamfuse.pipeline import Pipeline, stop_on_signals

    overrides = {key: getattr(args, key) for key in FIELDS if hasattr(args, key)}
    if overrides.get("agc") is not None:
        overrides["agc"] = list(parse_agc(overrides["agc"]))
    config = make_config(args.config, **overrides).validate()
    warn_if_same_source(config.ir, config.vis)
    pipeline = Pipeline(config)
    with stop_on_signals(pipeline.stop, pipeline.abort):
        try:
            stats = pipeline.run()
        except (StreamfuseError, KeyboardInterrupt):
            if pipeline.stats.stopped_by:  # the run got going, e.g. a stream that never came back: the statistics
                print(pipeline.stats.summary())
            raise
    fuser = pipeline.fuser
    if stats.written:
        print(f"wrote {stats.written} fused frame(s) to {stats.output} "
              f"({fuser.spec.name}/{fuser.variant} on {fuser.backend}, {stats.mode})")
    elif stats.stopped_by == "interrupted":  # e.g. Ctrl-C while the model loaded: no file was made
        print(f"interrupted before the first fused frame; nothing written to {stats.output}")
    else:
        print(f"no frame was fused, nothing written to {stats.output}; stopped by: {stats.stopped_by}")
    print(stats.summary())
    if stats.stopped_by == "interrupted":
        return 130
    return 0 if stats.written else 1


# ---------------------------------------------------------------- batch (datasets)
def add_batch(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = """examples:
  python run.py batch data/kaist -o out/kaist --model tlgan              # setXX/VYYY/{lwir,visible}, 2 workers here
  python run.py batch data/ino -o out/ino --layout pairs --workers 4     # <name>_ir.mp4 + <name>_vis.mp4, ir/ + vis/
  python run.py batch manifest.csv -o out/mine                           # rows: ir,vis,output[,calib,offset_ms]
  python run.py batch data/kaist -o out/kaist --ray ray://head:10001     # each sequence a Ray task (pip install 'streamfuse[ray]')
run the same command again after a stop: complete sequences are skipped, the rest redone"""
    p.add_argument("root", help="dataset folder, or a manifest .csv/.yaml")
    p.add_argument("-o", "--output", required=True, help="output folder (mirrors the dataset tree)")
    p.add_argument("--layout", default="auto", choices=["auto", "kaist", "pairs", "manifest"],
                   help="auto: KAIST and paired videos/folders (default); manifest: ROOT is a CSV/YAML file")
    p.add_argument("--workers", type=int, help="local worker processes (default: cores / --threads; with --ray, Ray "
                   "runs as many tasks as the cluster has CPUs)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run each sequence as a Ray task on ADDRESS (default RAY_ADDRESS, else a local Ray)")
    p.add_argument("--images", action="store_true", help="write frame folders named like the visible frames, not MP4s")
    p.add_argument("--force", action="store_true", help="redo sequences that are already complete")
    p.add_argument("--fps", type=number, default=30.0, help="frame rate of frame-folder sequences (default 30; KAIST 20)")
    p.add_argument("--dry-run", action="store_true", help="list the sequences found and stop")
    p.add_argument("--config", help="YAML file with run options (model, backend, output_options, ...)")
    p.add_argument("--calib", help="calibration YAML for sequences without their own calibration.yaml")
    add_pipeline_model_options(p, threads_help="intra-op threads per worker (default 1)")
    p.add_argument("--offset-ms", type=number, help="added to IR timestamps where the sequence sets none")
    p.add_argument("--tolerance-ms", type=number, help="pairing tolerance (default half the slower frame period)")
    p.add_argument("--mosaic", action="store_true", default=None, help="write IR | visible | fused side by side")
    p.add_argument("--agc", help="percentiles for 16-bit IR auto gain (default 1,99)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def cmd_batch(args) -> int:
    from streamfuse import batch
    from streamfuse.config import FIELDS, make_config
    from streamfuse.io.images import check_folder_writable
    from streamfuse.models import get_model

    overrides = {key: getattr(args, key) for key in FIELDS
                 if hasattr(args, key) and key not in ("output", "progress")}
    if overrides.get("agc") is not None:
        overrides["agc"] = list(parse_agc(overrides["agc"]))
    if args.workers is not None and args.workers < 1:
        raise StreamfuseError(f"--workers must be >= 1, got {args.workers}")
    config = make_config(args.config, **overrides)
    get_model(config.model).check_variant(config.variant)  # a typo fails here, not in every worker
    if not args.dry_run:
        check_folder_writable(args.output, f"-o {args.output}")
    sequences = batch.find_sequences(args.root, args.layout)
    print(batch.describe(sequences), flush=True)
    if args.dry_run:
        for s in sequences:
            print(f"  {s.name}: {redact_uri(s.ir)} + {redact_uri(s.vis)} ({s.frames if s.frames is not None else '?'} frames)"
                  + (f" FAILS: {s.problem}" if s.problem else ""))
        return 0
    settings = batch.BatchSettings(out_dir=args.output, config=config, images=args.images, force=args.force,
                                   fps=args.fps)
    t0 = time.perf_counter()
    results = batch.run_batch(sequences, settings, workers=args.workers, use_ray=args.ray is not None,
                              ray_address=args.ray or None, show_progress=args.progress)
    print(f"batch: {batch.totals(results, time.perf_counter() - t0)}; summary in {Path(args.output) / 'summary.md'}")
    return report_failures([r["sequence"] for r in results if r["status"] == "failed"], len(results), "sequence")


# ---------------------------------------------------------------- bench
def add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=DEFAULT_MODEL, help=f"comma-separated model names (default {DEFAULT_MODEL})")
    p.add_argument("--backends", default="onnxruntime,openvino,torch,onnxruntime-cuda,torch-cuda,tensorrt-fp32,tensorrt",
                   help="comma-separated backends (tensorrt = FP16 engine; *-cuda on the GPU); ones this machine "
                        "cannot run get a 'not available here' row")
    p.add_argument("--sizes", default="640x512,1280x1024", help="comma-separated WxH (default 640x512,1280x1024)")
    p.add_argument("--frames", type=int, default=20, help="frames per measurement (default 20)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of CPU backends (default 1)")
    p.add_argument("--onnx", default=None, help="ONNX graph for onnxruntime/openvino instead of the shipped one")
    p.add_argument("--out", default=None, help="writes <out>.json and <out>.md (default out/bench/benchmarks; "
                                               "--out docs/benchmarks replaces the published figures)")


def cmd_bench(args) -> int:
    from streamfuse.bench import DEFAULT_OUT, parse_sizes, run_bench

    out = args.out or DEFAULT_OUT
    doc = run_bench(models=[m.strip() for m in args.models.split(",") if m.strip()],
                    backends=[b.strip() for b in args.backends.split(",") if b.strip()],
                    sizes=parse_sizes(args.sizes), frames=args.frames, out=out, threads=args.threads,
                    onnx_path=args.onnx)
    for r in doc["rows"]:
        if r["status"] == "ok":
            print(f"{r['model']:12s} {r['backend']:12s} {r['size']:10s} model {r['model_only']['fps']:7.2f} fps "
                  f"({r['model_only']['ms_p50']:.1f} ms p50)  pipeline {r['pipeline']['fps']:7.2f} fps "
                  f"({r['pipeline_over_model']:.2f}x)  serial {r['serial']['fps']:7.2f} fps")
        else:
            print(f"{r['model']:12s} {r['backend']:12s} {r['size']:10s} {r['status']}")
    print(f"wrote {out}.md and {out}.json")
    failed = [f"{r['model']}/{r['backend']}/{r['size']}" for r in doc["rows"] if r["status"].startswith("could not")]
    return report_failures(failed, len(doc["rows"]), "measurement")


# ---------------------------------------------------------------- soak
def add_soak(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=number, default=10.0, help="length of the live run (default 10)")
    p.add_argument("--restart-every", type=number, default=60.0, metavar="SECONDS",
                   help="kill and restart the RTSP server this often (default 60)")
    p.add_argument("--size", default="640x512", help="clip size WxH (default 640x512)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    p.add_argument("--backend", default="auto", help="backend (default auto)")
    p.add_argument("--status-every", type=number, default=10.0, metavar="SECONDS", help="status log line period (default 10)")
    p.add_argument("--out", default="out/soak", help="folder for the clips, fused.mp4, soak.json and soak.md (default out/soak)")


def cmd_soak(args) -> int:
    from streamfuse.soak import report, run_soak

    h, w = parse_size(args.size, "--size")
    doc = run_soak(minutes=args.minutes, restart_every=args.restart_every, size=(w, h), model=args.model,
                   backend=args.backend, out=args.out, status_every=args.status_every)
    print(report(doc))
    print(f"wrote {Path(args.out) / 'soak.md'} and soak.json")
    return 0 if doc["plays_with_every_frame"] else 1


# ---------------------------------------------------------------- gpucheck
def add_gpucheck(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/gpucheck", help="folder for pytest.log/.xml, bench.md/.json, summary.md "
                                                         "(default out/gpucheck)")
    p.add_argument("--frames", type=int, default=30, help="frames per benchmark measurement (default 30)")
    p.add_argument("--models", default=DEFAULT_MODEL, help=f"comma-separated models to benchmark (default {DEFAULT_MODEL})")


def cmd_gpucheck(args) -> int:
    from streamfuse.gpucheck import gpucheck

    return gpucheck(args.out, args.frames, tuple(m.strip() for m in args.models.split(",") if m.strip()))


# ---------------------------------------------------------------- calibrate
def add_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ir", required=True, help="IR input: image, video file, image folder/glob, rtsp://..., /dev/videoN")
    p.add_argument("--vis", required=True, help="visible input (same kinds)")
    p.add_argument("-o", "--output", required=True, help="calibration YAML to write, e.g. calibration/rig.yaml")
    how = p.add_argument_group("method (one of)")
    how.add_argument("--points", metavar="FILE", help="CSV/YAML of >= 4 point pairs ir_x,ir_y,vis_x,vis_y")
    how.add_argument("--checkerboard", metavar="COLSxROWS", help="heated/back-lit board, inner corners, e.g. 9x6")
    how.add_argument("--auto", action="store_true", help="automatic multimodal registration from the frames")
    p.add_argument("--sync", action="store_true", help="also estimate the time offset from motion (alone: update "
                   "the time offset of an existing -o file)")
    p.add_argument("--frames", type=int, help="frame pairs used (default: auto 3, checkerboard 10)")
    p.add_argument("--max-frames", type=int, default=300, help="frames read per stream (the --sync window; default 300)")
    p.add_argument("--fps", type=number, help="frame rate of image-sequence inputs (default 30)")
    p.add_argument("--fov-ratio", type=number, default=1.0,
                   help="--auto: IR horizontal field of view / visible (default 1; searched 0.72-1.4x around it)")
    p.add_argument("--model", choices=["similarity", "affine", "homography"], default="affine",
                   help="--auto: the transform fitted (default affine)")
    p.add_argument("--output-size", metavar="WxH", help="fused frame size (default: the visible / crop size)")
    p.add_argument("--crop", metavar="X,Y,W,H", help="crop of the visible frame to fuse")
    p.add_argument("--overlay", metavar="PNG", help="alignment picture (default <output>_overlay.png; '' for none)")
    p.add_argument("--max-offset-s", type=number, help="--sync: largest offset searched (default: the clip length)")


def _ints(text: str, sep: str, count: int, name: str, shape: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.lower().split(sep))
    except ValueError:
        vals = ()
    if len(vals) != count:
        raise StreamfuseError(f"{name} '{text}': expected {shape}")
    return vals


def cmd_calibrate(args) -> int:
    from streamfuse.calibration.command import CalibrateOptions, run_calibration

    opts = CalibrateOptions(
        ir=args.ir, vis=args.vis, output=args.output, points=args.points, checkerboard=args.checkerboard,
        auto=args.auto, sync=args.sync, frames=args.frames, max_frames=args.max_frames, fps=args.fps,
        fov_ratio=args.fov_ratio, model=args.model, overlay=args.overlay, max_offset_s=args.max_offset_s,
        output_size=_ints(args.output_size, "x", 2, "--output-size", "WxH, e.g. 640x512") if args.output_size else None,
        crop=_ints(args.crop, ",", 4, "--crop", "X,Y,W,H in visible pixels") if args.crop else None)
    reg, report, written = run_calibration(opts)
    for line in report:
        print(line)
    print("wrote " + ", ".join(str(p) for p in written))
    print(f"use it: python run.py run --ir {redact_uri(args.ir)} --vis {redact_uri(args.vis)} --calib {written[0]} -o out/fused.mp4")
    return 0


# ---------------------------------------------------------------- probe (inputs)
def add_probe(p: argparse.ArgumentParser) -> None:
    p.add_argument("uri", help="video file, image folder/glob, images://dir?fps=N, rtsp://..., /dev/videoN, v4l2://...")
    p.add_argument("--kind", choices=["ir", "vis"], default="vis", help="read as IR (gray) or visible (BGR)")
    p.add_argument("--frames", type=int, default=30, help="frames to read (default 30)")
    p.add_argument("--seconds", type=number, default=10.0, help="longest time to read (default 10)")
    p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="source option, repeatable: transport=udp, read_timeout=3, size=640x512, pixel_format=y16, fps=9")


def cmd_probe(args) -> int:
    from streamfuse.io.sources import probe
    from streamfuse.io.uri import parse_value

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StreamfuseError(f"-O '{item}': expected KEY=VALUE, e.g. transport=tcp")
        options[key.strip()] = parse_value(value.strip())
    info = probe(args.uri, max_frames=args.frames, seconds=args.seconds, **{"kind": args.kind, **options})
    for key, value in info.items():
        print(f"{key:16s} {value}")
    return 0


COMMANDS = {
    "run": (add_run, cmd_run, "fuse an IR and a visible video stream (files, image sequences, RTSP, V4L2)"),
    "batch": (add_batch, cmd_batch, "fuse whole datasets (KAIST, paired videos/folders, a manifest), resumably, "
                                    "on local workers or Ray"),
    "bench": (add_bench, cmd_bench, "benchmark model-only, pipeline and serial-loop fps per backend and size"),
    "soak": (add_soak, cmd_soak, "soak benchmark: a long live RTSP run whose server is killed and restarted every "
                                 "minute; frames, reconnects, memory (out/soak/)"),
    "fuse": (add_fuse, cmd_fuse, "fuse IR/visible image pairs (files or folders paired by stem)"),
    "models": (add_models, cmd_models, "list the registered models and their weights"),
    "eval": (add_eval, cmd_eval, "score fused images or videos with fusion quality metrics; Markdown/CSV reports"),
    "export": (add_export, cmd_export, "export a model to ONNX (needs torch)"),
    "build": (add_build, cmd_build, "build (or reuse) a cached TensorRT engine (needs an NVIDIA GPU and TensorRT)"),
    "gpucheck": (add_gpucheck, cmd_gpucheck, "on a CUDA machine: run the gpu tests and benchmark the GPU backends "
                                             "(out/gpucheck/)"),
    "calibrate": (add_calibrate, cmd_calibrate, "register IR to visible (points, checkerboard, auto) and find the time offset"),
    "probe": (add_probe, cmd_probe, "open a source (file, images, RTSP, V4L2) and report size, fps, timestamps, errors"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="streamfuse", description="Infrared + visible image and video fusion.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (add, _, help_text) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(levelname)s: %(message)s"))  # no camera password in any log line
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command][1](args)
    except StreamfuseError as exc:
        print(f"error: {redact_uri(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

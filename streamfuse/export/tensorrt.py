"""TensorRT engines from the ONNX graphs: operator check, build, and the GPU the engine is for.

``build_engine`` covers the TensorRT versions in the field:
- 8.5/8.6 (JetPack 5, older desktops): networks need the EXPLICIT_BATCH creation flag; FP16 via
  ``BuilderFlag.FP16``.
- 10.x (JetPack 6, current desktops): explicit batch is the only mode (flag deprecated, ignored);
  FP16 via ``BuilderFlag.FP16``.
- 11.x: networks are always strongly typed and ``BuilderFlag.FP16`` is gone, so precision comes
  from the graph: for FP16 the float32 ONNX is converted first (``export.fp16.to_fp16``, float32
  inputs and output kept).
The version is told apart by what the module has (``BuilderFlag.FP16``), not by parsing numbers.

``tensorrt`` is imported only inside functions: this module (and the operator check) work on
machines without it, and a missing TensorRT is one clear error naming what to install.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from streamfuse import StreamfuseError

log = logging.getLogger("streamfuse")

INSTALL_TRT = ("TensorRT is not installed: on x86 with an NVIDIA GPU `pip install tensorrt` (plus the CUDA build "
               "of torch); on Jetson use JetPack's system TensorRT (python3-libnvinfer; in a venv create it with "
               "--system-site-packages)")
INSTALL_CUDA = ("TensorRT needs a CUDA GPU, and torch sees none here: install an NVIDIA driver and the CUDA build "
                "of torch (pip install torch --index-url https://download.pytorch.org/whl/cu124)")
DEFAULT_WORKSPACE = 1 << 30  # bytes of scratch memory the builder may give a layer

# ---------------------------------------------------------------- ONNX operator check
# ONNX operators the TensorRT 8.5 ONNX parser supports ("Y" rows of onnx-tensorrt docs/operators.md
# for TensorRT 8.5, which parses opsets up to 17). 8.5 is the oldest TensorRT we target (JetPack 5);
# later versions support a superset.
TRT_MAX_OPSET = 17
TRT_SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GridSample GRU HardSwish HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN
RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
# Restrictions from the same table: (op, input index) that must be a constant (initializer or Constant)
TRT_CONSTANT_INPUTS = {("Slice", 3): "axes", ("Squeeze", 1): "axes", ("Unsqueeze", 1): "axes",
                       ("TopK", 1): "K", ("CumSum", 1): "axis"}
TRT_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
TRT_RESIZE_MODES = {"nearest", "linear"}
TRT_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
POOLS = {"AveragePool", "MaxPool", "LpPool"}  # "2D or 3D pooling only"


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def tensorrt_problems(onnx_path: str | Path) -> list[str]:
    """Every reason TensorRT's ONNX parser (8.5, opset <= 17) would reject this graph; [] if none."""
    import onnx

    path = Path(onnx_path)
    if not path.exists():
        raise StreamfuseError(f"{path}: ONNX file not found")
    model = onnx.load(str(path))
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset > TRT_MAX_OPSET:
        problems.append(f"opset {opset}: TensorRT 8.5 parses opsets up to {TRT_MAX_OPSET}")
    for o in model.opset_import:
        if o.domain not in ("", "ai.onnx"):
            problems.append(f"custom operator domain '{o.domain}' (needs a TensorRT plugin)")
    constants = {t.name for t in model.graph.initializer}
    constants |= {out for n in model.graph.node if n.op_type == "Constant" for out in n.output}
    for node in model.graph.node:
        where = f"{node.op_type} node '{node.name}'"
        if node.domain not in ("", "ai.onnx"):
            continue  # reported per domain above
        if node.op_type not in TRT_SUPPORTED_OPS:
            problems.append(f"{where}: operator not supported by the TensorRT ONNX parser")
            continue
        for (op, idx), what in TRT_CONSTANT_INPUTS.items():
            if node.op_type == op and len(node.input) > idx and node.input[idx] and node.input[idx] not in constants:
                problems.append(f"{where}: input '{what}' must be a constant for TensorRT")
        if node.op_type in POOLS and len(_attr(node, "kernel_shape", [])) not in (2, 3):
            problems.append(f"{where}: only 2D or 3D pooling is supported")
        if node.op_type == "Resize":
            coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
            mode = _attr(node, "mode", "nearest")
            nearest = _attr(node, "nearest_mode", "round_prefer_floor")
            if coord not in TRT_RESIZE_COORDS:
                problems.append(f"{where}: coordinate_transformation_mode '{coord}' not supported")
            if mode not in TRT_RESIZE_MODES:
                problems.append(f"{where}: mode '{mode}' not supported (nearest or linear only)")
            if mode == "nearest" and nearest not in TRT_RESIZE_NEAREST:
                problems.append(f"{where}: nearest_mode '{nearest}' not supported")
    return problems


# ---------------------------------------------------------------- TensorRT and the GPU
def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise StreamfuseError(INSTALL_TRT) from None
    return trt


def require_cuda():
    """torch with a CUDA device, or a StreamfuseError naming what to install."""
    try:
        import torch
    except ImportError:
        raise StreamfuseError(INSTALL_CUDA) from None
    if not torch.cuda.is_available():
        raise StreamfuseError(INSTALL_CUDA)
    return torch


def current_target() -> dict:
    """What an engine built here is tied to: TensorRT version, GPU name, compute capability."""
    trt = import_tensorrt()
    torch = require_cuda()
    major, minor = torch.cuda.get_device_capability()
    return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def default_timing_cache(target: dict, cache_dir: str | Path | None = None) -> Path:
    """One timing cache per GPU model and TensorRT version (timings do not carry across either)."""
    from streamfuse.models.registry import engine_cache_dir

    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{target['gpu']}-sm{target['compute_capability']}-trt{target['tensorrt']}")
    return Path(cache_dir or engine_cache_dir()) / f"{slug.strip('-').lower()}.timing"


def model_shapes(spec, vis_hw: tuple[int, int], ir_hw: tuple[int, int] | None = None, batch: int = 1,
                 variant: str | None = None) -> dict:
    """Engine input shapes for visible frames of ``vis_hw`` (h, w): padded the way ``Fuser.fuse`` pads."""
    scale = spec.ir_scale_for(variant)
    m = math.lcm(spec.pad_multiple, scale)
    h, w = (-(-vis_hw[0] // m) * m, -(-vis_hw[1] // m) * m)
    if ir_hw is None:
        ir_hw = (h // scale, w // scale)
    return {"ir": (batch, 1, int(ir_hw[0]), int(ir_hw[1])), "vis": (batch, 1, h, w)}


def _profile_triplet(shape) -> tuple[tuple, tuple, tuple]:
    if isinstance(shape[0], (list, tuple)):
        lo, opt, hi = (tuple(int(v) for v in s) for s in shape)
        return lo, opt, hi
    fixed = tuple(int(v) for v in shape)
    return fixed, fixed, fixed


def build_engine(onnx_path: str | Path, precision: str = "fp16", shapes: dict | None = None,
                 workspace: int = DEFAULT_WORKSPACE, timing_cache: str | Path | None = None,
                 verbose: bool = False) -> bytes:
    """Serialized TensorRT engine (plain bytes) for ``onnx_path``.

    ``shapes`` maps each input ("ir", "vis") to a fixed N x 1 x H x W shape or a (min, opt, max)
    triple of shapes: the engine's optimisation profile. ``timing_cache`` is a file read before and
    written after the build, so rebuilding on the same GPU reuses layer timings.
    """
    import onnx

    trt = import_tensorrt()
    require_cuda()
    if precision not in ("fp16", "fp32"):
        raise StreamfuseError(f"TensorRT precision must be fp16 or fp32, not '{precision}'")
    if not shapes:
        raise StreamfuseError("build_engine needs input shapes, e.g. {'ir': (1, 1, 512, 640), 'vis': (1, 1, 512, 640)}")
    onnx_path = Path(onnx_path)
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    fp16_flag = getattr(trt.BuilderFlag, "FP16", None)  # gone in TensorRT 11 (strongly typed only)
    major = int(trt.__version__.split(".")[0])
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if major < 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)

    model = onnx.load(str(onnx_path))
    if precision == "fp16" and fp16_flag is None:
        from streamfuse.export.fp16 import to_fp16

        log.info("TensorRT %s has no BuilderFlag.FP16: building from an FP16 ONNX graph", trt.__version__)
        model = to_fp16(model)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise StreamfuseError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse this graph: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if precision == "fp16" and fp16_flag is not None:
        config.set_flag(fp16_flag)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes:
            raise StreamfuseError(f"{onnx_path}: no shape given for engine input '{name}' (have {', '.join(shapes)})")
        profile.set_shape(name, *_profile_triplet(shapes[name]))
    config.add_optimization_profile(profile)

    cache_file = Path(timing_cache) if timing_cache else None
    blob = cache_file.read_bytes() if cache_file and cache_file.exists() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, False):  # False: refuse a cache from another GPU/TensorRT
        log.warning("timing cache %s does not match this GPU/TensorRT; starting a new one", cache_file)
        config.set_timing_cache(config.create_timing_cache(b""), False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise StreamfuseError(f"{onnx_path}: TensorRT failed to build a {precision} engine (see the TensorRT log above)")
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def engine_for(spec, variant: str, precision: str, vis_hw: tuple[int, int], ir_hw: tuple[int, int] | None = None,
               onnx_path: str | Path | None = None, force: bool = False, workspace: int = DEFAULT_WORKSPACE,
               cache_dir: str | Path | None = None) -> Path:
    """The cached engine for this model, precision and frame size on this machine (built if needed)."""
    from streamfuse.export.cache import cached_engine
    from streamfuse.models.registry import graph_not_found

    target = current_target()  # first: no TensorRT or no GPU is the error to report on a CPU machine
    given = onnx_path is not None
    onnx_path = Path(onnx_path) if given else spec.onnx_path(variant)
    if not onnx_path.exists():
        raise StreamfuseError(graph_not_found(onnx_path, None if given else spec))
    return cached_engine(onnx_path, precision, model_shapes(spec, vis_hw, ir_hw, variant=variant), target, build=build_engine,
                         cache_dir=cache_dir, force=force, workspace=workspace,
                         timing_cache=default_timing_cache(target, cache_dir))

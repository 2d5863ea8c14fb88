"""``load_fuser``: one way to run any registered model on any backend.

Backends share one ONNX graph per model (inputs ``ir``, ``vis``; output ``fused``), except the
torch backend, which runs the trained module itself.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging

from streamfuse import StreamfuseError
from streamfuse.backends.base import Fuser
from streamfuse.models.registry import DEFAULT_MODEL, did_you_mean, get_model

log = logging.getLogger("streamfuse")

# name -> "module:class"; imported only when chosen, so no backend's library is needed up front.
BACKENDS = {
    "onnxruntime": "streamfuse.backends.onnxruntime:OnnxRuntimeFuser",
    "openvino": "streamfuse.backends.openvino:OpenVinoFuser",
    "torch": "streamfuse.backends.pytorch:TorchFuser",
    "tensorrt": "streamfuse.backends.tensorrt:TensorRTFuser",
}
# Python package each backend needs, to tell availability without importing it.
BACKEND_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torch": "torch", "tensorrt": "tensorrt"}
# CPU order for backend="auto", fastest first, from `run.py bench` on a 2-vCPU x86 VM (see
# docs/benchmarks.md): ONNX Runtime and OpenVINO are close; ORT is always installed.
CPU_PREFERENCE = ("onnxruntime", "openvino", "torch")
CUDA_PREFERENCE = ("tensorrt", "onnxruntime", "torch")
# What --precision each backend takes. The shipped ONNX graphs are fp32, which is all ONNX Runtime
# runs of them; OpenVINO runs fp16 on CPUs with FP16 arithmetic (checked when it loads); torch runs
# its module in fp16 on the CPU or a GPU; TensorRT builds fp16 or fp32 engines. No INT8 graph ships
# (static INT8 made the real-time model slower, see README), so int8 is refused everywhere.
PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "fp16"), "torch": ("fp32", "fp16"),
              "tensorrt": ("fp32", "fp16")}
KNOWN_PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_THREADS = 1  # 2-vCPU VMs: 2 threads lose as soon as anything else runs (README, docs/benchmarks-threads*.md)


def available_backends() -> list[str]:
    return [name for name, pkg in BACKEND_PACKAGES.items() if importlib.util.find_spec(pkg) is not None]


def backend_usable(name: str, device: str) -> bool:
    """Whether ``name`` can run on ``device`` here, judged without building anything."""
    if name not in available_backends():
        return False
    if device != "cuda":
        return name != "tensorrt"
    if name == "onnxruntime":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return name in ("tensorrt", "torch")


def check_precision(precision: str, backend: str = "auto") -> None:
    """One line naming what is wrong when ``backend`` (or, for "auto", none) runs ``precision``."""
    if precision not in KNOWN_PRECISIONS:
        raise StreamfuseError(f"precision '{precision}': expected one of {', '.join(KNOWN_PRECISIONS)} "
                              f"({precision_table()})")
    takers = [b for b, ps in PRECISIONS.items() if precision in ps]
    if (backend == "auto" and not takers) or (backend in PRECISIONS and precision not in PRECISIONS[backend]):
        where = f"backend '{backend}' runs {' or '.join(PRECISIONS[backend])}" if backend in PRECISIONS else "no backend"
        raise StreamfuseError(f"precision '{precision}': {where}, not {precision} ({precision_table()})")


def precision_table() -> str:
    """'onnxruntime fp32; openvino fp32|fp16; ...' for messages and --help."""
    return "; ".join(f"{b} {'|'.join(ps)}" for b, ps in PRECISIONS.items())


def cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def load_fuser(model: str = DEFAULT_MODEL, backend: str = "auto", device: str = "auto", precision: str = "fp32",
               variant: str | None = None, threads: int | None = DEFAULT_THREADS, **kwargs) -> Fuser:
    """Return a ``Fuser`` for ``model`` on ``backend`` ("auto", "onnxruntime", "openvino", "torch", "tensorrt").

    ``device`` is "cpu", "cuda" or "auto" (CUDA when torch sees a GPU). ``variant`` selects a model
    variant (e.g. the Res2NetFuse fusion strategy "l1" or "mean"). ``threads`` sets intra-op
    threads on CPU backends. Backend-specific options go in ``kwargs`` (``onnx_path`` for onnxruntime,
    openvino and tensorrt; ``module`` for torch; ``workspace``, ``cache_dir`` for tensorrt); an option
    the backend does not take is one StreamfuseError.
    """
    spec = get_model(model)
    variant = spec.check_variant(variant)
    check_precision(precision, backend)
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise StreamfuseError(f"unknown device '{device}'; expected cpu, cuda or auto")
    if backend == "auto":
        order = CUDA_PREFERENCE if device == "cuda" else CPU_PREFERENCE
        candidates = [b for b in order if backend_usable(b, device) and not _unknown_options(b, kwargs)
                      and precision in PRECISIONS[b]]
        if not candidates:
            options = f" taking {', '.join(kwargs)}" if kwargs else ""
            raise StreamfuseError(f"no backend{options} running {precision} available for device {device} "
                                  f"({precision_table()}); install onnxruntime")
        for i, name in enumerate(candidates):  # fall back down the order when one cannot start here
            try:
                fuser = load_fuser(model, name, device, precision, variant, threads, **kwargs)
            except StreamfuseError as exc:
                if i == len(candidates) - 1:
                    raise
                log.warning("backend %s not usable (%s); trying %s", name, exc, candidates[i + 1])
                continue
            log.info("backend auto -> %s on %s", name, device)
            return fuser
    if backend not in BACKENDS:
        raise StreamfuseError(f"unknown backend '{backend}'{did_you_mean(backend, BACKENDS)}; known: {', '.join(BACKENDS)}")
    unknown = _unknown_options(backend, kwargs)
    if unknown:
        takers = [b for b in BACKENDS if not _unknown_options(b, {unknown[0]: None})]
        raise StreamfuseError(f"backend '{backend}' does not take the option {', '.join(map(repr, unknown))}"
                              f"{OPTION_FLAGS.get(unknown[0], '')}; backends that do: {', '.join(takers) or 'none'}")
    return _backend_class(backend)(spec, variant, device=device, precision=precision, threads=threads, **kwargs)


# command-line spelling of backend options, for error messages
OPTION_FLAGS = {"onnx_path": " (--onnx)"}


def _backend_class(backend: str) -> type[Fuser]:
    module_name, _, cls_name = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def _unknown_options(backend: str, options: dict) -> list[str]:
    """The keys of ``options`` that ``backend``'s constructor does not take (its module imports no runtime)."""
    params = inspect.signature(_backend_class(backend).__init__).parameters
    return [k for k in options if k not in params or k in ("self", "spec", "variant")]


__all__ = ["Fuser", "load_fuser", "available_backends", "check_precision", "BACKENDS", "PRECISIONS"]

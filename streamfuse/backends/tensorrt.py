"""TensorRT backend: a cached FP16/FP32 engine run with the tensor-address API on torch's CUDA stream.

Buffers are torch CUDA tensors allocated once per input size (no pycuda): inputs are copied into
them, ``execute_async_v3`` is queued on ``torch.cuda.current_stream()``, and the output tensor is
read by the next torch op on that same stream, so no explicit synchronisation is needed until the
result goes back to the host. The engine for a frame size is built on first use (one progress
line; a minute or two) and cached in ``engines/`` (see ``streamfuse.export.cache``).

``Fuser.fuse_tensor`` (the GPU stage's entry point) runs ``_run_tensor``: CUDA tensors in, the
engine's CUDA output buffer out, no host copies.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamfuse import StreamfuseError
from streamfuse.backends.base import Fuser
from streamfuse.export.onnx import read_metadata
from streamfuse.export.tensorrt import DEFAULT_WORKSPACE, engine_for, import_tensorrt, require_cuda
from streamfuse.models.registry import graph_not_found, spec_for_graph

log = logging.getLogger("streamfuse")


@dataclass
class _Slot:
    """One engine, its execution context and its preallocated IO buffers for one input size."""
    engine: object
    context: object
    buffers: dict  # tensor name -> torch CUDA tensor
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class TensorRTFuser(Fuser):
    backend = "tensorrt"

    def __init__(self, spec, variant, device="cuda", precision="fp16", threads=None, onnx_path=None,
                 workspace: int = DEFAULT_WORKSPACE, cache_dir=None):
        super().__init__(spec, variant, device, precision)
        self.trt = import_tensorrt()  # each check raises one line naming what to install
        self.torch = require_cuda()
        if device != "cuda":
            raise StreamfuseError(f"the tensorrt backend runs on device 'cuda', not '{device}'")
        if precision not in ("fp16", "fp32"):
            raise StreamfuseError(f"tensorrt backend precision must be fp16 or fp32, not '{precision}'")
        self.onnx_path = Path(onnx_path) if onnx_path else spec.onnx_path(variant)
        if not self.onnx_path.is_file():
            raise StreamfuseError(graph_not_found(self.onnx_path, None if onnx_path else spec))
        self.spec, self.variant = spec_for_graph(read_metadata(self.onnx_path), spec, variant, self.onnx_path)
        self.workspace = workspace
        self.cache_dir = cache_dir
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self._slots: dict[tuple, _Slot] = {}

    # ------------------------------------------------------------ engines
    def _torch_dtype(self, trt_dtype):
        trt, torch = self.trt, self.torch
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT32: torch.int32}
        if trt_dtype not in table:
            raise StreamfuseError(f"{self.onnx_path}: engine tensor type {trt_dtype} is not handled by the tensorrt backend")
        return table[trt_dtype]

    def _load(self, ir_shape: tuple, vis_shape: tuple, force: bool = False):
        vis_hw, ir_hw = vis_shape[2:], ir_shape[2:]
        path = engine_for(self.spec, self.variant, self.precision, vis_hw, ir_hw, onnx_path=self.onnx_path,
                          force=force, workspace=self.workspace, cache_dir=self.cache_dir)
        return path, self.runtime.deserialize_cuda_engine(path.read_bytes())

    def _slot(self, ir_shape: tuple, vis_shape: tuple) -> _Slot:
        key = (ir_shape, vis_shape)
        if key in self._slots:
            return self._slots[key]
        if ir_shape[0] != 1:
            raise StreamfuseError("the tensorrt backend runs one frame at a time (engines are built for batch 1)")
        path, engine = self._load(ir_shape, vis_shape)
        if engine is None:  # the sidecar matched but this TensorRT cannot load the file: rebuild once
            log.warning("%s could not be deserialized; rebuilding it", path)
            path, engine = self._load(ir_shape, vis_shape, force=True)
            if engine is None:
                raise StreamfuseError(f"{path}: TensorRT {self.trt.__version__} cannot load the engine it just built")
        trt, torch = self.trt, self.torch
        context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        outputs = tuple(n for n in names if n not in inputs)
        shapes = {"ir": ir_shape, "vis": vis_shape}
        for name in inputs:
            if name not in shapes or not context.set_input_shape(name, shapes[name]):
                raise StreamfuseError(f"{path}: engine input '{name}' does not accept shape {shapes.get(name)}")
        buffers = {}
        for name in names:
            shape = tuple(context.get_tensor_shape(name))
            buffers[name] = torch.empty(shape, dtype=self._torch_dtype(engine.get_tensor_dtype(name)), device="cuda")
            context.set_tensor_address(name, buffers[name].data_ptr())
        if "fused" not in outputs:
            raise StreamfuseError(f"{path}: engine has no output 'fused' (outputs: {', '.join(outputs)})")
        slot = _Slot(engine, context, buffers, inputs, outputs)
        self._slots[key] = slot
        return slot

    # ------------------------------------------------------------ running
    def _run_tensor(self, ir, vis):
        """N x 1 x h x w and N x 1 x H x W CUDA float tensors (padded) -> fused N x 1 x H x W CUDA tensor.

        The returned tensor is the engine's output buffer: valid until the next call on this size.
        """
        slot = self._slot(tuple(ir.shape), tuple(vis.shape))
        slot.buffers["ir"].copy_(ir)
        slot.buffers["vis"].copy_(vis)
        stream = self.torch.cuda.current_stream()
        if not slot.context.execute_async_v3(stream.cuda_stream):
            raise StreamfuseError(f"TensorRT inference failed for {self.spec.name} at {tuple(vis.shape[2:])}")
        return slot.buffers["fused"]

    def _run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        torch = self.torch
        ir_t = torch.from_numpy(ir).to("cuda")
        vis_t = torch.from_numpy(vis).to("cuda")
        return self._run_tensor(ir_t, vis_t).float().cpu().numpy()  # .cpu() waits for the stream

    def close(self) -> None:
        self._slots.clear()

"""What can be checked of the TensorRT path without a GPU: the graphs use only operators TensorRT's
ONNX parser (8.5, opset <= 17) supports, engine shapes, and the clear errors when TensorRT is missing."""
import importlib.util
import sys

import pytest

from streamfuse import StreamfuseError
from streamfuse.export.tensorrt import TRT_SUPPORTED_OPS, build_engine, model_shapes, tensorrt_problems
from streamfuse.models import get_model

from tests.helpers.shipped_models import shipped_graphs

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


@pytest.mark.parametrize("model, variant", shipped_graphs())
def test_shipped_graph_parses_in_tensorrt(model, variant):
    path = get_model(model).onnx_path(variant)
    assert tensorrt_problems(path) == []
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ops <= TRT_SUPPORTED_OPS


def test_untrained_res2netfuse_export_parses_in_tensorrt(tmp_path):
    pytest.importorskip("torch")
    from streamfuse.export.onnx import export_onnx

    spec = get_model("res2netfuse")
    for variant in spec.variants:
        path = export_onnx(spec.name, variant, out=tmp_path / f"{variant}.onnx", module=spec.build(variant, load_weights=False))
        assert tensorrt_problems(path) == []


def _graph(tmp_path, nodes, inits=(), opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    return path


def test_unsupported_operators_and_modes_are_reported(tmp_path):
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    path = _graph(tmp_path, [
        helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="cubic", name="up"),
        helper.make_node("LayerNormalization", ["r", "scales"], ["l"], name="ln"),  # not in the TRT 8.5 parser
        helper.make_node("Relu", ["l"], ["y"]),
    ], [scales])
    problems = tensorrt_problems(path)
    assert any("Resize node 'up'" in p and "cubic" in p for p in problems)
    assert any("LayerNormalization node 'ln'" in p and "not supported" in p for p in problems)
    assert len(problems) == 2


def test_opset_above_17_and_non_constant_axes_are_reported(tmp_path):
    path = _graph(tmp_path, [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "s", "s", "s"], ["sl"], name="cut"),
        helper.make_node("Identity", ["x"], ["y"]),
    ], opset=18)
    problems = tensorrt_problems(path)
    assert any(p.startswith("opset 18") for p in problems)
    assert any("Slice node 'cut'" in p and "axes" in p for p in problems)


def test_model_shapes_pad_like_the_fuser():
    spec = get_model("res2netfuse")
    assert model_shapes(spec, (512, 640)) == {"ir": (1, 1, 512, 640), "vis": (1, 1, 512, 640)}
    assert model_shapes(spec, (450, 620), ir_hw=(450, 620))["vis"] == (1, 1, 450, 620)
    ddcgan = get_model("ddcgan")  # x4: IR at a quarter of the size, visible padded to a multiple of 4
    assert model_shapes(ddcgan, (450, 622), variant="x4") == {"ir": (1, 1, 113, 156), "vis": (1, 1, 452, 624)}
    assert model_shapes(ddcgan, (450, 622), variant="x1") == {"ir": (1, 1, 452, 624), "vis": (1, 1, 452, 624)}


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_without_tensorrt_names_what_to_install(tmp_path):
    with pytest.raises(StreamfuseError) as err:
        build_engine(tmp_path / "x.onnx", shapes={"ir": (1, 1, 8, 8), "vis": (1, 1, 8, 8)})
    message = str(err.value)
    assert "\n" not in message and "pip install tensorrt" in message and "JetPack" in message


# ---------------------------------------------------------------- version handling, with a stand-in for TensorRT
class FakeTRT:
    """Just enough of the ``tensorrt`` module's documented API to follow build_engine's path per major
    version (TensorRT itself cannot be installed here): it records what the builder is asked to do."""

    def __init__(self, version: str, has_fp16_flag: bool):
        from types import SimpleNamespace

        self.__version__ = version
        self.calls = {}
        fake = self

        class Logger:
            WARNING, VERBOSE = 2, 4

            def __init__(self, severity):
                self.severity = severity

        class Network:
            def __init__(self, flags):
                fake.calls["network_flags"] = flags
                self.inputs = []
                self.num_inputs = 0

            def get_input(self, i):
                return SimpleNamespace(name=self.inputs[i])

        class Parser:
            def __init__(self, network, logger):
                self.network = network
                self.num_errors = 0

            def parse(self, data):
                model = onnx.load_from_string(data)
                fake.calls["parsed"] = model
                self.network.inputs = [i.name for i in model.graph.input]
                self.network.num_inputs = len(self.network.inputs)
                return True

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                fake.calls.setdefault("profile", {})[name] = (lo, opt, hi)

        class Cache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                return b"timings:" + self.blob

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls["workspace"] = (pool, size)

            def set_flag(self, flag):
                fake.calls.setdefault("flags", []).append(flag)

            def add_optimization_profile(self, profile):
                fake.calls["profiles"] = fake.calls.get("profiles", 0) + 1

            def create_timing_cache(self, blob):
                return Cache(bytes(blob))

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                fake.calls["timing_cache_in"] = (cache.blob, ignore_mismatch)
                return True

            def get_timing_cache(self):
                return self.cache

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags):
                return Network(flags)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"serialized engine"

        flags = {"FP16": "fp16-flag"} if has_fp16_flag else {}
        self.BuilderFlag = SimpleNamespace(**flags)
        self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="workspace")
        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, Parser


@pytest.fixture(scope="module")
def small_graph(tmp_path_factory):
    pytest.importorskip("torch")
    from streamfuse.export.onnx import export_onnx

    spec = get_model("res2netfuse")
    return export_onnx(spec.name, out=tmp_path_factory.mktemp("trt") / "r.onnx", module=spec.build(load_weights=False))


@pytest.mark.parametrize("version, fp16_flag, batch_flag", [("8.5.2", True, 1), ("10.3.0", True, 0), ("11.0.0", False, 0)])
def test_build_engine_per_tensorrt_version(monkeypatch, small_graph, tmp_path, version, fp16_flag, batch_flag):
    import streamfuse.export.tensorrt as trt_export

    fake = FakeTRT(version, fp16_flag)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_export, "require_cuda", lambda: None)
    cache = tmp_path / "gpu.timing"
    cache.write_bytes(b"old")
    shapes = model_shapes(get_model("res2netfuse"), (512, 640))
    blob = build_engine(small_graph, "fp16", shapes, workspace=1 << 28, timing_cache=cache)

    assert blob == b"serialized engine"
    assert fake.calls["network_flags"] == batch_flag  # explicit batch only before TensorRT 10
    assert fake.calls["profile"] == {name: (s, s, s) for name, s in shapes.items()}
    assert fake.calls["workspace"] == ("workspace", 1 << 28)
    assert fake.calls["timing_cache_in"] == (b"old", False) and cache.read_bytes() == b"timings:old"
    parsed_types = {t.data_type for t in fake.calls["parsed"].graph.initializer}
    if fp16_flag:  # 8.x/10.x: FP32 graph + BuilderFlag.FP16
        assert fake.calls["flags"] == ["fp16-flag"] and parsed_types == {onnx.TensorProto.FLOAT}
    else:  # 11.x: no flag, the graph itself is FP16 (strongly typed), IO still FP32
        assert "flags" not in fake.calls and parsed_types == {onnx.TensorProto.FLOAT16}
        assert fake.calls["parsed"].graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_fp32_build_sets_no_precision_flag(monkeypatch, small_graph):
    import streamfuse.export.tensorrt as trt_export

    fake = FakeTRT("10.3.0", True)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_export, "require_cuda", lambda: None)
    build_engine(small_graph, "fp32", {"ir": (1, 1, 64, 80), "vis": (1, 1, 64, 80)})
    assert "flags" not in fake.calls
    with pytest.raises(StreamfuseError, match="no shape given for engine input 'vis'"):
        build_engine(small_graph, "fp32", {"ir": (1, 1, 64, 80)})

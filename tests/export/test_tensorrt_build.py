"""What can be checked of the TensorRT path without a GPU: the graphs use only operators TensorRT's
ONNX parser (8.5, opset <= 17) supports, engine shapes, and the clear errors when TensorRT is missing."""
import importlib.util

import pytest

from streamfuse import StreamfuseError
from streamfuse.export.tensorrt import TRT_SUPPORTED_OPS, build_engine, model_shapes, tensorrt_problems
from streamfuse.models import get_model

from shipped_models import shipped_graphs

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

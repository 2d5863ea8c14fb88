"""Exported graphs describe themselves: metadata_props with model, variant, IR scale, pad multiple,
training record, opset and producer."""
import pytest

from streamfuse.models import get_model, list_models
from streamfuse.models.registry import GRAPH_FACTS

onnx = pytest.importorskip("onnx")


@pytest.mark.parametrize("model, variant", [pytest.param(s.name, v, id=f"{s.name}-{v}")
                                            for s in list_models(speed_only=None) for v in s.variants
                                            if s.onnx_path(v).exists()])
def test_every_shipped_graph_carries_its_facts(model, variant):
    from streamfuse.export.onnx import read_metadata, training_record_id

    spec = get_model(model)
    meta = read_metadata(spec.onnx_path(variant))
    assert set(GRAPH_FACTS) <= set(meta)
    assert {k: meta[k] for k in ("model", "variant", "ir_scale", "pad_multiple")} == spec.graph_facts(variant)
    assert meta["opset"] == "17" and meta["producer"].startswith("streamfuse ")
    # the training record id names the record's commit and the shipped weights' hash
    assert meta["training_record"] == training_record_id(spec)


def test_export_writes_the_facts(tmp_path):
    pytest.importorskip("torch")
    from streamfuse.export.onnx import export_onnx, read_metadata

    spec = get_model("ddcgan")
    path = export_onnx("ddcgan", "x1", out=tmp_path / "g.onnx", module=spec.build("x1", load_weights=False),
                       sample_hw=(32, 48))
    meta = read_metadata(path)
    assert meta["model"] == "ddcgan" and meta["variant"] == "x1" and meta["ir_scale"] == "1"
    assert meta["pad_multiple"] == "4" and meta["training_record"] == "not recorded (module given to export_onnx)"
    path = export_onnx("ddcgan", "x1", out=tmp_path / "g.onnx", module=spec.build("x1", load_weights=False),
                       sample_hw=(32, 48), training_record="git abc, weights sha256 0123")
    assert read_metadata(path)["training_record"] == "git abc, weights sha256 0123"

import pytest

from streamfuse import StreamfuseError
from streamfuse.models import get_model, list_models, register_model
from streamfuse.models.registry import ModelSpec


def test_res2netfuse_registered_with_both_strategies():
    spec = get_model("res2netfuse")
    assert spec.variants == ("l1", "mean")
    assert spec.onnx_path("l1").name == "res2netfuse.onnx"
    assert spec.onnx_path("mean").name == "res2netfuse-mean.onnx"
    assert "res2netfuse" in [s.name for s in list_models()]


def test_unknown_model_suggests_the_close_name():
    with pytest.raises(StreamfuseError, match="did you mean 'res2netfuse'"):
        get_model("res2netfus")


def test_unknown_variant_names_the_choices():
    with pytest.raises(StreamfuseError, match="l1, mean"):
        get_model("res2netfuse").check_variant("max")


def test_double_registration_refused():
    with pytest.raises(ValueError):
        register_model(ModelSpec(name="res2netfuse", paper="x", builder="x:y"))


def test_shipped_weights_have_a_training_record():
    for spec in list_models(trained=True):
        if spec.weights_path().exists():
            record = spec.training_record()
            assert record is not None, f"{spec.name} ships weights without engines/{spec.name}.json"
            assert record["model"] == spec.name and "git_commit" in record and "config" in record

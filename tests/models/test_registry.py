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


def test_engines_dir_is_the_checkout_or_the_override(tmp_path, monkeypatch):
    from streamfuse import REPO_DIR
    from streamfuse.models.registry import engine_cache_dir, engines_dir

    monkeypatch.delenv("STREAMFUSE_ENGINES", raising=False)
    assert engines_dir() == REPO_DIR / "engines"  # a source checkout has no streamfuse/engines
    monkeypatch.setenv("STREAMFUSE_ENGINES", str(tmp_path / "mine"))
    assert engines_dir() == tmp_path / "mine"
    assert engine_cache_dir() == tmp_path / "mine"  # writable (its parent exists and is writable)


def test_engine_cache_moves_to_the_user_cache_when_engines_is_not_writable(tmp_path, monkeypatch):
    import os

    from streamfuse.models.registry import engine_cache_dir

    user_cache = tmp_path / "cache" / "streamfuse" / "engines"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("STREAMFUSE_ENGINES", str(tmp_path / "a-file" / "engines"))  # cannot be created
    assert engine_cache_dir() == user_cache
    if os.geteuid() != 0:  # root writes to read-only folders, so this case shows only for other users
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        monkeypatch.setenv("STREAMFUSE_ENGINES", str(ro))
        assert engine_cache_dir() == user_cache


def test_graph_facts_override_the_asked_spec():
    from streamfuse.models.registry import spec_for_graph

    ddcgan, res2net = get_model("ddcgan"), get_model("res2netfuse")
    # the registry's own facts: the registered spec itself comes back
    assert spec_for_graph(ddcgan.graph_facts("x1"), res2net, "l1", "g.onnx") == (ddcgan, "x1")
    # no metadata: run as asked
    assert spec_for_graph({}, res2net, "mean", "g.onnx") == (res2net, "mean")
    # facts the registry does not know (a model trained elsewhere): the graph decides
    spec, variant = spec_for_graph({"model": "newnet", "variant": "x2", "ir_scale": "2", "pad_multiple": "8"},
                                   res2net, "l1", "g.onnx")
    assert (spec.name, variant, spec.ir_scale_for(variant), spec.pad_multiple) == ("newnet", "x2", 2, 8)
    spec, variant = spec_for_graph({"model": "ddcgan", "variant": "x4", "ir_scale": "2", "pad_multiple": "4"},
                                   res2net, "l1", "g.onnx")
    assert (spec.name, spec.ir_scale_for("x4"), spec.ir_scale_for("x1")) == ("ddcgan", 2, 1)
    with pytest.raises(StreamfuseError, match="g.onnx: metadata ir_scale/pad_multiple must be integers"):
        spec_for_graph({"model": "ddcgan", "ir_scale": "four"}, res2net, "l1", "g.onnx")


def test_missing_graph_hint_fits_the_situation(tmp_path, monkeypatch):
    import importlib.util

    from streamfuse import REPO_DIR
    from streamfuse.models.registry import graph_not_found

    monkeypatch.chdir(REPO_DIR)
    spec = get_model("tlgan")
    if importlib.util.find_spec("torch") and importlib.util.find_spec("onnx") and spec.weights_path().exists():
        assert graph_not_found(tmp_path / "x.onnx", spec).endswith("(export it: python run.py export --model tlgan)")
    monkeypatch.setenv("STREAMFUSE_ENGINES", str(tmp_path))  # no weights there: exporting cannot work
    msg = graph_not_found(spec.onnx_path(), spec)
    assert f"STREAMFUSE_ENGINES={tmp_path}" in msg and "train it: python -m train tlgan" in msg
    assert "export it" not in msg
    assert graph_not_found(tmp_path / "x.onnx") == f"{tmp_path / 'x.onnx'}: ONNX graph not found"


def test_build_takes_the_network_shape_from_the_shipped_record(tmp_path, monkeypatch):
    """Weights of another width (e.g. MetaFusion at the paper's 64 channels) load by name, no code change."""
    torch = pytest.importorskip("torch")
    import json

    from streamfuse.models import get_model
    from streamfuse.models.metafusion import MetaFusion

    monkeypatch.setenv("STREAMFUSE_ENGINES", str(tmp_path))
    torch.save(MetaFusion(channels=8, blocks=2).state_dict(), tmp_path / "metafusion.pt")
    (tmp_path / "metafusion.json").write_text(json.dumps({"config": {"channels": 8, "blocks": 2, "rcms": 2}}))
    model = get_model("metafusion").build("x2")
    assert model.features.entry[0].out_channels == 16 and len(model.features.blocks) == 2

"""RunConfig: YAML + command-line overrides, unknown keys and wrong types named."""
from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamfuse import StreamfuseError
from streamfuse.cli import main
from streamfuse.config import FIELDS, RunConfig, make_config


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_run_the_readme_job():
    cfg = RunConfig(ir="ir.mp4", vis="vis.mp4", output="out.mp4").validate()
    assert (cfg.model, cfg.backend, cfg.mode) == ("pyrfuse", "auto", "auto")


def test_yaml_then_command_line_wins(tmp_path):
    path = write(tmp_path, "ir: a.mp4\nvis: b.mp4\noutput: o.mp4\noffset_ms: -500\nmosaic: true\n"
                           "output_options: {crf: 18}\n")
    cfg = make_config(path, offset_ms=40, mosaic=None)
    assert cfg.offset_ms == 40.0  # given on the command line
    assert cfg.mosaic is True  # not given there (None): the file's value stays
    assert cfg.output_options == {"crf": 18} and cfg.ir == "a.mp4"


def test_every_command_line_option_is_a_config_key():
    from streamfuse.cli import build_parser

    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    dests = {a.dest for a in run._actions} - {"help", "config"}
    assert dests <= set(FIELDS), dests - set(FIELDS)


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, "ir: a.mp4\nofset_ms: 10\n")
    with pytest.raises(StreamfuseError, match=r"run.yaml: unknown key 'ofset_ms'; did you mean 'offset_ms'\?"):
        make_config(path)


def test_unknown_key_from_the_cli_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, "ir: a.mp4\nvis: b.mp4\noutput: o.mp4\nbackedn: onnxruntime\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'backedn'" in err and "did you mean 'backend'" in err


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(StreamfuseError, match=r"key 'max_frames' must be an integer or null, got 'ten'"):
        make_config(write(tmp_path, "max_frames: ten\n"))
    with pytest.raises(StreamfuseError, match=r"key 'mosaic' must be true or false"):
        make_config(write(tmp_path, "mosaic: 1\n"))


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(StreamfuseError, match="expected a mapping"):
        make_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(StreamfuseError, match=r"not valid YAML \(line"):
        make_config(write(tmp_path, "ir: [a\nvis: b\n"))
    with pytest.raises(StreamfuseError, match="config file not found"):
        make_config(tmp_path / "missing.yaml")


def test_missing_inputs_and_bad_values(tmp_path):
    with pytest.raises(StreamfuseError, match="missing 'vis': give --vis"):
        RunConfig(ir="a.mp4", output="o.mp4").validate()
    with pytest.raises(StreamfuseError, match="mode 'fast'"):
        RunConfig(ir="a", vis="b", output="o.mp4", mode="fast").validate()
    with pytest.raises(StreamfuseError, match="agc"):
        RunConfig(ir="a", vis="b", output="o.mp4", agc=[99, 1]).validate()


def test_several_outputs_from_yaml_and_a_single_one_still_works(tmp_path):
    cfg = make_config(write(tmp_path, "ir: a.mp4\nvis: b.mp4\noutput: [o.mp4, 'http://0.0.0.0:8090']\ntoken: t\n"))
    assert cfg.validate().outputs == ["o.mp4", "http://0.0.0.0:8090"] and cfg.token == "t"
    assert make_config(write(tmp_path, "output: o.mp4\n")).outputs == ["o.mp4"]
    with pytest.raises(StreamfuseError, match=r"key 'output' must be a string or a list of strings or null, got \[1\]"):
        make_config(write(tmp_path, "output: [1]\n"))
    with pytest.raises(StreamfuseError, match=r"'token' \(--token\) is for a browser view output, and there is none"):
        RunConfig(ir="a", vis="b", output="o.mp4", token="t").validate()


@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_status_every_must_be_a_number_of_seconds(value):
    with pytest.raises(StreamfuseError, match=r"^'status_every' must be >= 0, got "):
        RunConfig(ir="ir.mp4", vis="vis.mp4", output="out.mp4", status_every=value).validate()
    assert RunConfig(ir="ir.mp4", vis="vis.mp4", output="out.mp4", status_every=0).validate().status_every == 0


def test_nan_and_infinity_are_refused_naming_the_key(tmp_path):
    for text in ("offset_ms: .nan\n", "tolerance_ms: .inf\n", "max_wait_ms: -.inf\n", "agc: [1, .nan]\n"):
        key = text.split(":")[0]
        with pytest.raises(StreamfuseError, match=rf"run.yaml: key '{key}' must be .*finite number"):
            make_config(write(tmp_path, text))


def test_precision_is_checked_with_the_config(tmp_path):
    with pytest.raises(StreamfuseError, match="precision 'fp8': expected one of fp32, fp16, int8"):
        RunConfig(ir="a", vis="b", output="o.mp4", precision="fp8").validate()
    with pytest.raises(StreamfuseError, match="precision 'fp16': backend 'onnxruntime' runs fp32, not fp16"):
        make_config(write(tmp_path, "ir: a\nvis: b\noutput: o.mp4\nbackend: onnxruntime\nprecision: fp16\n")).validate()


# ---------------------------------------------------------------- property-based: any bad file is one line
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(["fp16", "live", "out.mp4", "images://x", "", "1,99"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                      max_leaves=8)
DOCUMENTS = st.dictionaries(st.sampled_from(sorted(FIELDS)) | st.text(max_size=12), VALUES, max_size=6) | VALUES


def check_one_line_or_ok(load):
    """``load()`` either works or raises StreamfuseError with a one-line message; nothing else."""
    try:
        load()
    except StreamfuseError as exc:
        assert "\n" not in str(exc) and str(exc).strip(), repr(str(exc))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DOCUMENTS)
def test_any_config_document_loads_or_is_one_line(tmp_path, document):
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(document))
    check_one_line_or_ok(lambda: make_config(path).validate())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_config_bytes_load_or_are_one_line(tmp_path, data):
    path = tmp_path / "gen.yaml"
    path.write_bytes(data)
    check_one_line_or_ok(lambda: make_config(path).validate())


def test_a_newline_in_a_key_or_value_stays_on_one_line(tmp_path):
    """Found by the property test above: an unknown key '\\n' gave a two-line error."""
    with pytest.raises(StreamfuseError) as err:
        make_config(write(tmp_path, '"\\n": 1\n'))
    assert str(err.value).startswith(f"{tmp_path / 'run.yaml'}: unknown key '\\n'") and "\n" not in str(err.value)
    with pytest.raises(StreamfuseError, match=r"mode 'fa\\nst'"):
        RunConfig(ir="a", vis="b", output="o.mp4", mode="fa\nst").validate()

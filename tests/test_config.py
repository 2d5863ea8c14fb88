"""RunConfig: YAML + command-line overrides, unknown keys and wrong types named."""
from __future__ import annotations

import pytest

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

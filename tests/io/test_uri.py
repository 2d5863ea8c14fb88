"""URI parsing for sources and sinks, option checking, and passwords redacted in everything shown."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfuse import REPO_DIR, SAMPLE_DIR, StreamfuseError
from streamfuse.io.uri import check_options, expand_images, parse_sink, parse_source, redact_uri

PASSWORD = "S3cret"


def test_source_kinds(tmp_path):
    (tmp_path / "frames").mkdir()
    assert parse_source("clip.mp4").kind == "file"
    assert parse_source("file:///data/clip.mkv") == parse_source("file:///data/clip.mkv")
    assert parse_source("file:///data/clip.mkv").target == "/data/clip.mkv"
    assert parse_source(str(tmp_path / "frames")).kind == "images"
    assert parse_source(str(tmp_path / "frames" / "*.png")).kind == "images"
    assert parse_source("rtsp://127.0.0.1:8554/cam?channel=1").target == "rtsp://127.0.0.1:8554/cam?channel=1"
    assert parse_source("/dev/video2").kind == "v4l2"
    assert parse_source("v4l2:///dev/video2").target == "/dev/video2"


def test_query_params_become_typed_options():
    images = parse_source("images://set00/V000/lwir?fps=20")
    assert (images.kind, images.target, images.params) == ("images", "set00/V000/lwir", {"fps": 20})
    cam = parse_source("v4l2:///dev/video0?size=640x512&fps=8.7&pixel_format=y16")
    assert cam.params == {"size": "640x512", "fps": 8.7, "pixel_format": "y16"}
    # an RTSP query belongs to the camera, not to us
    assert parse_source("rtsp://cam/stream?fps=5").params == {}


def test_sink_kinds(tmp_path):
    assert parse_sink("out.mp4").kind == "video"
    assert parse_sink("OUT.MKV").kind == "video"
    assert parse_sink("images://frames").target == "frames"
    assert parse_sink("outdir/").kind == "images"
    assert parse_sink(f"images://{tmp_path}").kind == "images"
    with pytest.raises(StreamfuseError, match=f"{tmp_path}: is an existing folder; .* say images://{tmp_path} "):
        parse_sink(str(tmp_path))  # frames are never dumped into a folder named without images://
    assert parse_sink("display://").target == "streamfuse"
    assert parse_sink("rtsp://127.0.0.1:8554/fused").kind == "rtsp"
    assert parse_sink("null://").kind == "null"
    view = parse_sink("http://0.0.0.0:8090/?token=abc&quality=70")
    assert (view.kind, view.target, view.params) == ("http", "0.0.0.0:8090", {"token": "abc", "quality": 70})


@pytest.mark.parametrize("uri, words", [
    ("out.avi2", ["out.avi2", ".avi2", ".mp4"]),
    ("fused", ["no extension"]),
    ("ftp://host/out.mp4", ["ftp://"]),
])
def test_bad_sink_uri_names_it(tmp_path, uri, words):
    if "://" not in uri:
        uri = str(tmp_path / uri)  # a path that does not exist (an existing folder would be images)
    with pytest.raises(StreamfuseError) as err:
        parse_sink(uri)
    assert all(w in str(err.value) for w in words)


def test_bad_source_scheme():
    with pytest.raises(StreamfuseError, match="unknown source scheme 'http://'"):
        parse_source("http://example/clip.mp4")


def test_unknown_option_suggests():
    with pytest.raises(StreamfuseError, match="unknown option 'fsp'.*did you mean 'fps'"):
        check_options("images://x", {"fsp": 30}, {"kind", "fps"})
    check_options("images://x", {"fps": 30}, {"kind", "fps"})


def test_expand_images_natural_order(tmp_path):
    for name in ("frame10.png", "frame2.png", "frame1.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand_images(str(tmp_path))] == ["frame1.png", "frame2.png", "frame10.png"]
    assert [p.name for p in expand_images(str(tmp_path / "frame1*.png"))] == ["frame1.png", "frame10.png"]
    with pytest.raises(StreamfuseError, match="no image files"):
        expand_images(str(tmp_path / "*.jpg"))


def test_redact_uri_hides_passwords_anywhere_in_a_text():
    assert redact_uri("rtsp://admin:S3cret@cam:554/ir") == "rtsp://admin:***@cam:554/ir"
    assert redact_uri("rtsp://admin:p@ss@cam/ir") == "rtsp://admin:***@cam/ir"  # '@' inside the password
    line = "error: rtsp://a:x1@h1/ir: failed; and rtsp://b:x2@h2/vis"
    assert redact_uri(line) == "error: rtsp://a:***@h1/ir: failed; and rtsp://b:***@h2/vis"
    assert redact_uri("http://0.0.0.0:8090?token=abc&quality=80") == "http://0.0.0.0:8090?token=***&quality=80"
    assert redact_uri("rtsp://cam/live?user=admin&password=S3cret") == "rtsp://cam/live?user=admin&password=***"
    assert redact_uri("rtsp://admin@cam/ir") == "rtsp://admin@cam/ir"  # no password: unchanged
    assert redact_uri("/data/a:b@c/clip.mp4") == "/data/a:b@c/clip.mp4"  # a path is not a URL


# what a camera password may hold inside a URL (RFC 3986 userinfo: unreserved, sub-delims, ':', '%')
_PASSWORD_CHARS = st.sampled_from("abcXYZ019-._~!$&'()*+,;=:%@")


@given(user=st.text("admin-_.0", max_size=8), password=st.text(_PASSWORD_CHARS, min_size=4, max_size=24),
       scheme=st.sampled_from(["rtsp", "rtsps", "http", "https"]), port=st.sampled_from(["", ":554", ":8554"]),
       context=st.sampled_from(["{}", "error: {}: cannot open RTSP stream", "sources {} and {}"]))
def test_redaction_never_lets_a_password_through(user, password, scheme, port, context):
    """Any password characters a URL allows, alone or inside a message: never shown, the host kept."""
    uri = f"{scheme}://{user}:{password}@cam.local{port}/stream/1"
    shown = redact_uri(context.format(uri, uri))
    assert f"{user}:***@cam.local{port}/stream/1" in shown
    assert f":{password}@" not in shown


def _run_cli(*args, cwd):
    """`python run.py ...` as a user runs it: (exit code, stdout + stderr)."""
    proc = subprocess.run([sys.executable, str(REPO_DIR / "run.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def _all_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*")
                   if p.is_file() and p.suffix in (".json", ".csv", ".md", ".yaml", ".txt", ".log"))


def test_a_failing_run_never_shows_the_password(tmp_path):
    code, output = _run_cli("-v", "run", "--ir", f"rtsp://admin:{PASSWORD}@127.0.0.1:1/ir", "--vis",
                            SAMPLE_DIR / "vis.mp4", "--model", "average", "-o", tmp_path / "out.mp4", cwd=tmp_path)
    assert code == 2
    assert "error: rtsp://admin:***@127.0.0.1:1/ir: cannot open RTSP stream" in output
    assert PASSWORD not in output + _all_text(tmp_path)


@pytest.mark.rtsp
def test_a_succeeding_run_probe_and_batch_never_show_the_password(rtsp_server, tmp_path):
    server = rtsp_server(play={"ir": SAMPLE_DIR / "ir.mp4", "vis": SAMPLE_DIR / "vis.mp4"})
    ir, vis = (server.url(name).replace("rtsp://", f"rtsp://admin:{PASSWORD}@") for name in ("ir", "vis"))
    outputs = []
    code, output = _run_cli("-v", "run", "--ir", ir, "--vis", vis, "--model", "average", "-o",
                            tmp_path / "run.mp4", cwd=tmp_path)
    assert code == 0 and "fused frame(s)" in output, output  # the server takes the credentials
    assert "wrote 0 " not in output and (tmp_path / "run.mp4").is_file()
    outputs.append(output)
    code, output = _run_cli("probe", ir, "--kind", "ir", cwd=tmp_path)
    assert code == 0 and "rtsp://admin:***@" in output
    outputs.append(output)
    (tmp_path / "rigs.csv").write_text(f"ir,vis,output\n{ir},{vis},rig1.mp4\n")
    code, output = _run_cli("batch", tmp_path / "rigs.csv", "-o", tmp_path / "batch", "--model", "average",
                            "--workers", "1", cwd=tmp_path)
    assert code == 0, output
    outputs.append(output)
    written = _all_text(tmp_path / "batch")
    assert "rtsp://admin:***@" in written  # the sequence's statistics JSON records its sources
    assert PASSWORD not in "".join(outputs) + written


def test_the_same_input_twice_is_one_warning_with_the_password_hidden(tmp_path, monkeypatch, caplog):
    from streamfuse.io.uri import warn_if_same_source

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert warn_if_same_source("clip.mp4", f"file://{clip}")  # relative path and file:// URI: one file
    assert warn_if_same_source(str(tmp_path), f"images://{tmp_path}/../{tmp_path.name}")
    assert warn_if_same_source("rtsp://admin:S3cret@cam/ir", "rtsp://admin:S3cret@cam/ir")
    assert not warn_if_same_source("rtsp://cam/ir", "rtsp://cam/vis")
    assert not warn_if_same_source("clip.mp4", str(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3 and "S3cret" not in caplog.text
    assert warnings[2] == "--ir and --vis are the same source (rtsp://admin:***@cam/ir): the output is that input fused with itself"

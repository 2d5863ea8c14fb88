"""URI parsing for sources and sinks, and option checking."""
from __future__ import annotations

import pytest

from streamfuse import StreamfuseError
from streamfuse.io.uri import check_options, expand_images, parse_sink, parse_source


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
    assert parse_sink(str(tmp_path)).kind == "images"
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

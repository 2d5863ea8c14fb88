"""Still images: atomic writes that get the umask's permissions, and clear decode errors."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.io.images import read_image, write_image
from streamfuse.io.sinks import open_sink


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umask_permissions(tmp_path, umask, mask, mode):
    umask(mask)
    path = write_image(tmp_path / "a.png", np.full((8, 8), 200, np.uint8))
    assert stat.S_IMODE(path.stat().st_mode) == mode
    with open_sink(f"images://{tmp_path / 'frames'}") as sink:  # the image folder output writes the same way
        sink.write(np.zeros((8, 8, 3), np.uint8), 0)
    assert stat.S_IMODE((tmp_path / "frames" / "000000.png").stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []  # no temp file left
    np.testing.assert_array_equal(read_image(path), np.full((8, 8), 200, np.uint8))


def test_undecodable_image_is_named(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(StreamfuseError, match=r"x.png: cannot decode as a visible image"):
        read_image(tmp_path / "x.png", "visible image")
    with pytest.raises(StreamfuseError, match=r"x.png: cannot decode as an IR image"):
        read_image(tmp_path / "x.png", "IR image")


def test_check_folder_writable_probes_without_leaving_anything(tmp_path):
    from streamfuse.io.images import check_folder_writable

    check_folder_writable(tmp_path / "a" / "b")  # missing folders are fine: the writer makes them
    check_folder_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no probe file, no folder made
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(StreamfuseError, match=rf"^-o x: cannot write to folder '{blocker}/a' \('{blocker}' is a file\)$"):
        check_folder_writable(blocker / "a", "-o x")
    with pytest.raises(StreamfuseError, match=rf"^{blocker}: cannot write to folder '{blocker}' \('{blocker}' is a file\)$"):
        check_folder_writable(blocker)

"""FramePairer: pure pairing logic, then real encoded streams (30 and 25 fps, a 0.5 s late start)."""
from __future__ import annotations

import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.io.frame import Frame
from streamfuse.sync import FramePairer, default_tolerance_ns

from tests.helpers.clips import expected_nearest

MS = 1_000_000


def frames(stream: str, fps: float, n: int, start_s: float = 0.0) -> list[Frame]:
    return [Frame(np.zeros((1, 1), np.uint8), round((start_s + i / fps) * 1e9), i, stream) for i in range(n)]


def run_lossless(pairer: FramePairer, ir: list[Frame], vis: list[Frame]) -> list[tuple[int, int]]:
    """Feed frames the way the pipeline does: always the stream the pairer asks for."""
    src = {"ir": iter(ir), "vis": iter(vis)}
    out = []
    while (stream := pairer.wanted()) is not None:
        frame = next(src[stream], None)
        if frame is None:
            pairer.end(stream)
        else:
            pairer.push(stream, frame)
        out += [(a.seq, b.seq) for a, b in pairer.pop_pairs()]
    return out


def test_default_tolerance_is_half_the_slower_period():
    assert default_tolerance_ns(30, 25) == 20 * MS
    assert default_tolerance_ns(None, 10) == 50 * MS


def test_same_rate_pairs_one_to_one():
    p = FramePairer()
    assert run_lossless(p, frames("ir", 30, 10), frames("vis", 30, 10)) == [(i, i) for i in range(10)]
    assert p.unmatched == {"ir": 0, "vis": 0} and p.ended_early is None


def test_30_and_25_fps_pair_by_nearest_pts():
    p = FramePairer(ir_fps=30, vis_fps=25)
    got = run_lossless(p, frames("ir", 30, 60), frames("vis", 25, 50))
    assert got == expected_nearest(30, 25, 60, 50)
    assert len(got) == 50  # every frame of the slower stream found its partner
    assert p.unmatched == {"ir": 10, "vis": 0}
    assert len({i for i, _ in got}) == len(got)  # no IR frame used twice


def test_late_start_leaves_the_early_frames_unmatched():
    p = FramePairer(ir_fps=30, vis_fps=30)
    got = run_lossless(p, frames("ir", 30, 45), frames("vis", 30, 30, start_s=0.5))
    assert got == [(i + 15, i) for i in range(30)]
    assert p.unmatched["ir"] == 15


def test_offset_aligns_a_camera_started_late():
    # visible camera started 0.5 s after the IR one, both files begin at pts 0: IR pts - 0.5 s = visible pts
    p = FramePairer(ir_fps=30, vis_fps=25, offset_ns=-500 * MS)
    got = run_lossless(p, frames("ir", 30, 60), frames("vis", 25, 30))
    assert got == expected_nearest(30, 25, 60, 30, offset_s=-0.5)
    assert got[0] == (15, 0)


def test_stream_ending_early_is_reported():
    p = FramePairer(ir_fps=30, vis_fps=30)
    got = run_lossless(p, frames("ir", 30, 30), frames("vis", 30, 12))
    assert got == [(i, i) for i in range(12)]
    assert p.ended_early == "vis" and p.done


def test_streams_of_equal_length_do_not_count_as_ending_early():
    p = FramePairer(ir_fps=30, vis_fps=25)
    run_lossless(p, frames("ir", 30, 30), frames("vis", 25, 25))  # both 1 s long
    assert p.ended_early is None


def test_lossless_never_drops_while_the_consumer_lags():
    p = FramePairer(ir_fps=30, vis_fps=30)
    ir, vis = frames("ir", 30, 20), frames("vis", 30, 20)
    for f in ir:  # a whole stream arrives before the other: nothing is lost
        p.push("ir", f)
    for f in vis:
        p.push("vis", f)
    p.end("ir")
    p.end("vis")
    assert [(a.seq, b.seq) for a, b in p.pop_pairs()] == [(i, i) for i in range(20)]
    assert p.dropped == {"ir": 0, "vis": 0}


def test_non_increasing_pts_are_skipped_and_counted():
    p = FramePairer(ir_fps=30, vis_fps=30)
    ir = frames("ir", 30, 3)
    p.push("ir", ir[0])
    p.push("ir", ir[1])
    p.push("ir", ir[1])
    assert p.unmatched["ir"] == 1


def test_live_drops_an_anchor_whose_partner_never_comes():
    p = FramePairer("live", ir_fps=30, vis_fps=30, max_wait_ns=100 * MS)
    ir = frames("ir", 30, 3)
    p.push("ir", ir[0], now_ns=0)
    assert p.pop_pairs(now_ns=50 * MS) == []
    assert p.dropped["ir"] == 0
    p.pop_pairs(now_ns=150 * MS)
    assert p.dropped["ir"] == 1


def test_live_pairs_without_waiting_for_look_ahead():
    p = FramePairer("live", ir_fps=30, vis_fps=30)
    ir, vis = frames("ir", 30, 2), frames("vis", 30, 2)
    p.push("ir", ir[0], now_ns=0)
    p.push("vis", vis[0], now_ns=1)
    assert [(a.seq, b.seq) for a, b in p.pop_pairs(now_ns=2)] == [(0, 0)]


def test_live_holds_a_bounded_number_of_frames():
    p = FramePairer("live", ir_fps=30, vis_fps=30, max_pending=4, max_wait_ns=10**12)
    for f in frames("ir", 30, 10):
        p.push("ir", f)
    assert p.pending("ir") == 4 and p.dropped["ir"] == 6


def test_bad_mode_is_named():
    with pytest.raises(StreamfuseError, match="pairing mode 'fast'"):
        FramePairer("fast")


# ---------------------------------------------------------------------- real encoded streams
def decode_with_pairer(ir_uri: str, vis_uri: str, **pairer_args) -> tuple[list[tuple[int, int]], FramePairer, dict]:
    from streamfuse.io.frame import EndOfStream
    from streamfuse.io.sources import open_source

    srcs = {"ir": open_source(ir_uri, kind="ir"), "vis": open_source(vis_uri)}
    pairer = FramePairer(ir_fps=srcs["ir"].fps, vis_fps=srcs["vis"].fps, **pairer_args)
    pts = {"ir": [], "vis": []}
    pairs = []
    try:
        while (stream := pairer.wanted()) is not None:
            try:
                frame = srcs[stream].read(5.0)
            except EndOfStream:
                frame = None
                pairer.end(stream)
            if frame is not None:
                pts[stream].append(frame.pts_ns / 1e9)
                pairer.push(stream, frame)
            pairs += [(a.seq, b.seq) for a, b in pairer.pop_pairs()]
    finally:
        for s in srcs.values():
            s.close()
    return pairs, pairer, pts


def test_real_streams_at_30_and_25_fps(tmp_path):
    from tests.helpers.clips import m3svd_frames, write_clip

    ir, vis = m3svd_frames(40)
    write_clip(tmp_path / "ir.mp4", ir[:36], 30)  # 1.2 s
    write_clip(tmp_path / "vis.mp4", vis[:30], 25)  # 1.2 s
    pairs, pairer, pts = decode_with_pairer(str(tmp_path / "ir.mp4"), str(tmp_path / "vis.mp4"))
    assert len(pts["ir"]) == 36 and len(pts["vis"]) == 30
    assert pts["vis"][1] == pytest.approx(0.04, abs=1e-6)  # the pts really come from the container
    assert pairs == expected_nearest(30, 25, 36, 30)
    assert len(pairs) == 30 and pairer.ended_early is None


def test_real_stream_starting_half_a_second_late(tmp_path):
    # The visible camera started 0.5 s after the IR one; each file starts at pts 0 (sources rebase
    # files to their first frame), so the offset (IR pts - 0.5 s = visible pts) lines them up.
    from tests.helpers.clips import m3svd_frames, write_clip

    ir, vis = m3svd_frames(40)
    write_clip(tmp_path / "ir.mp4", ir[:40], 30)
    write_clip(tmp_path / "vis.mp4", vis[15:40], 30)  # same scene, from 0.5 s on
    pairs, pairer, pts = decode_with_pairer(str(tmp_path / "ir.mp4"), str(tmp_path / "vis.mp4"), offset_ns=-500 * MS)
    assert pts["vis"][0] == 0.0
    assert pairs == [(i + 15, i) for i in range(25)]
    assert pairer.unmatched == {"ir": 15, "vis": 0}


def test_real_streams_at_different_fps_and_a_late_start(tmp_path):
    from tests.helpers.clips import m3svd_frames, write_clip

    ir, vis = m3svd_frames(40)
    write_clip(tmp_path / "ir.mp4", ir[:40], 30)
    write_clip(tmp_path / "vis.mkv", vis[:20], 25)
    pairs, _, _ = decode_with_pairer(str(tmp_path / "ir.mp4"), str(tmp_path / "vis.mkv"), offset_ns=-500 * MS)
    assert pairs == expected_nearest(30, 25, 40, 20, offset_s=-0.5)
    assert pairs[0] == (15, 0) and len(pairs) == 20

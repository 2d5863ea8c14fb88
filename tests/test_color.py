import cv2
import numpy as np
import pytest

from streamfuse import StreamfuseError
from streamfuse.color import merge_luma, normalize_ir, split_luma, to_gray


def test_chroma_round_trip_keeps_visible_chroma():
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    y, crcb = split_luma(vis)
    assert y.dtype == np.float32 and y.shape == (48, 64) and 0 <= y.min() and y.max() <= 1
    out = merge_luma(y, crcb)
    # YCrCb -> BGR -> YCrCb in uint8 loses at most a few levels to rounding and gamut clipping
    back = cv2.cvtColor(out, cv2.COLOR_BGR2YCrCb)
    assert np.abs(back[..., 0].astype(int) - (y * 255).round().astype(int)).max() <= 3


def test_gray_visible_stays_gray():
    vis = np.full((10, 12), 77, np.uint8)
    y, crcb = split_luma(vis)
    assert crcb is None
    out = merge_luma(y, crcb)
    assert out.shape == (10, 12) and out.dtype == np.uint8 and (out == 77).all()


def test_ir_8bit_scaled():
    ir = np.array([[0, 255], [51, 102]], np.uint8)
    np.testing.assert_allclose(normalize_ir(ir), ir / 255.0, atol=1e-7)


def test_ir_16bit_percentile_agc():
    ir = np.linspace(1000, 2000, 9999).astype(np.uint16).reshape(101, 99)
    out = normalize_ir(ir, agc=(1, 99))
    assert out.dtype == np.float32
    # the 1st percentile maps to 0 and the 99th to 1; values outside are clipped
    assert out.min() == 0.0 and out.max() == 1.0
    assert abs(float(np.median(out)) - 0.5) < 0.01


def test_ir_16bit_flat_frame_is_zero_not_nan():
    assert not normalize_ir(np.full((4, 4), 3000, np.uint16)).any()


def test_three_equal_channels_read_as_gray():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(to_gray(np.dstack([g, g, g])), g)


def test_bad_ir_shape_is_one_line_error():
    with pytest.raises(StreamfuseError, match="expected a gray or 3-channel"):
        to_gray(np.zeros((2, 2, 5), np.uint8))


def test_auto_gain_is_one_implementation_for_numpy_and_torch():
    torch = pytest.importorskip("torch")
    from streamfuse.color import auto_gain

    ir = (np.random.default_rng(3).normal(20000, 3000, (120, 160))).clip(0, 65535).astype(np.uint16)
    want = auto_gain(ir, (2.0, 98.0))
    got = auto_gain(torch.from_numpy(ir.astype(np.int32)), (2.0, 98.0)).numpy()
    assert want.dtype == got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert want.min() == 0.0 and want.max() == 1.0
    assert not auto_gain(np.full((4, 4), 7, np.uint16)).any()  # a flat frame: zeros

"""Overlay pictures: IR edges drawn where the IR has edges, checkerboard tiles from each image."""
import numpy as np

from streamfuse.calibration.overlay import EDGE_COLOUR, checker_blend, draw_overlay, overlay_picture


def scene():
    vis = np.full((240, 320, 3), 90, np.uint8)
    ir = np.full((120, 160), 40, np.uint16) * 100  # a 16-bit IR at half size: resized and stretched
    ir[30:90, 40:120] = 9000  # a warm rectangle: edges at x = 80..240, y = 60..180 on the visible grid
    return vis, ir


def test_edges_drawn_on_the_ir_outline_only():
    vis, ir = scene()
    out = draw_overlay(vis, ir)
    edge = np.all(out == EDGE_COLOUR, axis=2)
    ys, xs = np.nonzero(edge)
    assert out.shape == vis.shape and edge.sum() > 200
    assert xs.min() >= 74 and xs.max() <= 245 and ys.min() >= 54 and ys.max() <= 185
    assert not edge[100:140, 120:200].any()  # inside the rectangle: flat, no edges
    assert np.array_equal(out[~edge], vis[~edge])


def test_checker_blend_alternates_tiles_and_picture_is_side_by_side():
    vis, ir = scene()
    blend = checker_blend(vis, ir, tiles=4)
    assert (blend[:60, :80] == 90).all()  # tile (0, 0): visible
    assert (blend[:60, 80:160] != 90).all()  # tile (0, 1): IR (stretched background)
    assert overlay_picture(vis, ir).shape == (240, 640, 3)

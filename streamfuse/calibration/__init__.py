"""Calibration of an IR + visible rig: registration (points, checkerboard, automatic), the time
offset between the cameras, and overlays to check them. ``run.py calibrate`` is in command.py."""
from streamfuse.calibration.overlay import checker_blend, draw_overlay, overlay_picture

__all__ = ["checker_blend", "draw_overlay", "overlay_picture"]

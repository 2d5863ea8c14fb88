"""The unit that flows through the pipeline, and the outcomes a source can report."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamfuse import StreamfuseError


@dataclass
class Frame:
    """One decoded frame. IR: HxW uint8 or uint16. VIS: HxWx3 BGR uint8 (or HxW gray).

    ``pts_ns`` is the presentation time in nanoseconds: container PTS x time_base for files and
    sequences (seq / fps), the capture clock for live sources.
    """

    image: np.ndarray
    pts_ns: int
    seq: int
    source: str


class EndOfStream(Exception):
    """The source has no more frames (file ended, sequence exhausted)."""


class SourceError(StreamfuseError):
    """The source failed (cannot open, connection lost and not recovered, decode error).

    A StreamfuseError, so the CLI prints it as one line naming the source.
    """

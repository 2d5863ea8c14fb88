"""Read a source in its own thread into a bounded queue.

    frames = queue.Queue(maxsize=8)          # live: a small queue (2-4) keeps latency bounded
    reader = ReaderThread(source, frames, mode="lossless")
    reader.start()
    while True:
        item = frames.get()
        if isinstance(item, ReaderDone):     # always the last item
            break                            # item.error: None at end of stream, else the exception
        use(item)                            # a streamfuse.io.frame.Frame
    reader.stop(); reader.join()

Modes
  ``lossless``  put() waits while the queue is full, so the source is read no faster than the consumer
                takes frames (back-pressure; nothing is dropped). For files and image sequences.
  ``live``      a full queue gives up its oldest frame for the new one (read-latest); each such frame
                adds one to ``dropped``. For cameras and RTSP.

``stop()`` asks the thread to finish; it notices within ``poll`` seconds (for RTSP, a network read in
progress can take up to the source's read_timeout). The thread closes the source when it ends
(``close_source=True``), so the source is only ever touched from one thread.
Counters: ``frames_read``, ``dropped``; ``error`` holds the exception that ended the thread, if any.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from streamfuse import StreamfuseError
from streamfuse.io.frame import EndOfStream

MODES = ("lossless", "live")


@dataclass
class ReaderDone:
    """The reader's last queue item. ``error`` is None when the source reached its end."""

    source: str
    error: BaseException | None = None


class ReaderThread(threading.Thread):
    def __init__(self, source, frames: queue.Queue, mode: str = "lossless", poll: float = 0.1,
                 close_source: bool = True, name: str | None = None):
        if mode not in MODES:
            raise StreamfuseError(f"reader mode must be one of {', '.join(MODES)}, got '{mode}'")
        super().__init__(name=name or f"reader {source.uri}", daemon=True)
        self.source, self.frames, self.mode = source, frames, mode
        self.poll, self.close_source = poll, close_source
        self.frames_read = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                frame = self.source.read(timeout=self.poll)
                if frame is None:  # live source: nothing yet; look at the stop flag again
                    continue
                self.frames_read += 1
                self._put(frame)
        except EndOfStream:
            pass
        except BaseException as e:  # handed to the consumer, which decides what to do
            self.error = e
        finally:
            if self.close_source:
                try:
                    self.source.close()
                except Exception:  # closing must not hide the outcome the consumer is waiting for
                    pass
            self._put(ReaderDone(self.source.uri, self.error))

    def _put(self, item) -> None:
        if self.mode == "live":
            while True:
                try:
                    self.frames.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self.frames.get_nowait()
                        self.dropped += 1
                    except queue.Empty:  # the consumer took one meanwhile
                        pass
        while True:
            try:
                self.frames.put(item, timeout=self.poll)
                return
            except queue.Full:
                if self._stop_event.is_set():  # the consumer stopped taking frames: give up
                    return

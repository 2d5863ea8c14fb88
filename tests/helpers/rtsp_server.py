"""A small RTSP server on 127.0.0.1 for the tests (gst-rtsp-server through python3-gi).

Runs under the Debian system python (/usr/bin/python3), where python3-gi is installed:

    /usr/bin/python3 tests/helpers/rtsp_server.py --port 8554 --play ir=streamfuse/data/sample/ir.mp4 \
        --record pub=/tmp/received.h264

``--play NAME=FILE.mp4`` serves an H.264 MP4 at rtsp://127.0.0.1:PORT/NAME, in real time, from the start
for every client. ``--record NAME=OUT.h264`` accepts a publisher (ANNOUNCE/RECORD) at /NAME and writes
the H.264 it receives to OUT as an Annex-B byte stream. Prints "READY <port>" once listening
(``--port 0`` picks a free port). Ends on SIGTERM/SIGINT.
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--play", action="append", default=[], metavar="NAME=FILE")
    parser.add_argument("--record", action="append", default=[], metavar="NAME=OUT")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.play:
        name, path = spec.split("=", 1)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f'( filesrc location="{path}" ! qtdemux ! h264parse ! '
                           "rtph264pay name=pay0 pt=96 config-interval=1 )")
        mounts.add_factory(f"/{name}", factory)
    for spec in args.record:
        name, path = spec.split("=", 1)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        factory.set_latency(20)  # ms held in the jitter buffer: a publisher's teardown must not lose frames
        factory.set_launch("( rtph264depay name=depay0 ! h264parse ! "
                           f'video/x-h264,stream-format=byte-stream,alignment=au ! filesink location="{path}" )')
        mounts.add_factory(f"/{name}", factory)

    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Test helpers (real clips from the bundled sample, the RTSP server, shipped graphs, synthetic batches)."""

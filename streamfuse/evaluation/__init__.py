"""Evaluation and diagnostics: fusion metrics (pure functions of arrays), the ``eval`` runner and its
reports, the FP16 report with per-layer activation ranges, and the FLOP / GPU-time estimate."""

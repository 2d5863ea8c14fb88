"""Inputs and outputs: image files here; video sources and sinks in sources.py / sinks.py."""

"""Training: ``python -m train <model or config.yaml>``; configs in train/configs/, the loop and the
ship step in train/harness.py (its docstring says how to add a model)."""

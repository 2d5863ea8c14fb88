"""Training: ``python -m train <model or config.yaml>``; configs in train/configs/."""

"""Built-in models. Each entry names its torch builder lazily, so this import needs no torch."""
from streamfuse.models.registry import ModelSpec, get_model, list_models, register_model

register_model(ModelSpec(
    name="res2netfuse",
    paper="Song et al., Res2NetFuse: A Fusion Method for Infrared and Visible Images (2021)",
    builder="streamfuse.models.res2netfuse:build",
    summary="Res2Net auto-encoder trained on one natural image; l1-norm or mean-attention fusion layer",
    variants=("l1", "mean"),
))

__all__ = ["ModelSpec", "get_model", "list_models", "register_model"]

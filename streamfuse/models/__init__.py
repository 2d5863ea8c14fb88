"""Built-in models. Each entry names its torch builder lazily, so this import needs no torch."""
from streamfuse.models.registry import ModelSpec, get_model, list_models, register_model

register_model(ModelSpec(
    name="res2netfuse",
    paper="Song et al., Res2NetFuse: A Fusion Method for Infrared and Visible Images (2021)",
    builder="streamfuse.models.res2netfuse:build",
    summary="Res2Net auto-encoder trained on one natural image; l1-norm or mean-attention fusion layer",
    variants=("l1", "mean"),
))

register_model(ModelSpec(
    name="ddcgan",
    paper="Xu, Ma et al., Learning a generative model for fusing infrared and visible images via conditional GAN with dual discriminators (IJCAI 2019)",
    builder="streamfuse.models.ddcgan:build",
    summary="U-Net generator, 1/4-size IR up-sampled inside (x4) or same-size IR (x1); dual discriminators in training",
    variants=("x4", "x1"),
    ir_scale=4,
    pad_multiple=4,  # two stride-2 convs (streamfuse/models/ddcgan.py)
    extra={"ir_scale": {"x1": 1}},  # variant x1: same weights, IR at the visible size
))

__all__ = ["ModelSpec", "get_model", "list_models", "register_model"]

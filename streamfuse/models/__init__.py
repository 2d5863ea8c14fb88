"""Built-in models. Each entry names its torch builder lazily, so this import needs no torch."""
from streamfuse.models.registry import ModelSpec, get_model, list_models, register_model

register_model(ModelSpec(
    name="pyrfuse",
    paper="streamfuse's real-time model (this project): learned base weight map + Laplacian-pyramid blending",
    builder="streamfuse.models.pyrfuse:build",
    summary="real-time CPU default: a small CNN at 1/8 resolution weighs the pyramid base, choose-max details",
    pad_multiple=16,  # 2**LEVELS (streamfuse/models/pyrfuse.py)
    arch_keys=("width",),
))

register_model(ModelSpec(
    name="res2netfuse",
    paper="Song et al., Res2NetFuse: A Fusion Method for Infrared and Visible Images (2021)",
    builder="streamfuse.models.res2netfuse:build",
    summary="Res2Net auto-encoder trained on one natural image; l1-norm or mean-attention fusion layer",
    variants=("l1", "mean"),
))

register_model(ModelSpec(
    name="tlgan",
    paper="Chen, Han, Tian, Infrared and visible image fusion using two-layer generative adversarial network (JIFS 2021)",
    builder="streamfuse.models.tlgan:build",
    summary="two-layer GAN: three 5-layer CNN generators; inference G3(G1(ir, vis), vis)",
))

register_model(ModelSpec(
    name="ddpatchgan",
    paper="DDPatchGAN: dual PatchGAN discriminators with IR weight maps, U-Net generator",
    builder="streamfuse.models.ddpatchgan:build",
    summary="U-Net generator trained against IR/visible PatchGAN discriminators (LSGAN, IR-weighted)",
    pad_multiple=8,  # 2**DEPTH of the U-Net (streamfuse/models/ddpatchgan.py)
))

register_model(ModelSpec(
    name="ddcgan",
    paper="Xu, Ma et al., Learning a generative model for fusing infrared and visible images via conditional GAN with dual discriminators (IJCAI 2019)",
    builder="streamfuse.models.ddcgan:build",
    summary="the authors' dense generator (1.1M params, full resolution), 1/4-size IR up-sampled inside (x4) or same-size IR (x1); dual discriminators in training",
    variants=("x4", "x1"),
    ir_scale=4,
    pad_multiple=4,  # variant x4: the IR is a quarter of the visible in each direction
    extra={"ir_scale": {"x1": 1}},  # variant x1: same weights, IR at the visible size
    cpu_arena=False,
))

register_model(ModelSpec(
    name="metafusion",
    paper="Li, Cen, Liu, Chen, Yu, Different Input Resolutions and Arbitrary Output Resolution: A Meta Learning-Based Deep Framework for Infrared and Visible Image Fusion (TIP 2021)",
    builder="streamfuse.models.metafusion:build",
    summary="meta-upscale to any output size, dual attention, max-selection fusion, residual compensation; IR at 1/1 (x1), 1/2 (x2) or 1/4 (x4) of the visible",
    variants=("x1", "x2", "x4"),
    ir_scale=1,
    extra={"ir_scale": {"x2": 2, "x4": 4}},  # one set of weights; each variant's graph fixes its IR scale
    arch_keys=("channels", "blocks", "rcms"),
    cpu_arena=False,
))

# Untrained baselines (streamfuse/models/baselines.py): no weights; their ONNX graphs ship in engines/.
register_model(ModelSpec(
    name="average",
    paper="baseline: pixel average (ir + vis) / 2",
    builder="streamfuse.models.baselines:build_average",
    summary="untrained baseline: mean of IR and visible",
    trained=False,
))

register_model(ModelSpec(
    name="max",
    paper="baseline: pixel maximum max(ir, vis)",
    builder="streamfuse.models.baselines:build_max",
    summary="untrained baseline: per-pixel maximum of IR and visible",
    trained=False,
))

register_model(ModelSpec(
    name="laplacian",
    paper="Burt & Adelson, The Laplacian Pyramid as a Compact Image Code (1983); choose-max rule of Burt & Kolczynski (1993)",
    builder="streamfuse.models.baselines:build_laplacian",
    summary="classical baseline: 4-level Laplacian pyramid, choose-max details, averaged base",
    trained=False,
    pad_multiple=16,  # 2**LAPLACIAN_LEVELS (streamfuse/models/baselines.py)
))

register_model(ModelSpec(
    name="gff",
    paper="Li, Kang, Hu, Image Fusion With Guided Filtering (IEEE TIP 2013)",
    builder="streamfuse.models.classical:build_gff",
    summary="classical reference: two-scale decomposition, saliency weight maps refined by guided filters",
    trained=False,
    fp16=False,  # the detail guided filter's eps = 1e-6 is far below FP16's resolution of a local variance
))

register_model(ModelSpec(
    name="hmsd",
    paper="Zhou, Wang, Li, Dong, Perceptual fusion of infrared and visible images through a hybrid multi-scale decomposition with Gaussian and bilateral filters (Information Fusion 2016)",
    builder="streamfuse.models.classical:build_hmsd",
    summary="classical reference: 4-level Gaussian/bilateral decomposition, perception-based IR weights",
    trained=False,
))

# Speed reference only (random weights): timed by `bench`, left out of `eval --models all` and model lists.
register_model(ModelSpec(
    name="mmdrfuse-student",
    paper="Deng et al., MMDRFuse: Distilled Mini-Model with Dynamic Refresh for Multi-Modality Image Fusion (ACM MM 2024), 113-parameter student structure",
    builder="streamfuse.models.mmdrfuse:build",
    summary="speed reference, random weights: concat -> conv3x3 2->4 -> ReLU -> conv3x3 4->1 -> tanh",
    trained=False,
    speed_only=True,
))

__all__ = ["ModelSpec", "get_model", "list_models", "register_model"]

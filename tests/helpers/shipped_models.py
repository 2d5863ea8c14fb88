"""The models this repo ships (engines/<model>[-variant].onnx next to engines/<model>.pt), read from
the registry at collection time so every newly trained model is covered by the export tests."""
import pytest

from streamfuse.models import list_models


def shipped_graphs(fp16: bool = False) -> list:
    """``fp16=True``: a model registered as float32-only (ModelSpec.fp16 False) is skipped, with the reason."""
    def marks(spec):
        return [pytest.mark.skip(reason=f"{spec.name} is float32-only (ModelSpec.fp16 = False)")] if fp16 and not spec.fp16 else []

    params = [pytest.param(spec.name, v, id=f"{spec.name}-{v}", marks=marks(spec))
              for spec in list_models() if not spec.trained or spec.weights_path().exists()
              for v in spec.variants if spec.onnx_path(v).exists()]
    return params or [pytest.param(None, None, id="none-shipped",
                                   marks=pytest.mark.skip(reason="no shipped model yet (engines/<model>.onnx + .pt)"))]

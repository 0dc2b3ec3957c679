"""The model factory: one call gives an object that turns pixels or texts into tanh outputs.

``load_model(backbone, bits=None, heads=None, device=None, backend=None) -> HashModel``. Callers
never see encoders or heads: another inference engine is swapped in here, by name
(``--backend``/``$CACH_BACKEND``), without touching them.
"""

from model_runtime.model.base import HashModel, ImageOutputs
from model_runtime.model.factory import available_backends, load_model, pick_backend
from model_runtime.model.heads import HeadsRef, find_heads, read_heads, resolve_heads

__all__ = [
    "HashModel",
    "HeadsRef",
    "ImageOutputs",
    "available_backends",
    "find_heads",
    "load_model",
    "pick_backend",
    "read_heads",
    "resolve_heads",
]

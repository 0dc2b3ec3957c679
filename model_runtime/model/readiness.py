"""Whether a model's compiled graphs are already in the cache, asked without building them.

A dry run uses it to say that the first real run also builds the graphs once (about 20 s on a
2-core CPU), time its per-tile estimate does not hold.
"""

from __future__ import annotations

import json
import logging

from model_runtime.settings import current

LOG = logging.getLogger(__name__)

#: seconds the first build of the default model's image and text graphs took on a 2-core CPU
#: (19.7 s measured; docs/user-guide.md)
FIRST_BUILD_S = 20.0


def graphs_to_build(backbone: str, heads, backend: str | None = None, device: str | None = None,
                    precision: str | None = None) -> bool:
    """True when loading this model would first build its graphs. False when they are cached,
    when the backend runs no graphs (torch), or when it cannot be told (logged at debug)."""
    from model_runtime.config import get_backbone_config
    from model_runtime.model import factory
    from model_runtime.model.graphs import GRAPHS, MANIFEST, engine_version, graph_folder, key_parts

    try:
        backend = factory.pick_backend(backend, device)
        if backend == "torch":
            return False
        cls = factory._model_class(backend)
        wanted = (precision or current().precision or cls.precisions[0]).lower()
        wanted = "fp32" if wanted == "bf16" else wanted  # bf16 runs the fp32 graph files
        recipe = ""
        if wanted == "int8":
            from model_runtime.model.quantize import RECIPE as recipe
        config = get_backbone_config(backbone)
        version = engine_version(cls.engine)
        for name in GRAPHS:
            parts = key_parts(config, heads, version, wanted, recipe, graph=name)
            manifest = graph_folder(parts) / MANIFEST  # its files are checked when loading
            if not manifest.is_file() or json.loads(manifest.read_text()).get("key") != parts:
                return True
    except Exception as err:  # noqa: BLE001 - an estimate never fails a dry run
        LOG.debug("cannot tell whether the graphs are built: %s", err)
    return False

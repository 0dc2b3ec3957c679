"""The PyTorch backend: the open_clip towers (``encoders.py``) followed by the hash heads.

Used for training-adjacent work, on CUDA (fp16 autocast, channels_last, uint8 pixels staged
through pinned buffers and copied on a side stream while the GPU computes the previous chunk,
large batches: :attr:`preferred_batch`), and as the fallback when no compiled engine is
installed. The frozen encoder is shared by every heads file of one backbone/device.
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
#: images per encode call the index builder should use (large on a GPU)
CPU_BATCH, CUDA_BATCH = 32, 512
#: images per host -> GPU copy (two are in flight)
CUDA_CHUNK = 128
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


def release_encoder(config: BackboneConfig, device: str = "cpu") -> None:
    """Forget the shared encoder of ``config`` on ``device`` (loaded only to export graphs)."""
    with _LOCK:
        _ENCODERS.pop((config.name, device), None)


def _torch_precision(precision: str | None, cuda: bool) -> str:
    """fp16 autocast on CUDA by default; fp32 on the CPU (or when asked for)."""
    wanted = (precision or ("fp16" if cuda else "fp32")).lower()
    if wanted == "fp32" or (wanted == "fp16" and cuda):
        return wanted
    raise ConfigError(f"The torch backend runs fp32{' or fp16' if cuda else ''} here, not "
                      f"'{precision}'.", code="bad_value")


class CudaStaging:
    """Host -> GPU copies that overlap the compute: a batch is cut into chunks; each chunk is
    copied into one of two reusable pinned buffers and sent on a copy stream while the GPU
    still runs the previous chunk. Only uint8 pixels cross the bus (a quarter of float32)."""

    def __init__(self, torch: Any, device: str) -> None:
        self.torch, self.device = torch, device
        self.stream = torch.cuda.Stream(device=device)
        self.pinned: list[Any] = [None, None]
        self.copied = [torch.cuda.Event(), torch.cuda.Event()]

    def _send(self, chunk: np.ndarray, slot: int) -> Any:
        torch = self.torch
        buf = self.pinned[slot]
        if buf is None or buf.shape[0] < len(chunk) or buf.shape[1:] != chunk.shape[1:]:
            buf = self.pinned[slot] = torch.empty((max(len(chunk), CUDA_CHUNK), *chunk.shape[1:]),
                                                  dtype=torch.uint8, pin_memory=True)
        self.copied[slot].synchronize()  # the last copy out of this buffer has finished
        view = buf[: len(chunk)]
        view.numpy()[...] = chunk
        with torch.cuda.stream(self.stream):
            on_gpu = view.to(self.device, non_blocking=True)
            self.copied[slot].record(self.stream)
        return on_gpu

    def run(self, batch: np.ndarray, forward: Any) -> list[Any]:
        """``forward`` on each chunk of ``batch`` (device tensors out, not synchronised)."""
        compute = self.torch.cuda.current_stream(self.device)
        chunks = [batch[i : i + CUDA_CHUNK] for i in range(0, len(batch), CUDA_CHUNK)]
        nxt = self._send(chunks[0], 0)
        outs = []
        for i in range(len(chunks)):
            compute.wait_stream(self.stream)
            x = nxt
            x.record_stream(compute)
            if i + 1 < len(chunks):
                nxt = self._send(chunks[i + 1], (i + 1) % 2)
            outs.append(forward(x))
        return outs


class TorchHashModel(HashModel):
    backend = "torch"

    def __init__(self, config: BackboneConfig, heads: HeadsRef, device: str | None = None,
                 precision: str | None = None) -> None:
        import torch

        from model_runtime.model.torch_heads import load_heads

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
        self.preferred_batch = CUDA_BATCH if self._cuda else CPU_BATCH
        self._staging = CudaStaging(torch, self.device) if self._cuda else None
        self.encoder.model.visual.to(memory_format=torch.channels_last)

    def _normalise(self, tensor: Any) -> Any:
        """uint8 NHWC (on the device) -> normalised float NCHW, channels_last."""
        tensor = tensor.permute(0, 3, 1, 2).float()
        return ((tensor - self._mean) / self._std).contiguous(memory_format=self._torch.channels_last)

    def _forward(self, pixels: Any) -> tuple[Any, Any]:
        """Normalised pixels -> (tanh, projection or None), on the device."""
        torch = self._torch
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=self._autocast):
            feats = self.encoder.model.encode_image(pixels).float()
            if self.config.normalize_image:
                feats = torch.nn.functional.normalize(feats, dim=-1)
            if getattr(self.module, "proj_dim", 0):
                return self.module.encode_image(feats), self.module.project_image(feats)
            return self.module.encode_image(feats), None

    def _encode_batch(self, batch: np.ndarray) -> ImageOutputs:
        if self._cuda:
            parts = self._staging.run(batch, lambda x: self._forward(self._normalise(x)))
        else:
            parts = [self._forward(self._normalise(self._torch.from_numpy(batch)))]
        tanh = self._torch.cat([t for t, _ in parts]).float().cpu().numpy()
        proj = None
        if parts[0][1] is not None:
            proj = self._torch.cat([p for _, p in parts]).float().cpu().numpy().astype(np.float16)
        return ImageOutputs(tanh, proj)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.bits), np.float32)
        feats = self.encoder.encode_texts(list(texts))
        return self.module.encode_text_np(feats)

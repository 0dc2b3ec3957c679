"""What every inference backend provides: uint8 pixels or texts in, tanh outputs out.

Codes are never a backend's business: ``codes.pack(tanh)`` everywhere, so every backend's codes
follow one bit convention and agree wherever their floats agree in sign.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
from PIL import Image

from model_runtime.config import BackboneConfig, PreprocessCfg
from model_runtime.model.heads import HeadsRef
from model_runtime.protocol import ModelInfo


@dataclass(frozen=True)
class ImageOutputs:
    """Per image: the head's tanh outputs (float32 [N, bits]) and, when the heads carry one, the
    stored projection of the frozen features (float16 [N, proj_dim], else None)."""

    tanh: np.ndarray
    proj: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tanh)


def prepare_batch(images: Sequence[np.ndarray] | np.ndarray, pre: PreprocessCfg) -> np.ndarray:
    """Images (HxWx3 uint8 arrays or PIL images) -> one uint8 batch [N, S, S, 3], resized
    (whole image, no crop) where needed. A batch already of that shape passes through without
    a copy (tiles are read at the model's size)."""
    size = pre.size
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:] == (size, size, 3):
        return images if images.dtype == np.uint8 else images.astype(np.uint8)
    resample = getattr(Image.Resampling, pre.interpolation.upper())
    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
        pil = pil.convert("RGB")
        if pil.size != (size, size):
            pil = pil.resize((size, size), resample)
        batch[i] = np.asarray(pil)
    return batch


class HashModel(ABC):
    """One backbone + one heads file, ready to encode. Built by :func:`model.load_model`."""

    #: ``torch``, ``onnx``, ``openvino``
    backend: str = "?"
    #: ``fp32``, ``bf16``, ``fp16``, ``int8``
    precision: str = "fp32"
    #: image-encoding calls that run at once to good effect (:meth:`submit_images`); a backend
    #: with one engine pool that uses every core says 1
    lanes: int = 1

    def __init__(self, config: BackboneConfig, heads: HeadsRef, device: str) -> None:
        self.config = config
        self.heads = heads
        self.device = device

    @property
    def bits(self) -> int:
        return self.heads.bits

    @property
    def input_size(self) -> int:
        """Side of the square uint8 images the image graph takes."""
        return self.config.preprocess.size

    @property
    def info(self) -> ModelInfo:
        return self.heads.info(backend=self.backend, precision=self.precision, device=self.device)

    def prepare(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Images (HxWx3 uint8 arrays or PIL images) -> one uint8 batch [N, S, S, 3]."""
        return prepare_batch(images, self.config.preprocess)

    def encode_images(self, images: Sequence[np.ndarray] | np.ndarray) -> ImageOutputs:
        """Images -> tanh outputs (+ projection); see :meth:`prepare` for the input."""
        batch = self.prepare(images)
        if len(batch) == 0:
            empty = np.zeros((0, self.bits), np.float32)
            return ImageOutputs(empty, None if not self.heads.proj_dim else
                                np.zeros((0, self.heads.proj_dim), np.float16))
        return self._encode_batch(batch)

    def submit_images(self, images: Sequence[np.ndarray] | np.ndarray) -> Future:
        """:meth:`encode_images` as a future. Up to :attr:`lanes` calls run at once; this default
        runs the call here and returns it done."""
        future: Future = Future()
        try:
            future.set_result(self.encode_images(images))
        except BaseException as err:  # noqa: BLE001 - delivered through the future
            future.set_exception(err)
        return future

    @abstractmethod
    def _encode_batch(self, batch: np.ndarray) -> ImageOutputs:
        """uint8 [N, S, S, 3] -> outputs (N >= 1)."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 tanh outputs [N, bits]."""

    def warm_up(self) -> None:
        """Pay one-off set-up (allocators, kernels, tokenizer) now, not in a user's first query."""
        self.encode_texts(["warm up"])
        self.encode_images(np.zeros((1, self.input_size, self.input_size, 3), np.uint8))

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        """Release what the backend holds (sessions, GPU memory)."""

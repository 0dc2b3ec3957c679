"""The caption service: the caption bank hash-indexed with a model's text head, and the
captions nearest to a tile's or image's code.

Bank codes depend on the text head only: heads adapted to an archive keep the text head of the
heads they came from (``extra.text_head_from``), so they reuse its codes. Codes come from
``resources/captions`` (shipped heads), then the cache, else they are computed once with the
model's text side (about a minute with a compiled engine) and cached.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from model_runtime.captions import BANK_PATH, CaptionBank, bank_codes, codes_key, load_bank
from model_runtime.model import HashModel, HeadsRef
from model_runtime.paths import sha256_file
from model_runtime.protocol import Caption

LOG = logging.getLogger(__name__)

Progress = Callable[[dict], None]


def text_head_sha(heads: HeadsRef) -> str:
    """The SHA of the heads file whose text head these heads carry."""
    extra = heads.meta.get("extra") or {}
    return str(extra.get("text_head_from") or heads.sha)


def codes_file_key(heads: HeadsRef) -> str:
    return codes_key(heads.backbone, text_head_sha(heads), _bank_sha())


_BANK_SHA: list[str] = []


def _bank_sha() -> str:
    if not _BANK_SHA:
        _BANK_SHA.append(sha256_file(BANK_PATH))
    return _BANK_SHA[0]


class CaptionService:
    def __init__(self) -> None:
        self._banks: dict[str, CaptionBank] = {}
        self._captions: list[str] | None = None
        self._lock = threading.Lock()

    def bank(self, model: HashModel, progress: Progress | None = None) -> CaptionBank:
        """The bank indexed with ``model``'s text head (built once per text head)."""
        key = codes_file_key(model.heads)
        with self._lock:
            if key not in self._banks:
                captions = self._captions = self._captions or load_bank()
                codes = bank_codes(captions, key, model.bits // 8,
                                   lambda: self._encode(model, captions, progress))
                self._banks[key] = CaptionBank(captions, codes, model.bits)
            return self._banks[key]

    @staticmethod
    def _encode(model: HashModel, captions: list[str], progress: Progress | None,
                batch: int = 512) -> np.ndarray:
        LOG.info("encoding %d bank captions once for %s", len(captions), model.heads.path.name)
        parts = []
        for start in range(0, len(captions), batch):
            parts.append(model.encode_texts(captions[start : start + batch]))
            if progress is not None:
                progress({"stage": "captions", "done": min(start + batch, len(captions)),
                          "total": len(captions), "message": "encoding the caption bank (once)"})
        return np.concatenate(parts)

    def describe(self, model: HashModel, code: np.ndarray, k: int,
                 progress: Progress | None = None) -> list[Caption]:
        """The ``k`` bank captions nearest to one packed code, saying different things."""
        return self.bank(model, progress).search(code, k)

"""Text -> token ids without torch or transformers: the ``tokenizers`` package on the text
tower's own ``tokenizer.json``, cleaned and truncated exactly as the torch path does it
(``encoders.Encoder._tokenize``: open_clip's ``HFTokenizer`` cleaning, then the Hugging Face
tokenizer with ``max_length=context_length``, ``truncation=True``, ``padding="longest"``).
``tests/runtime/test_engines.py`` checks the ids are the same on the whole caption bank.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model_runtime.config import BackboneConfig, open_clip_model_cfg
from model_runtime.errors import ConfigError


def _fix_text(text: str) -> str:
    try:
        import ftfy
    except ImportError:  # pragma: no cover - ftfy comes with the pinned runtime
        return text
    return ftfy.fix_text(text)


#: printable ASCII without "&": text ftfy leaves as it is (nothing to repair, no entity); such
#: texts skip ftfy, whose import alone costs ~0.3 s of a worker's start
_PLAIN = re.compile(r"[\x20-\x25\x27-\x7e\t\n]*")


def clean(text: str) -> str:
    """open_clip's ``whitespace`` cleaning: ftfy, HTML unescape twice, collapse whitespace."""
    if not _PLAIN.fullmatch(text):
        text = html.unescape(html.unescape(_fix_text(text)))
    return " ".join(text.split()).strip()


def tokenizer_file(config: BackboneConfig) -> Path:
    """The ``tokenizer.json`` of ``config``'s Hugging Face text tower."""
    if config.open_clip is None:
        raise ConfigError(
            f"Backbone '{config.name}' uses open_clip's own tokenizer: the compiled backends "
            "need a Hugging Face text tower; use --backend torch.", code="backend_unavailable")
    text_cfg = open_clip_model_cfg(config)["text_cfg"]
    folder = text_cfg.get("hf_tokenizer_name") or text_cfg.get("hf_model_name") or ""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"Tokenizer file not found: {path}", code="backend_unavailable")
    return path


class TextTokenizer:
    """``__call__(texts) -> (input_ids, attention_mask)``, int64 ``[N, L]``, padded to the
    longest text of the call."""

    def __init__(self, config: BackboneConfig) -> None:
        from tokenizers import Tokenizer

        self.path = tokenizer_file(config)
        self.context_length = int(open_clip_model_cfg(config)["text_cfg"].get("context_length", 77))
        tok = Tokenizer.from_file(str(self.path))
        pad = tok.padding or {}
        tok.enable_truncation(max_length=self.context_length)
        tok.enable_padding(pad_id=int(pad.get("pad_id", 0)),
                           pad_token=str(pad.get("pad_token", "[PAD]")))
        self._tok = tok

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self._tok.encode_batch([clean(t) for t in texts])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        return ids, mask

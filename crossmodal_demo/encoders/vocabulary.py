"""A tag vocabulary embedded by a space's text encoder: zero-shot labels and a background of unrelated concepts.

The vocabulary is the 1000 ImageNet-1k classes, each named by its first WordNet lemma ("tabby",
"espresso", "mountain bike"; WordNet 3.0 data shipped in timm, Princeton licence) and written as
``"a photo of a {lemma}."``. Each space's text encoder embeds it once; the vectors are cached on disk
under a key of the exact texts and the model id, so a new model or template never reuses old vectors.

Two uses:

* **labels** — what the model saw in a picture: ConSE images report their classifier's own top
  classes (:meth:`~crossmodal_demo.encoders.conse.ConSEImage.labels`); other image encoders (CLIP)
  are tagged zero-shot: ``softmax(100 · cos(image, tag))`` over the vocabulary, top 5. Sounds with a
  CLAP vector are tagged the same way against the 50 ESC-50 classes ("the sound of rain.").
* **background** — unrelated concepts against which match strength is calibrated
  (:mod:`crossmodal_demo.retrieval.calibration`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossmodal_demo.encoders.base import Encoder, EncoderSet
from crossmodal_demo.encoders.conse import _wordnet

TAG_TEMPLATE = "a photo of a {}."
# Sound tags for CLAP: the 50 ESC-50 classes (Piczak 2015), the usual zero-shot benchmark of CLAP models.
SOUND_TAGS = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow", "rain", "sea waves",
    "crackling fire", "crickets", "chirping birds", "water drops", "wind", "pouring water", "toilet flush",
    "thunderstorm", "crying baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing",
    "brushing teeth", "snoring", "drinking, sipping", "door knock", "mouse click", "keyboard typing",
    "door creaks", "can opening", "washing machine", "vacuum cleaner", "clock alarm", "clock tick",
    "glass breaking", "helicopter", "chainsaw", "siren", "car horn", "engine", "train", "church bells",
    "airplane", "fireworks", "hand saw",
)
SOUND_TEMPLATE = "the sound of {}."
SOUND_SPACE = "clap"
LABELS_K = 5
CLIP_LOGIT_SCALE = 100.0  # CLIP's trained temperature: softmax(100 · cosine) is its zero-shot classifier
_MEMO: dict[tuple[str, str], np.ndarray] = {}
_MEMO_LOCK = threading.Lock()


def tag_names() -> list[str]:
    """The 1000 tag names (first WordNet lemma of each ImageNet class), in class order."""
    return list(_wordnet()[1])


def tag_texts(template: str = TAG_TEMPLATE) -> list[str]:
    """The exact texts the text encoders embed: ``template`` applied to each tag name."""
    return [template.format(n) for n in tag_names()]


def cached_text_vectors(text_encoder: Encoder, texts: Sequence[str], cache_dir: Path | str) -> np.ndarray:
    """``text_encoder.encode(texts)`` → float32 (n, dim), memoised in memory and on disk (content key)."""
    # the encoder's class is part of the key: a stand-in (test fake) sharing a model id never shares vectors
    who = f"{text_encoder.model_id}\x00{type(text_encoder).__module__}.{type(text_encoder).__qualname__}"
    key = hashlib.sha256(("\n".join(texts) + "\x00" + who).encode()).hexdigest()[:16]
    memo_key = (str(cache_dir), key)
    with _MEMO_LOCK:
        if memo_key in _MEMO:
            return _MEMO[memo_key]
    path = Path(cache_dir) / f"vocab-{key}.npy"
    vecs: np.ndarray | None = None
    if path.is_file():
        try:
            loaded = np.load(path)
            if loaded.shape == (len(texts), text_encoder.dim):
                vecs = loaded.astype(np.float32)
        except (OSError, ValueError):
            vecs = None  # a damaged cache is simply recomputed
    if vecs is None:
        vecs = np.asarray(text_encoder.encode(list(texts)), dtype=np.float32)
        try:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, vecs)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs the re-encoding next time
    with _MEMO_LOCK:
        _MEMO[memo_key] = vecs
    return vecs


def tag_vectors(encoders: EncoderSet, space: str) -> np.ndarray | None:
    """The vocabulary embedded by ``space``'s text encoder, float32 (1000, dim); None when the space has none."""
    text = encoders.text_encoder_for(space)
    if text is None:
        return None
    return cached_text_vectors(text, tag_texts(), encoders.config.cache_dir)


def zero_shot_labels(vectors: np.ndarray, tags: np.ndarray, names: Sequence[str], k: int = LABELS_K,
                     scale: float = CLIP_LOGIT_SCALE) -> list[list[tuple[str, float]]]:
    """Per row of ``vectors`` (n, dim), the ``k`` tags of highest ``softmax(scale · cosine)`` as (name, probability)."""
    V = np.asarray(vectors, dtype=np.float64)
    if V.ndim == 1:
        V = V[None, :]
    logits = scale * (V @ np.asarray(tags, dtype=np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(names[c], round(float(p[c]), 4)) for c in row] for p, row in zip(probs, top)]


def item_labels(encoders: EncoderSet, modality: str, data: Any, vectors: dict[tuple[str, str], np.ndarray],
                k: int = LABELS_K) -> list[tuple[str, float]] | None:
    """Top-``k`` zero-shot tags of one decoded item (images; sounds with CLAP), or None when no encoder can say.

    ``vectors`` are the item's ``{(space, channel): vector}``. An image encoder with a ``labels(batch, k)``
    capability (ConSE: its classifier's classes) answers first; otherwise the first space holding the
    image's content vector and a text encoder tags it zero-shot against the vocabulary. Audio with a
    CLAP vector is tagged against :data:`SOUND_TAGS` the same way (speech keeps its transcript too).
    """
    try:
        if modality == "audio":
            return _sound_labels(encoders, vectors, k)
        if modality != "image":
            return None
        return _labels(encoders, data, vectors, k)
    except Exception:  # noqa: BLE001 — labels are a courtesy: a failure must not lose the item or the query
        return None


def _sound_labels(encoders: EncoderSet, vectors: dict[tuple[str, str], np.ndarray], k: int) -> list[tuple[str, float]] | None:
    vec = vectors.get((SOUND_SPACE, "content"))
    text = encoders.text_encoder_for(SOUND_SPACE) if vec is not None else None
    if text is None:
        return None
    tags = cached_text_vectors(text, [SOUND_TEMPLATE.format(t) for t in SOUND_TAGS], encoders.config.cache_dir)
    return zero_shot_labels(vec, tags, SOUND_TAGS, k)[0]


def _labels(encoders: EncoderSet, data: Any, vectors: dict[tuple[str, str], np.ndarray], k: int) -> list[tuple[str, float]] | None:
    for spec in encoders.specs_for("image"):
        enc = encoders.get(spec.name)
        labels = getattr(enc, "labels", None)
        if callable(labels):
            return list(labels([data], k)[0])
    for spec in encoders.specs_for("image"):
        vec = vectors.get((spec.space, "content"))
        tags = tag_vectors(encoders, spec.space) if vec is not None else None
        if tags is not None:
            return zero_shot_labels(vec, tags, tag_names(), k)[0]
    return None

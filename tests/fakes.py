"""Fake encoders for fast tests: deterministic vectors with known geometry, no torch, no model files.

They plug into the dependency-injection point of :class:`crossmodal_demo.encoders.base.EncoderSet`
(``overrides``), keyed by the encoder names of the ``offline`` preset, so the collection manifest,
spaces and dims are exactly those of a real offline collection (one 384-d ``text`` space)::

    from tests.fakes import fake_overrides, write_fake_corpus
    from crossmodal_demo.retrieval.library import open_library

    folder = write_fake_corpus(tmp_path / "media")          # red.png, blue.png, ..., low.wav, notes
    lib = open_library(config, "c", preset="offline", create=True, overrides=fake_overrides())
    index_paths(lib.collection, lib.encoders, [folder], config)
    hits = lib.search.search(Query(text="red"), target="image").hits   # red.png first

Geometry (all vectors float32, 384-d, L2-normalised; "nothing to embed" is an all-zero row):

* **text** (:class:`FakeText`): hashed bag of lower-cased words (``[a-z0-9]+``) → one coordinate
  per word (:func:`text_vector`). Texts sharing words have a high cosine; texts with no word in
  common have cosine 0 (barring a hash collision among 384 buckets). ``max_tokens`` = 256 and
  ``count_tokens`` = number of words, like the real encoders' interface.
* **image** (:class:`FakeImage`, PIL RGB): the text vector of the name of the image's dominant
  colour in :data:`PALETTE` (``red``, ``green``, ``blue``, ``yellow``, ``black``, ``white``), so the
  text query "red" finds a red picture first (:func:`colour_image` makes one).
* **audio** (:class:`FakeAudio`, :class:`crossmodal_demo.ingest.media.Audio`): a "transcript" from the
  dominant frequency — below 400 Hz ``"low"``, below 2000 Hz ``"middle"``, else ``"high"``; a silent
  or empty clip gets ``""`` and a zero vector (like "no speech found"). It fills ``clip.transcript``
  (unless already set) and returns the text vector of it (:func:`tone` / :func:`silence` make clips).

Every fake reports ``is_loaded`` False until its first ``encode`` call (for lazy-loading tests).
:func:`fake_overrides` returns fresh instances each call.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

DIM = 384
SPACE = "text"
# The offline preset's encoder names (tests/test_structure.py checks they still match the preset).
TEXT_NAME, IMAGE_NAME, AUDIO_NAME = "minilm-text", "conse-effnet-lite0", "whisper-tiny-en-transcript"
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
}
TONE_BANDS: tuple[tuple[float, str], ...] = ((400.0, "low"), (2000.0, "middle"), (float("inf"), "high"))
SILENCE = 1e-3  # peak amplitude below which a clip counts as silent


def words(text: str) -> list[str]:
    """Lower-cased ``[a-z0-9]+`` words of ``text``."""
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def _bucket(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % DIM


def text_vector(text: str) -> np.ndarray:
    """float32 (384,): hashed bag of words, L2-normalised; all zeros for a text with no word."""
    v = np.zeros(DIM, dtype=np.float32)
    for w in words(text):
        v[_bucket(w)] += 1.0
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def dominant_colour(image: Any) -> str:
    """Name of the :data:`PALETTE` colour most pixels of a PIL image are closest to."""
    px = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.float32).reshape(-1, 3)
    ref = np.array(list(PALETTE.values()), dtype=np.float32)
    nearest = np.argmin(((px[:, None, :] - ref[None, :, :]) ** 2).sum(-1), axis=1)
    return list(PALETTE)[int(np.bincount(nearest, minlength=len(ref)).argmax())]


def tone_word(samples: np.ndarray, sr: int) -> str:
    """``"low"`` / ``"middle"`` / ``"high"`` by the dominant frequency; ``""`` for silence or no samples."""
    x = np.asarray(samples, dtype=np.float32)
    if x.size == 0 or float(np.max(np.abs(x))) < SILENCE:
        return ""
    spectrum = np.abs(np.fft.rfft(x))
    freq = float(np.fft.rfftfreq(x.size, 1.0 / sr)[int(spectrum[1:].argmax()) + 1])
    return next(word for limit, word in TONE_BANDS if freq < limit)


class _Fake:
    """Common attributes of the fakes (those of :class:`crossmodal_demo.encoders.base.Encoder`)."""

    modality = ""
    name = ""

    def __init__(self) -> None:
        self.space, self.dim, self.model_id = SPACE, DIM, f"fake:{self.name}"
        self.calls = 0  # encode() calls, for tests that check caching / lazy use

    @property
    def is_loaded(self) -> bool:
        """False until the first encode (mimics lazy model loading)."""
        return self.calls > 0


class FakeText(_Fake):
    """Text → hashed bag of words (see :func:`text_vector`)."""

    modality, name = "text", TEXT_NAME
    max_tokens = 256

    def count_tokens(self, text: str) -> int:
        """Words in ``text``."""
        return len(words(text))

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """Texts → float32 (n, 384); texts with no word give zero rows."""
        self.calls += 1
        return np.stack([text_vector(t) for t in batch]) if len(batch) else np.zeros((0, DIM), np.float32)


class FakeImage(_Fake):
    """PIL image → text vector of its dominant colour's name."""

    modality, name = "image", IMAGE_NAME

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """Images → float32 (n, 384)."""
        self.calls += 1
        return np.stack([text_vector(dominant_colour(im)) for im in batch]) if len(batch) else np.zeros((0, DIM), np.float32)


class FakeAudio(_Fake):
    """Audio → "transcript" from its dominant frequency band, embedded as text; silence → zero row."""

    modality, name = "audio", AUDIO_NAME

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """Clips → float32 (n, 384); fills ``clip.transcript`` when it is None."""
        self.calls += 1
        for clip in batch:
            if clip.transcript is None:
                clip.transcript = tone_word(clip.samples, clip.sr)
        return np.stack([text_vector(c.transcript or "") for c in batch]) if len(batch) else np.zeros((0, DIM), np.float32)


def fake_overrides() -> dict[str, Any]:
    """Fresh fakes keyed by the offline preset's encoder names, for ``EncoderSet(..., overrides)`` /
    ``open_library(..., preset="offline", overrides=...)``."""
    return {TEXT_NAME: FakeText(), IMAGE_NAME: FakeImage(), AUDIO_NAME: FakeAudio()}


# ------------------------------------------------------------------------------------ media makers
def colour_image(colour: str, size: tuple[int, int] = (48, 32)) -> Any:
    """A PIL RGB image filled with the :data:`PALETTE` colour ``colour``."""
    from PIL import Image

    return Image.new("RGB", size, PALETTE[colour])


def tone(freq: float, seconds: float = 0.5, sr: int = 16000) -> np.ndarray:
    """float32 sine samples at ``freq`` Hz (amplitude 0.5)."""
    t = np.arange(int(seconds * sr), dtype=np.float32) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float = 0.5, sr: int = 16000) -> np.ndarray:
    """float32 zeros."""
    return np.zeros(int(seconds * sr), dtype=np.float32)


TONES = {"low": 200.0, "middle": 800.0, "high": 4000.0}
TEXTS = {
    "cats.txt": "a cat sleeps on the sofa",
    "dogs.txt": "the dog runs in the park",
    "red_note.md": "notes about a red door",
}


def write_fake_corpus(folder: Path, sr: int = 16000) -> Path:
    """Write a small corpus the fakes understand into ``folder``; returns it.

    ``red.png``, ``green.png``, ``blue.png`` (solid colours), ``low.wav`` / ``middle.wav`` / ``high.wav``
    (tones: transcripts "low", "middle", "high"), ``quiet.wav`` (silence: "no speech found"), and the
    texts of :data:`TEXTS`.
    """
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for c in ("red", "green", "blue"):
        colour_image(c).save(folder / f"{c}.png")
    for word, f in TONES.items():
        sf.write(folder / f"{word}.wav", tone(f, sr=sr), sr)
    sf.write(folder / "quiet.wav", silence(sr=sr), sr)
    for name, text in TEXTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder

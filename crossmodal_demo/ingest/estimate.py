"""How many bytes decoding a file will hold, from its header only (no pixel or sample is decoded).

The indexing pipeline reserves this much of ``Config.max_decoded_in_flight_mb``
(CROSSMODAL_MAX_DECODED_IN_FLIGHT_MB) before it hands a file to the decode pool, so the decoded media held
at once across the pool and the batch being encoded stays bounded, whatever the files are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal_demo.ingest.audio import AudioLimits, check_audio_file
from crossmodal_demo.ingest.media import ImageLimits, check_image_file

if TYPE_CHECKING:
    from crossmodal_demo.config import Config

# A text file is read whole (its bytes), decoded (≤ 4 bytes per character in CPython) and stripped (a
# second string): at most 1 + 4 + 4 bytes per byte of file.
TEXT_BYTES_PER_FILE_BYTE = 9


def estimate_decoded_bytes(path: Path, modality: str, config: "Config", target_sr: int = 16000) -> int:
    """Peak bytes decoding ``path`` (``"image"`` | ``"audio"`` | ``"text"``) allocates, from its header.

    Images: Pillow's storage of the mode plus the reduction and RGB conversion (:func:`check_image_file`);
    audio: the mono float32 clip at ``target_sr`` Hz twice plus one block (:meth:`AudioInfo.decoded_bytes`);
    text: 9 × the file size. Raises :class:`~crossmodal_demo.errors.MediaError` when the header alone
    already breaks a per-file budget (the same refusal decoding would give), ``OSError`` when unreadable.
    """
    path = Path(path)
    if modality == "image":
        return check_image_file(path, ImageLimits.from_config(config)).decoded_bytes
    if modality == "audio":
        return check_audio_file(path, AudioLimits.from_config(config)).decoded_bytes(target_sr)
    return path.stat().st_size * TEXT_BYTES_PER_FILE_BYTE

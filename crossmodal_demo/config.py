"""Run-time settings: one frozen dataclass, overridable from ``CROSSMODAL_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    from .ann import IndexPolicy


@dataclass(frozen=True)
class Config:
    """Limits and locations used by loading, indexing and search.

    Units: pixels in megapixels (Mpx), durations in seconds, sizes in bytes.
    """

    indexes_dir: Path = Path("indexes")
    max_image_mpx: float = 100.0
    max_audio_seconds: float = 600.0
    max_file_bytes: int = 512 * 1024 * 1024
    max_caption_chars: int = 2000
    batch_size: int = 16
    decode_workers: int = 2
    conse_top_t: int = 10
    index_kind: str = "auto"
    ivf_min_items: int = 100_000
    ivf_nprobe: int = 0  # 0: automatic (see ann.IndexPolicy)

    @property
    def cache_dir(self) -> Path:
        """Where derived, shareable artefacts live (e.g. ConSE class-name embeddings)."""
        return Path(os.environ.get("CROSSMODAL_CACHE", self.indexes_dir / ".cache"))

    @property
    def index_policy(self) -> "IndexPolicy":
        """Index choice by partition size (see :mod:`crossmodal_demo.ann`)."""
        from .ann import IndexPolicy

        return IndexPolicy(kind=self.index_kind, ivf_min_items=self.ivf_min_items, nprobe=self.ivf_nprobe)


# env var → (field, type). Kept explicit so the README can list them.
_ENV = {
    "CROSSMODAL_INDEXES": ("indexes_dir", Path),
    "CROSSMODAL_MAX_IMAGE_MPX": ("max_image_mpx", float),
    "CROSSMODAL_MAX_AUDIO_SECONDS": ("max_audio_seconds", float),
    "CROSSMODAL_MAX_FILE_BYTES": ("max_file_bytes", int),
    "CROSSMODAL_BATCH_SIZE": ("batch_size", int),
    "CROSSMODAL_DECODE_WORKERS": ("decode_workers", int),
    "CROSSMODAL_CONSE_TOP_T": ("conse_top_t", int),
    "CROSSMODAL_INDEX_KIND": ("index_kind", str),
    "CROSSMODAL_IVF_MIN_ITEMS": ("ivf_min_items", int),
    "CROSSMODAL_IVF_NPROBE": ("ivf_nprobe", int),
}


def load_config(**overrides: object) -> Config:
    """Build a Config from defaults, then ``CROSSMODAL_*`` env vars, then explicit ``overrides`` (None ignored)."""
    values: dict[str, object] = {}
    for env, (field, typ) in _ENV.items():
        raw = os.environ.get(env)
        if raw is None or raw == "":
            continue
        try:
            values[field] = typ(raw)
        except ValueError:
            raise UserError(f"{env}={raw!r} is not a valid {typ.__name__}.") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("index_kind", "auto") not in ("auto", "flat", "ivf"):
        raise UserError(f"Index kind {values['index_kind']!r} is not one of: auto, flat, ivf (CROSSMODAL_INDEX_KIND).")
    if "indexes_dir" in values:
        values["indexes_dir"] = Path(values["indexes_dir"])  # type: ignore[arg-type]
    return dataclasses.replace(Config(), **values)  # type: ignore[arg-type]

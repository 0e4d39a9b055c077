"""Run-time settings: one frozen dataclass, read once from the environment and passed down.

This is the only module that reads ``os.environ`` (a test enforces it). Every ``CROSSMODAL_*``
variable, the model choices, the device and the Hugging Face offline switches are parsed here;
everything else receives a :class:`Config`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from crossmodal_demo.errors import UserError

MB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    """Limits, locations, model choices and app settings.

    Units: pixels in megapixels (Mpx), durations in seconds, sizes in bytes unless the name says MB.
    """

    # --- locations
    indexes_dir: Path = Path("indexes")
    cache_dir_override: Path | None = None  # CROSSMODAL_CACHE; default <indexes>/.cache
    # --- ingest budgets
    max_image_mpx: float = 100.0
    max_decoded_mb: float = 1024.0  # decoded bytes of one image (pixels × bytes per pixel)
    max_audio_seconds: float = 600.0
    max_query_audio_seconds: float = 60.0
    max_file_bytes: int = 512 * MB
    max_caption_chars: int = 2000
    max_query_chars: int = 2000
    max_manifest_bytes: int = 10 * MB  # captions.csv / captions.jsonl / qrels files
    max_qrels_queries: int = 1000
    max_audio_sample_rate: int = 192_000  # Hz, of the file as stored
    max_audio_channels: int = 8
    max_text_bytes: int = 10 * MB  # one text file / note
    max_decoded_in_flight_mb: float = 1024.0  # decoded bytes held at once across the decode pool
    # --- indexing
    batch_size: int = 16
    decode_workers: int = 2
    conse_top_t: int = 10
    index_kind: str = "auto"
    ivf_min_items: int = 100_000
    ivf_nprobe: int = 0  # 0: automatic (see faiss_index.IndexPolicy)
    compress_min_items: int = 1_000_000  # 'auto' switches to the compressed kind at this size
    # --- stores and engines (scale-out)
    store: str = "sqlite"  # sqlite (SQLite + FAISS) | milvus — for new collections
    milvus_uri: str = ""  # a local file path means Milvus Lite
    engine: str = "local"  # local | ray
    ray_address: str | None = None
    # --- retrieval
    fusion: str | None = None  # None: the default method chosen by the demo benchmark
    # --- models (presets are a pure function of these)
    preset: str | None = None  # None: auto (for new collections)
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    clap_model: str = "laion/clap-htsat-fused"
    whisper_model: str = "bundled"
    whisper_language: str | None = None
    device: str = "auto"  # auto | cpu | cuda
    hub_offline: bool = False  # HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE
    hf_home: str = ""  # for messages only (huggingface_hub reads HF_HOME itself)
    hub_probe_seconds: float = 3.0
    hub_probe_ttl: float = 60.0  # a probe answer is reused this long, never forever
    # --- the app
    host: str | None = None
    port: int | None = None
    share: bool = False
    collection: str | None = None  # collection a visitor starts on (default: demo)
    public: bool = False  # public (Spaces) mode: read-only shared collections, private workspaces
    folder_roots: tuple[Path, ...] = ()  # --allow-folder-indexing DIR ...: the only folders the UI may index
    workspace_ttl: float = 3600.0  # idle seconds before a visitor's workspace is deleted
    workspace_max_files: int = 200
    workspace_max_bytes: int = 200 * MB
    max_workspaces: int = 50
    max_open_collections: int = 8
    max_upload_files: int = 5000  # local mode, per upload
    max_upload_bytes: int = 2048 * MB  # local mode, per upload
    queue_max_size: int = 64
    gradio_cache_seconds: int = 3600  # uploads in Gradio's cache older than this are deleted

    @property
    def cache_dir(self) -> Path:
        """Where derived, shareable artefacts live (e.g. ConSE class-name embeddings)."""
        return Path(self.cache_dir_override) if self.cache_dir_override else Path(self.indexes_dir) / ".cache"

    @property
    def force_cpu(self) -> bool:
        """True when CROSSMODAL_DEVICE=cpu."""
        return self.device == "cpu"


def _bool(raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _roots(raw: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip())


def _opt_str(raw: str) -> str | None:
    return raw.strip() or None


# env var → (field, parser). Kept explicit so the README can list them.
ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "CROSSMODAL_INDEXES": ("indexes_dir", Path),
    "CROSSMODAL_CACHE": ("cache_dir_override", Path),
    "CROSSMODAL_MAX_IMAGE_MPX": ("max_image_mpx", float),
    "CROSSMODAL_MAX_DECODED_MB": ("max_decoded_mb", float),
    "CROSSMODAL_MAX_AUDIO_SECONDS": ("max_audio_seconds", float),
    "CROSSMODAL_MAX_QUERY_AUDIO_SECONDS": ("max_query_audio_seconds", float),
    "CROSSMODAL_MAX_FILE_BYTES": ("max_file_bytes", int),
    "CROSSMODAL_MAX_CAPTION_CHARS": ("max_caption_chars", int),
    "CROSSMODAL_MAX_QUERY_CHARS": ("max_query_chars", int),
    "CROSSMODAL_MAX_MANIFEST_BYTES": ("max_manifest_bytes", int),
    "CROSSMODAL_MAX_QRELS_QUERIES": ("max_qrels_queries", int),
    "CROSSMODAL_MAX_AUDIO_SAMPLE_RATE": ("max_audio_sample_rate", int),
    "CROSSMODAL_MAX_AUDIO_CHANNELS": ("max_audio_channels", int),
    "CROSSMODAL_MAX_TEXT_BYTES": ("max_text_bytes", int),
    "CROSSMODAL_MAX_DECODED_IN_FLIGHT_MB": ("max_decoded_in_flight_mb", float),
    "CROSSMODAL_BATCH_SIZE": ("batch_size", int),
    "CROSSMODAL_DECODE_WORKERS": ("decode_workers", int),
    "CROSSMODAL_CONSE_TOP_T": ("conse_top_t", int),
    "CROSSMODAL_INDEX_KIND": ("index_kind", str),
    "CROSSMODAL_IVF_MIN_ITEMS": ("ivf_min_items", int),
    "CROSSMODAL_IVF_NPROBE": ("ivf_nprobe", int),
    "CROSSMODAL_COMPRESS_MIN_ITEMS": ("compress_min_items", int),
    "CROSSMODAL_STORE": ("store", lambda s: s.strip().lower()),
    "CROSSMODAL_MILVUS_URI": ("milvus_uri", str),
    "CROSSMODAL_ENGINE": ("engine", lambda s: s.strip().lower()),
    "CROSSMODAL_RAY_ADDRESS": ("ray_address", _opt_str),
    "CROSSMODAL_FUSION": ("fusion", _opt_str),
    "CROSSMODAL_PRESET": ("preset", _opt_str),
    "CROSSMODAL_CLIP_MODEL": ("clip_model", str),
    "CROSSMODAL_CLIP_PRETRAINED": ("clip_pretrained", str),
    "CROSSMODAL_CLAP_MODEL": ("clap_model", str),
    "CROSSMODAL_WHISPER_MODEL": ("whisper_model", str),
    "CROSSMODAL_WHISPER_LANGUAGE": ("whisper_language", _opt_str),
    "CROSSMODAL_DEVICE": ("device", lambda s: s.strip().lower()),
    "CROSSMODAL_HUB_PROBE_TTL": ("hub_probe_ttl", float),
    "CROSSMODAL_HOST": ("host", _opt_str),
    "CROSSMODAL_PORT": ("port", int),
    "CROSSMODAL_SHARE": ("share", _bool),
    "CROSSMODAL_COLLECTION": ("collection", _opt_str),
    "CROSSMODAL_PUBLIC": ("public", _bool),
    "CROSSMODAL_ALLOW_FOLDER_INDEXING": ("folder_roots", _roots),
    "CROSSMODAL_WORKSPACE_TTL": ("workspace_ttl", float),
    "CROSSMODAL_WORKSPACE_MAX_FILES": ("workspace_max_files", int),
    "CROSSMODAL_WORKSPACE_MAX_BYTES": ("workspace_max_bytes", int),
    "CROSSMODAL_MAX_WORKSPACES": ("max_workspaces", int),
    "CROSSMODAL_MAX_OPEN_COLLECTIONS": ("max_open_collections", int),
    "CROSSMODAL_MAX_UPLOAD_FILES": ("max_upload_files", int),
    "CROSSMODAL_MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "CROSSMODAL_QUEUE_MAX_SIZE": ("queue_max_size", int),
    "CROSSMODAL_GRADIO_CACHE_SECONDS": ("gradio_cache_seconds", int),
}
# Numbers that must be finite and > 0 (0 allowed where the field says "automatic").
POSITIVE = {
    "max_image_mpx", "max_decoded_mb", "max_audio_seconds", "max_query_audio_seconds", "max_file_bytes",
    "max_caption_chars", "max_query_chars", "max_manifest_bytes", "max_qrels_queries", "batch_size",
    "max_audio_sample_rate", "max_audio_channels", "max_text_bytes", "max_decoded_in_flight_mb", "compress_min_items",
    "decode_workers", "conse_top_t", "ivf_min_items", "workspace_ttl", "workspace_max_files",
    "workspace_max_bytes", "max_workspaces", "max_open_collections", "max_upload_files", "max_upload_bytes",
    "queue_max_size", "gradio_cache_seconds", "hub_probe_seconds",
}
NON_NEGATIVE = {"ivf_nprobe", "hub_probe_ttl"}
INDEX_KINDS = ("auto", "flat", "ivf", "ivfsq8")  # ivfsq8: compressed IVF, re-ranked exactly
STORES = ("sqlite", "milvus")
ENGINES = ("local", "ray")
DEVICES = ("auto", "cpu", "cuda")
_TRUE = ("1", "ON", "YES", "TRUE")


def env_name(field_name: str) -> str:
    """The environment variable that sets ``field_name`` (for error messages), or the field name."""
    return next((e for e, (f, _) in ENV.items() if f == field_name), field_name)


def load_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Defaults, then ``CROSSMODAL_*`` variables of ``environ`` (default ``os.environ``), then
    ``overrides`` (None values ignored). Every number is checked (finite, positive where it must be)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (fname, parse) in ENV.items():
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            values[fname] = parse(raw)
        except ValueError:
            kind = {int: "whole number", float: "number", _bool: "1 or 0"}.get(parse, "value")  # type: ignore[call-overload]
            raise UserError(f"{name}={raw!r} is not a valid {kind}.") from None
    # Hugging Face Spaces set SPACE_ID: public mode is on there unless CROSSMODAL_PUBLIC says otherwise.
    if "public" not in values and env.get("SPACE_ID"):
        values["public"] = True
    values["hub_offline"] = any(env.get(v, "").strip().upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    values["hf_home"] = env.get("HF_HOME", "") or "~/.cache/huggingface"
    if "indexes_dir" not in values and Path("/data").is_dir() and env.get("SPACE_ID"):
        values["indexes_dir"] = Path("/data/indexes")  # Spaces persistent storage, when attached
    values.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("indexes_dir", "cache_dir_override"):
        if values.get(k) is not None:
            values[k] = Path(values[k])
    if "folder_roots" in values:
        values["folder_roots"] = tuple(Path(p).expanduser() for p in values["folder_roots"])
    cfg = dataclasses.replace(Config(), **values)
    check_config(cfg)
    return cfg


def check_config(cfg: Config) -> None:
    """Refuse settings that would silently disable a limit (nan, inf, zero or negative budgets)."""
    for f in dataclasses.fields(cfg):
        if f.name not in POSITIVE and f.name not in NON_NEGATIVE:
            continue
        v = getattr(cfg, f.name)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > 0 if f.name in POSITIVE else v >= 0)
        if not ok:
            rule = "a finite number above 0" if f.name in POSITIVE else "a finite number ≥ 0"
            raise UserError(f"{f.name.replace('_', ' ')} must be {rule} (got {v!r}; set by {env_name(f.name)}).")
    if cfg.index_kind not in INDEX_KINDS:
        raise UserError(f"Index kind {cfg.index_kind!r} is not one of: {', '.join(INDEX_KINDS)} (CROSSMODAL_INDEX_KIND).")
    if cfg.store not in STORES:
        raise UserError(f"Store {cfg.store!r} is not one of: {', '.join(STORES)} (CROSSMODAL_STORE / --store).")
    if cfg.engine not in ENGINES:
        raise UserError(f"Engine {cfg.engine!r} is not one of: {', '.join(ENGINES)} (CROSSMODAL_ENGINE / --engine).")
    if cfg.device not in DEVICES:
        raise UserError(f"Device {cfg.device!r} is not one of: {', '.join(DEVICES)} (CROSSMODAL_DEVICE).")
    if cfg.port is not None and not 0 < cfg.port < 65536:
        raise UserError(f"Port {cfg.port} is not between 1 and 65535 (CROSSMODAL_PORT / --port).")


def apply_process_defaults() -> None:
    """Process-wide defaults for libraries we embed (entry points call this once, before importing them).

    Tokenizers' own thread pool fights torch for 2 cores and warns after fork; Gradio must not phone home.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

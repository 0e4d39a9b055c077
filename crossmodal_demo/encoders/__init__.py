"""Encoders, their registry and the presets. Importing this registers the built-in presets (no model loads)."""

from crossmodal_demo.encoders import offline  # noqa: F401  (registers the offline preset)
from crossmodal_demo.encoders import hub  # noqa: F401  (registers the clip preset and lists auto; needs offline's minilm-text)
from crossmodal_demo.encoders.base import ENCODERS, PRESETS, Encoder, EncoderSet, EncoderSpec, Preset, get_preset, l2_normalise

__all__ = ["ENCODERS", "PRESETS", "Encoder", "EncoderSet", "EncoderSpec", "Preset", "get_preset", "l2_normalise"]

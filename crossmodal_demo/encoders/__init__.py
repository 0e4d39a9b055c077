"""Encoders: media → L2-normalised float32 vectors, one module per model family.

``base`` (Encoder protocol, EncoderSpec, Preset, EncoderSet, shared model holders), ``presets``
(offline / clip / auto as a pure function of the settings), ``offline`` (the bundled preset's specs),
``weights`` (Hugging Face cache, hub probe, downloads), ``catalog`` (published numbers, weights
status), ``device``, and the families ``sbert``, ``conse``, ``asr``, ``open_clip``, ``clap``.
Importing this package loads no model and registers nothing.
"""

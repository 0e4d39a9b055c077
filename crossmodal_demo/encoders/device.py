"""Where models run: CUDA with half precision when a GPU is present, otherwise CPU, chosen silently.

Everything here is guarded so a CPU-only machine (or a torch build without GPU support) takes the
CPU path with no warning and no error. ``config.device`` (``CROSSMODAL_DEVICE``) ``cpu`` forces the
CPU even with a GPU. FAISS GPU copies live in :mod:`crossmodal_demo.index.faiss_index`.
"""

from __future__ import annotations

from typing import Any

from crossmodal_demo.config import Config


def torch_device(config: Config) -> str:
    """``"cuda"`` when torch sees a GPU (and ``config.device`` is not ``cpu``), else ``"cpu"``."""
    if config.device == "cpu":
        return "cpu"
    try:
        import torch  # lazy: torch is heavy and only needed once a model loads

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # a broken CUDA install must not stop CPU use
        return "cpu"


def torch_dtype(device: str) -> Any:
    """float16 on CUDA (half the memory, tensor cores), float32 on CPU (fp16 matmuls are slow there)."""
    import torch  # lazy: heavy library

    return torch.float16 if device.startswith("cuda") else torch.float32


def open_clip_precision(device: str) -> str:
    """open_clip's ``precision`` argument for ``device``: ``"fp16"`` on CUDA, ``"fp32"`` on CPU."""
    return "fp16" if device.startswith("cuda") else "fp32"


def whisper_compute(device: str) -> tuple[str, str]:
    """(device, compute_type) for faster-whisper: float16 on CUDA, int8 on CPU (fastest there)."""
    return ("cuda", "float16") if device.startswith("cuda") else ("cpu", "int8")

"""Where models run: CUDA with half precision when a GPU is present, otherwise CPU, chosen silently.

Everything here is guarded so a CPU-only machine (or a torch/faiss build without GPU support) takes
the CPU path with no warning and no error. ``CROSSMODAL_DEVICE=cpu`` forces the CPU even with a GPU.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()
_faiss_resources: Any = None


def torch_device() -> str:
    """``"cuda"`` when torch sees a GPU (and ``CROSSMODAL_DEVICE`` does not say ``cpu``), else ``"cpu"``."""
    wanted = os.environ.get("CROSSMODAL_DEVICE", "auto").strip().lower()
    if wanted == "cpu":
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # a broken CUDA install must not stop CPU use
        return "cpu"


def torch_dtype(device: str) -> Any:
    """float16 on CUDA (half the memory, tensor cores), float32 on CPU (fp16 matmuls are slow there)."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


def open_clip_precision(device: str) -> str:
    """open_clip's ``precision`` argument for ``device``: ``"fp16"`` on CUDA, ``"fp32"`` on CPU."""
    return "fp16" if device.startswith("cuda") else "fp32"


def whisper_compute(device: str) -> tuple[str, str]:
    """(device, compute_type) for faster-whisper: float16 on CUDA, int8 on CPU (fastest there)."""
    return ("cuda", "float16") if device.startswith("cuda") else ("cpu", "int8")


def faiss_has_gpu(faiss: Any) -> bool:
    """True when this faiss build has GPU support and sees at least one GPU (faiss-gpu is optional)."""
    try:
        return hasattr(faiss, "StandardGpuResources") and int(faiss.get_num_gpus()) > 0
    except Exception:
        return False


def index_to_gpu(faiss: Any, index: Any) -> Any:
    """A GPU clone of ``index`` when faiss has GPU support, else ``index`` itself (the CPU copy stays the truth).

    Call it only for searching: the stored index is always the CPU one, so files on disk never depend
    on a GPU. Any failure (out of memory, unsupported index type) silently keeps the CPU index.
    """
    global _faiss_resources
    if os.environ.get("CROSSMODAL_DEVICE", "auto").strip().lower() == "cpu" or not faiss_has_gpu(faiss):
        return index
    try:
        with _lock:
            if _faiss_resources is None:
                _faiss_resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(_faiss_resources, 0, index)
    except Exception:
        return index

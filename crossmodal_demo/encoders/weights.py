"""Model weights from the Hugging Face hub: cache look-up, a hub probe with a short expiry, downloads.

Weights live in the Hugging Face cache (``HF_HOME``), so ``python -m crossmodal_demo download`` on a
connected machine followed by copying that cache is enough to work offline. Nothing here touches the
network unless a file is missing from the cache and the hub answered a probe (or a download was
asked for). The probe's answer is reused for ``config.hub_probe_ttl`` seconds, never longer.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError

T = TypeVar("T")

# Small files a hub snapshot needs besides the weights (configs, tokenizers); never the weights.
SNAPSHOT_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]
PROBE_REPO, PROBE_FILE = "laion/clap-htsat-fused", "config.json"


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
        from huggingface_hub import try_to_load_from_cache  # lazy: only hub presets need it

        for name in self.alternatives:
            path = try_to_load_from_cache(self.repo, name)
            if isinstance(path, str) and os.path.isfile(path):
                return path
        return None

    def fetch(self) -> str:
        """Download into the Hugging Face cache (or reuse it); returns the local path."""
        from huggingface_hub import hf_hub_download, snapshot_download  # lazy: only hub presets need it
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


_probe: tuple[float, bool, str] | None = None  # (monotonic time, reachable, why)
_probe_lock = threading.Lock()


def forget_probe() -> None:
    """Drop the cached probe answer (the next :func:`hub_reachable` asks the hub again)."""
    global _probe
    with _probe_lock:
        _probe = None


def hub_reachable(config: Config) -> tuple[bool, str]:
    """(reachable, why) for the Hugging Face hub, answered within ``config.hub_probe_seconds``.

    The answer is cached for ``config.hub_probe_ttl`` seconds (a short time, so a network that comes
    back is noticed). The request runs in a daemon thread so even a hanging DNS lookup cannot hold
    the caller longer than the timeout.
    """
    global _probe
    if config.hub_offline:
        return False, "HF_HUB_OFFLINE=1 is set"
    with _probe_lock:
        if _probe is not None and time.monotonic() - _probe[0] < config.hub_probe_ttl:
            return _probe[1], _probe[2]
        timeout = config.hub_probe_seconds
        result: list[tuple[bool, str]] = []

        def probe() -> None:
            try:
                from huggingface_hub import get_hf_file_metadata, hf_hub_url  # lazy: only hub presets need it

                get_hf_file_metadata(hf_hub_url(PROBE_REPO, PROBE_FILE), timeout=timeout)
                result.append((True, "the Hugging Face hub answered"))
            except Exception as exc:  # any failure means "not usable now"; the message says which
                result.append((False, f"the Hugging Face hub did not answer ({type(exc).__name__}: {str(exc)[:120]})"))

        t = threading.Thread(target=probe, name="hub-probe", daemon=True)
        t.start()
        t.join(timeout + 0.5)
        ok, why = result[0] if result else (False, f"the Hugging Face hub did not answer within {timeout:.0f} s")
        _probe = (time.monotonic(), ok, why)
        return ok, why


def missing_weights_error(missing: list[str], why: str, config: Config) -> UserError:
    """The one message for "clip weights cannot be had here": what is missing and the two ways out."""
    return UserError(
        f"The clip preset needs model weights that are not in the local Hugging Face cache "
        f"({config.hf_home or '~/.cache/huggingface'}): {', '.join(missing)}; and {why}. "
        "Either run `python -m crossmodal_demo download --preset clip` on a connected machine and copy its "
        "Hugging Face cache folder here (or point HF_HOME at it), or use --preset offline."
    )


def cached_or_fetch(
    cached: Callable[[], T | None], fetch: Callable[[], T], missing: Callable[[], list[str]], config: Config
) -> T:
    """Local weights when ``cached()`` finds them; else ``fetch()`` them if the hub answers; else the
    clear missing-weights error naming ``missing()`` and the ways out."""
    found = cached()
    if found is not None:
        return found
    ok, why = hub_reachable(config)
    if not ok:
        raise missing_weights_error(missing(), why, config)
    return fetch()

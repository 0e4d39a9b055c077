"""A query and every check on it, in one place: exactly one input, the target, k and the text budget.

The CLI, the app, the lab and evaluation all validate through these functions, so each mistake has
one message. Messages never echo a (possibly huge) query text back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.ingest.media import MODALITIES

TARGETS = ("image", "text", "audio", "any")
CHANNELS = ("content", "caption")


@dataclass
class Query:
    """Exactly one of ``text``, ``image`` (path or PIL image) or ``audio`` (path or decoded Audio)."""

    text: str | None = None
    image: Any = None
    audio: Any = None

    @property
    def modality(self) -> str:
        """'text' | 'image' | 'audio'; raises UserError unless exactly one is given."""
        given = [m for m, v in (("text", self.text), ("image", self.image), ("audio", self.audio)) if v not in (None, "")]
        if len(given) != 1:
            raise UserError(
                "Give exactly one query: --text \"...\", --image FILE or --audio FILE"
                + (f" (got {', '.join(given)})." if given else ".")
            )
        return given[0]

    def check(self, config: Config) -> str:
        """Validate before any model loads: exactly one input, and a text within its budget. Returns the modality."""
        modality = self.modality
        if modality == "text":
            check_text(str(self.text), config)
        return modality


def check_text(text: str, config: Config) -> str:
    """The stripped query ``text``; too long (over ``config.max_query_chars``) or blank is a UserError."""
    if not isinstance(text, str):
        raise UserError(f"A text query must be a string (got {type(text).__name__}).")
    n = len(text)
    if n > config.max_query_chars:
        raise UserError(
            f"The query text is {n:,} characters long; the limit is {config.max_query_chars:,} "
            "(CROSSMODAL_MAX_QUERY_CHARS). Shorten the query."
        )
    value = text.strip()
    if not value:
        raise UserError("The text query is empty: type some words to search for.")
    return value


def check_target(target: str) -> str:
    """``target`` when it is one of :data:`TARGETS`, else a UserError listing them."""
    if target not in TARGETS:
        raise UserError(f"Unknown target {target!r}. Choose one of: {', '.join(TARGETS)}.")
    return target


def target_modalities(target: str) -> tuple[str, ...]:
    """'any' → every modality; otherwise the target itself (validated)."""
    return MODALITIES if check_target(target) == "any" else (target,)


def check_k(k: int, most: int | None = None, name: str = "k") -> int:
    """``k`` when it is a whole number ≥ 1 (and ≤ ``most`` when given), else a UserError."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise UserError(f"{name} must be a whole number (got {k!r}).")
    if k < 1 or (most is not None and k > most):
        bound = f"between 1 and {most}" if most is not None else "at least 1"
        raise UserError(f"{name} must be {bound} (got {k}).")
    return k

"""Per-visitor state: what one browser session chose and the results it is looking at.

A :class:`Visitor` lives in the visitor's ``gr.State`` (on the server — Gradio never takes a state
value from the client), so results flow between the steps of an event (search → gallery, items →
selection, lab → explanation) without the browser ever sending a path or a document back.
Nothing here is shared between visitors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCOPES = ("demo", "mine", "both")  # public mode: the shared demo, my uploads, or both
SCOPE_LABELS = {"demo": "the demo", "mine": "my uploads", "both": "the demo + my uploads"}


@dataclass
class Visitor:
    """One browser session's choices and last results (never shared, never sent back by the client).

    ``collection``: the collection this visitor works on (local mode; None = the app's default).
    ``scope``: what to search in public mode (one of :data:`SCOPES`).
    """

    session: str = ""
    collection: str | None = None
    scope: str = "both"
    last_search: dict[str, Any] | None = None
    last_refs: dict[str, Any] = field(default_factory=dict)  # result label → CollectionRef it came from
    last_items: list[dict[str, Any]] = field(default_factory=list)
    last_report: dict[str, Any] | None = None  # last indexing report or deletion
    last_lab: dict[str, Any] | None = None
    last_eval: dict[str, Any] | None = None
    pending_delete: list[int] = field(default_factory=list)
    saw_loading: bool = False  # this page was open while models loaded: tell it when they are ready
    told_ready: bool = False


__all__ = ["SCOPES", "SCOPE_LABELS", "Visitor"]

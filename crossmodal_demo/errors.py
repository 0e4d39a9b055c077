"""Exceptions that carry a message meant for the user (no traceback is shown for these)."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: the message says what was wrong, what is accepted and what to do."""


class MediaError(UserError):
    """One input file cannot be used; indexing reports it and goes on with the rest."""


class FatalError(Exception):
    """The run cannot go on (weights missing, a model fails to load, disk full, read-only store).

    Raised once; the CLI prints the message as one line and exits non-zero. The message says what
    happened, how many items were committed and that re-running resumes.
    """


class Cancelled(UserError):
    """The visitor stopped a long job (indexing, evaluation); what was committed before the stop is kept."""

"""Exceptions that carry a message meant for the user (no traceback is shown for these)."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: the message says what was wrong, what is accepted and what to do."""


class MediaError(UserError):
    """One input file cannot be used; indexing reports it and goes on with the rest."""

"""User-facing errors.

Every error a user can cause (bad recipe, bad data, wrong model) is a :class:`TunesmithError`. The CLI
prints it as one line (``error: <message>``) and exits 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations


class TunesmithError(Exception):
    """Base class for errors caused by user input; the message says what, where and what to do."""


class ConfigError(TunesmithError):
    """A recipe is invalid: unknown key, wrong type, impossible combination, missing file."""

    def __init__(self, key: str, message: str, hint: str | None = None):
        self.key = key
        self.hint = hint
        text = f"{key}: {message}" if key else message
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)


class DataError(TunesmithError):
    """A data file is malformed or inconsistent (names the file and line)."""


class ModelError(TunesmithError):
    """A model cannot be loaded or does not fit the recipe (task head, tokenizer, architecture)."""


class TrainingError(TunesmithError):
    """Training cannot continue (NaN loss, diverged run); the last good checkpoint is kept."""

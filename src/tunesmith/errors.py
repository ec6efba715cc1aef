"""User-facing errors.

Every error a user can cause (bad recipe, bad data, wrong model) is a :class:`TunesmithError`. The CLI
prints it as one line (``error: <message>``) and exits 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator


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


# ---------------------------------------------------------------------------------------------
# Failures from the environment, worded for the command line

# how torch (RuntimeError) and safetensors (SafetensorError, Rust's io::ErrorKind) word ENOSPC
_DISK_FULL_TEXT = ("no space left on device", "storagefull", "disk quota exceeded")

# exception class names of damaged files -> what is wrong with the file
_DAMAGED = {
    "JSONDecodeError": "is not valid JSON",
    "UnicodeDecodeError": "cannot be decoded as text",
    "SafetensorError": "is not a valid safetensors file (damaged or truncated)",
    "HeaderTooLarge": "is not a valid safetensors file (damaged or truncated)",
    "ScannerError": "is not valid YAML",
    "ParserError": "is not valid YAML",
    "ComposerError": "is not valid YAML",
    "ConstructorError": "is not valid YAML",
}


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during (``__cause__`` / ``__context__``)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` or what it was raised from is a full disk: ``OSError`` ENOSPC / EDQUOT, or
    the wrapped forms torch and safetensors raise (their message says so)."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(e).lower() for text in _DISK_FULL_TEXT):
            return True
    return False


def _filename(exc: BaseException) -> str | None:
    for e in _chain(exc):
        if getattr(e, "filename", None):
            return str(e.filename)
    return None


def describe_failure(exc: BaseException, where: str | None = None) -> str | None:
    """The one line the CLI prints for ``exc`` (after ``error: ``), or None for a failure tunesmith
    does not expect -- a bug, whose traceback the CLI shows with a request to report it.

    Expected: a :class:`TunesmithError`; a full disk anywhere in the chain (names the file, or
    ``where``: the run folder the command writes); an ``OSError`` that names its file (missing,
    unreadable, unwritable); a damaged file (JSON, YAML, text encoding, safetensors). Damaged files
    are best named at the raise site (see :func:`reading`); this is the net under it.
    """
    if is_disk_full(exc):
        target = _filename(exc) or where or "the output folder"
        return (
            f"disk full (no space left on device) while writing {target}; the last complete "
            "checkpoint is kept: free some space, then continue with --resume"
        )
    if isinstance(exc, TunesmithError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    what = _DAMAGED.get(type(exc).__name__)
    if what is not None:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"a file {what}: {detail}"
    return None


@contextlib.contextmanager
def reading(
    path: str | os.PathLike[str], error: type[TunesmithError] = DataError
) -> Iterator[None]:
    """Turn a failure to read or decode ``path`` (missing, unreadable, damaged JSON / YAML /
    safetensors / text) into ``error`` (a one-message :class:`TunesmithError` such as
    :class:`DataError` or :class:`ModelError`) naming the file."""
    try:
        yield
    except TunesmithError:
        raise
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(f"cannot read {path}: {_reason(exc)}") from exc
    except Exception as exc:
        if type(exc).__name__ not in _DAMAGED:
            raise
        raise error(
            f"cannot read {path}: it {_DAMAGED[type(exc).__name__]} ({_reason(exc)})"
        ) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return text.splitlines()[0] if text else type(exc).__name__

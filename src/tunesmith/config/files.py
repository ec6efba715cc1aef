"""A recipe's files: its relative paths resolved by the one path rule (beside the recipe file,
then the data root) and the checks, before any model loads, that the data files exist and that
``model`` / ``distill.teacher`` name something loadable."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.config.sections import DataConfig
from tunesmith.config.sources import ModelConfig, check_model_source
from tunesmith.errors import ConfigError
from tunesmith.paths import locate, looks_like_path, resolve_path

if TYPE_CHECKING:
    from tunesmith.config.recipe import Recipe

logger = logging.getLogger(__name__)


def _beside(value: str | None, bases: list[Path], key: str) -> str | None:
    """``value`` made absolute when it is a relative path found under one of ``bases`` (the
    recipe's folder first); unchanged otherwise (then it resolves as before: data paths against
    the data root, model paths against the current directory)."""
    if value is None or value.startswith("embedded:") or Path(value).expanduser().is_absolute():
        return value
    found = locate(value, bases)
    if found is None:
        return value
    logger.info("%s: %s resolves to %s", key, value, found)
    return str(found)


def resolve_recipe_paths(recipe: Recipe, folder: Path) -> Recipe:
    """Apply the one path rule to a recipe read from ``folder``: a relative data path, dataset
    folder or ``data.root`` found beside the recipe file becomes that absolute path (others keep
    resolving under the data root); a ``model`` / ``distill.teacher`` path (``./x``, ``../x``,
    ``a/b/c``) is looked up beside the recipe, then under the data root, then (as before) in the
    current directory. The saved ``config.yaml`` then names what the run really read."""
    folder = folder.resolve()
    datas = [("data", recipe.data)] if recipe.data is not None else []
    datas += [(f"tasks[{i}].data", t.data) for i, t in enumerate(recipe.tasks)]
    for key, data in datas:
        if data.root is not None:
            data.root = _beside(data.root, [folder], f"{key}.root")
        for split in ("train", "dev", "test"):
            src = getattr(data, split)
            if src is not None:
                src.path = _beside(src.path, [folder], f"{key}.{split}.path")
                src.dataset = _beside(src.dataset, [folder], f"{key}.{split}.dataset")
    root = (recipe.data or DataConfig()).root_path()
    owners = [("model", recipe), ("teacher", recipe.distill)]
    owners += [("model", t) for t in (recipe.distill.teachers or [])] if recipe.distill else []
    if isinstance(recipe.model, ModelConfig):
        owners[0] = ("name", recipe.model)
    for key, owner in owners:
        value = getattr(owner, key, None) if owner is not None else None
        if value is not None and looks_like_path(value):
            setattr(owner, key, _beside(value, [folder, root], key))
    return recipe


def check_files(recipe: Recipe) -> None:
    """Every data file the recipe names must exist (fails before any model loads)."""
    if recipe.tasks:
        for i in range(len(recipe.tasks)):
            check_files(recipe.task_recipe(i))
        return
    root = recipe.data.root_path()
    for split in ("train", "dev", "test"):
        src = getattr(recipe.data, split)
        if src is None or src.path is None:  # dataset sources are checked when read
            continue
        resolved = resolve_path(src.path, root)
        if not resolved.exists():
            hint = (
                "relative paths are looked up beside the recipe file, then under the data root: "
                "set TUNESMITH_DATA or data.root to the folder holding the datasets"
                if not Path(src.path).is_absolute()
                else "check the path"
            )
            raise ConfigError(f"data.{split}.path", f"file not found: {resolved}", hint)


def check_model_sources(recipe: Recipe) -> None:
    """``model`` and ``distill.teacher`` name something loadable (see
    :func:`~tunesmith.config.sources.check_model_source`); checked before any model loads."""
    key = "model.name" if isinstance(recipe.model, ModelConfig) else "model"
    check_model_source(key, recipe.model_source if recipe.model is not None else None)
    check_model_source("distill.teacher", recipe.distill.teacher if recipe.distill else None)
    for i, t in enumerate((recipe.distill.teachers or []) if recipe.distill else []):
        check_model_source(f"distill.teachers[{i}].model", t.model)

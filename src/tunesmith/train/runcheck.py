"""A run's fingerprint: what its result depends on, so that ``--resume`` is exact or refuses.

``fingerprint.json`` is written when a run starts and holds:

* ``recipe`` — the resolved recipe;
* ``world_size`` — the number of processes (each one's data shard and RNG stream depend on it);
* ``data`` — each data file's path and content digest (``data.train``, ``tasks.<name>.data.dev``);
  a hub dataset's name, config, split and revision; a split passed in from Python, its
  ``datasets.Dataset`` fingerprint or a digest of its records;
* ``teacher`` — the distillation teacher's files digest (or its hub id);
* ``examples`` — the training example count; ``labels`` — the label set;
* ``model`` — the digest of the starting weights (base model + new head, or base + adapter).
* ``precision`` — the precision ``train.precision`` resolved to (``auto`` on resume keeps this
  first choice, so a resume on a machine that would choose otherwise still computes the same).

On ``--resume`` each part is compared as soon as it is known, before anything in the run folder is
written: the recipe, world size, data and teacher before the data is read; the example count and
labels once it is; the model once it is built. A difference is one :class:`RunFolderError` line
naming what changed (never a hang on a shrunk file, never a silent divergence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import Recipe, dump_recipe, parse_recipe
from tunesmith.data.hfdata import given_splits, records_digest
from tunesmith.distill.teacher import resolve_teacher
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.fingerprint import file_digest
from tunesmith.models import resolve_model
from tunesmith.paths import locate, resolve_path
from tunesmith.train.runfolder import RunFolderError, holds_run

FINGERPRINT_FILE = "fingerprint.json"
FORMAT = 1


def data_files(recipe: Recipe) -> dict[str, Path]:
    """Every data file (or folder) the recipe reads, by recipe key."""
    if recipe.tasks:
        return {
            f"tasks.{t.name}.{key}": path
            for i, t in enumerate(recipe.tasks)
            for key, path in data_files(recipe.task_recipe(i)).items()
        }
    root = recipe.data.root_path()
    found = {}
    for split in ("train", "dev", "test"):
        src = getattr(recipe.data, split)
        if src is None:
            continue
        if src.dataset is None:
            found[f"data.{split}"] = resolve_path(src.path, root)
        elif (local := locate(src.dataset, [root, Path.cwd()])) is not None:
            found[f"data.{split}"] = local
    return found


def _other_inputs(recipe: Recipe, given: Any) -> dict[str, dict[str, str]]:
    """The inputs that are not local files: hub datasets (by name, config, split, revision) and
    splits passed in from Python (by fingerprint), which replace the recipe's."""
    out = {}
    data = recipe.data if not recipe.tasks else None
    for split in ("train", "dev", "test"):
        src = getattr(data, split, None) if data is not None else None
        if src is not None and src.dataset is not None:
            if locate(src.dataset, [data.root_path(), Path.cwd()]) is None:
                what = [src.dataset, src.config, src.split, src.revision]
                out[f"data.{split}"] = {"path": src.dataset, "digest": repr(what)}
    for split, obj in given_splits(given).items():
        digest = getattr(obj, "_fingerprint", None) or records_digest(list(obj))
        out[f"data.{split}"] = {"path": f"datasets[{split}]", "digest": digest}
    return out


def _teacher(recipe: Recipe) -> str | None:
    if recipe.distill is None:
        return None
    resolved = resolve_model(resolve_teacher(recipe.distill.teacher))
    return file_digest(resolved) if Path(resolved).exists() else resolved


def input_fingerprint(recipe: Recipe, world_size: int, datasets: Any = None) -> dict[str, Any]:
    """The parts known before any data is read or model loaded (``datasets``: splits passed in
    from Python, see :func:`~tunesmith.train.modes.build_mode`)."""
    files = {
        key: {"path": str(path), "digest": file_digest(path)}
        for key, path in data_files(recipe).items()
    }
    return {
        "format": FORMAT,
        "recipe": yaml.safe_load(dump_recipe(recipe)),
        "world_size": world_size,
        "data": {**files, **_other_inputs(recipe, datasets)},
        "teacher": _teacher(recipe),
    }


def _recipe_changes(old: Any, new: Any, key: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for k in list(old) + [k for k in new if k not in old]
            for change in _recipe_changes(old.get(k), new.get(k), f"{key}.{k}" if key else k)
        ]
    return [] if old == new else [f"{key or 'recipe'}: {old!r} -> {new!r}"]


def _label_change(old: Any, new: Any) -> str:
    if isinstance(old, list) and isinstance(new, list):
        added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
        parts = [f"added {added}" if added else "", f"removed {removed}" if removed else ""]
        if any(parts):
            return "the label set changed (" + ", ".join(p for p in parts if p) + ")"
    return "the label set changed"


def with_current_defaults(saved: Any) -> Any:
    """A recipe saved by an earlier tunesmith, read as today's tunesmith reads it: keys added
    since then take their defaults, so a key added with a default that changes nothing is not a
    change. A recipe today's schema refuses is compared as saved."""
    if not isinstance(saved, dict):
        return saved
    try:
        return yaml.safe_load(dump_recipe(parse_recipe(saved)))
    except (TunesmithError, ValueError, TypeError):
        return saved


def describe_change(part: str, old: Any, new: Any) -> list[str]:
    """Human-readable differences of one fingerprint part (empty when equal)."""
    if part == "precision" and old is None:  # a run started before precision was recorded
        return []
    if part == "recipe":
        old = with_current_defaults(old)
    if old == new:
        return []
    if part == "recipe":
        changes = _recipe_changes(old, new)
        more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
        return ["the recipe changed: " + "; ".join(changes[:3]) + more]
    if part == "data":
        old, new = old or {}, new or {}
        return [
            f"{key} ({new[key]['path']}) changed since the run started"
            for key in sorted(new)
            if key in old and old[key]["digest"] != new[key]["digest"]
        ] or ["the data files changed"]
    if part == "world_size":
        return [f"the number of processes changed ({old} -> {new})"]
    if part == "examples":
        return [f"the training example count changed ({old} -> {new})"]
    if part == "labels":
        return [_label_change(old, new)]
    if part == "model":
        return ["the starting model's weights changed (a different base model or adapter)"]
    if part == "precision":
        return [f"the chosen precision changed ({old} -> {new})"]
    if part == "teacher":
        return ["the distillation teacher changed"]
    return [f"{part} changed"]


@dataclass
class RunCheck:
    """The fingerprint being built for this start, and the saved one it must match (resuming)."""

    run_dir: Path
    current: dict[str, Any]
    resuming: bool  # the folder holds a run: only the newest checkpoint goes on from here
    saved: dict[str, Any] | None = None  # None: a fresh start, or a folder from before fingerprints

    @classmethod
    def start(
        cls, recipe: Recipe, run_dir: Path, resume: bool, world_size: int, datasets: Any = None
    ) -> RunCheck:
        """Check what can be checked before reading data: the folder's state, recipe, data files
        (and ``datasets`` passed in from Python), teacher, world size. Raises when a plain run
        would overwrite a run."""
        resuming = holds_run(run_dir)
        if resuming and not resume:
            raise ConfigError(
                "output_dir",
                f"run directory {run_dir} already holds a run",
                "pass --resume to continue it, or choose another output_dir",
            )
        check = cls(run_dir, input_fingerprint(recipe, world_size, datasets), resuming)
        if resuming:
            check.saved = check._read_saved(recipe)
        check.compare("recipe", "world_size", "data", "teacher")
        return check

    def _read_saved(self, recipe: Recipe) -> dict[str, Any] | None:
        path = self.run_dir / FINGERPRINT_FILE
        if not path.is_file():  # a run folder from before fingerprints: the recipe must match
            saved = self.run_dir / "config.yaml"
            if saved.is_file() and saved.read_text() != dump_recipe(recipe):
                raise ConfigError(
                    "output_dir",
                    f"the recipe differs from the one {self.run_dir} was started with",
                    "resume with the same recipe and overrides",
                )
            return None
        try:
            return json.loads(path.read_text())
        except ValueError:
            raise RunFolderError(f"{path} is damaged; the run cannot be resumed") from None

    def add(self, **parts: Any) -> None:
        """Record parts known later (examples, labels, model) and compare them."""
        self.current.update(parts)
        self.compare(*parts)

    def compare(self, *parts: str) -> None:
        if self.saved is None:
            return
        changes = [
            change
            for part in parts
            for change in describe_change(part, self.saved.get(part), self.current.get(part))
        ]
        if changes:
            raise RunFolderError(
                f"cannot resume {self.run_dir}: " + "; ".join(changes) + " (a resume must see "
                "the same inputs to be exact; restore them, or start a new run in another "
                "output_dir)"
            )

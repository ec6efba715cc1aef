"""🤗 datasets as split sources: a recipe's ``{dataset: ...}`` and objects passed in from Python.

Why: users arrive with a hub dataset name, a parquet folder, a ``save_to_disk`` folder or a
``DatasetDict`` in a notebook. Each becomes the same thing tunesmith's file readers give — records
(plain ``dict``) with a place per record (``NAME[split] row N``) so the checks of
:mod:`tunesmith.data.checks` name where a bad label is — plus the dataset's fingerprint, which
lets the encoding be cached (:mod:`tunesmith.data.tokcache`). ``datasets`` is imported lazily: it
is needed only when such a source is used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from tunesmith import paths
from tunesmith.errors import ConfigError, DataError

__all__ = [
    "Loaded",
    "RowPlace",
    "given_splits",
    "load_dataset_source",
    "read_given",
]

# the names a dataset's splits go by, per tunesmith split
SPLIT_NAMES = {
    "train": ("train",),
    "dev": ("validation", "dev", "valid", "val"),
    "test": ("test",),
}
# local data file extension -> the `datasets` builder that reads it (and its options)
BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".parquet": ("parquet", {}),
    ".arrow": ("arrow", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".txt": ("text", {}),
}


class RowPlace(NamedTuple):
    """Where a record of a dataset was: ``NAME[split] row N`` (the checks print ``str(place)``)."""

    name: str
    index: int

    def __str__(self) -> str:
        return f"{self.name} row {self.index}"

    def token(self, k: int) -> RowPlace:  # a dataset row has no line per token
        return self


class Loaded(NamedTuple):
    """One split's records, their places and the data's fingerprint (None: not cacheable)."""

    records: list[dict[str, Any]]
    places: list[RowPlace]
    fingerprint: str | None


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError(
            "dataset sources and Dataset objects need the `datasets` package: pip install datasets"
        ) from None
    return datasets


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _open(name: str, local: Path | None, config: str | None, revision: str | None, key: str):
    """The Dataset / DatasetDict behind a ``dataset:`` value."""
    ds = _datasets()
    cache = str(paths.cache_dir() / "datasets")
    try:
        if local is not None and local.is_dir():
            if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
                return ds.load_from_disk(str(local))
            return ds.load_dataset(str(local), config, cache_dir=cache)
        if local is not None:
            builder, options = BUILDERS.get(local.suffix.lower(), (None, {}))
            if builder is None:
                raise DataError(
                    f"{key}: cannot read {local} as a dataset (extension {local.suffix!r}); "
                    f"use one of {', '.join(BUILDERS)}, or path: for tunesmith's readers"
                )
            return ds.load_dataset(builder, data_files=str(local), cache_dir=cache, **options)
        return ds.load_dataset(name, config, revision=revision, cache_dir=cache)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types (FileNotFoundError, ValueError, ...)
        where = str(local) if local is not None else f"hub dataset {name!r}"
        raise DataError(f"{key}: cannot load {where}: {_first_line(exc)}") from None


def _local(name: str, root: Path) -> Path | None:
    """The local file or folder ``name`` names (absolute, under the data root or the current
    directory), else None (a hub name)."""
    found = paths.locate(name, [root, Path.cwd()])
    if found is None and paths.looks_like_path(name):
        raise DataError(
            f"dataset not found: {name} (relative paths are looked up beside the recipe file, "
            f"then under the data root {root})"
        )
    return found


def _pick_split(obj, wanted: str | None, split: str, key: str):
    """The Dataset of ``split`` in a DatasetDict (by ``wanted``, else the split's usual names;
    a single-split dataset, e.g. one data file, gives its only split)."""
    if not hasattr(obj, "keys"):
        return obj, wanted or split
    names = list(obj.keys())
    if wanted is not None:
        if wanted not in obj:
            raise DataError(f"{key}.split: no split {wanted!r}; the dataset has {names}")
        return obj[wanted], wanted
    for candidate in SPLIT_NAMES[split]:
        if candidate in obj:
            return obj[candidate], candidate
    if len(names) == 1:
        return obj[names[0]], names[0]
    raise DataError(
        f"{key}: the dataset has splits {names} and none is called "
        f"{' / '.join(SPLIT_NAMES[split])}; set {key}.split to one of them"
    )


def _loaded(dataset, name: str, renames: Mapping[str, str], key: str) -> Loaded:
    """Records, places and fingerprint of one ``datasets.Dataset``; ``renames`` maps a column to
    the tunesmith field it is read as."""
    missing = sorted(set(renames) - set(dataset.column_names))
    if missing:
        raise DataError(
            f"{key}.columns: {name} has no column {missing[0]!r}; its columns: "
            f"{dataset.column_names}"
        )
    if renames:
        dataset = dataset.rename_columns(dict(renames))
    records = dataset.to_list()
    places = [RowPlace(name, i) for i in range(len(records))]
    return Loaded(records, places, getattr(dataset, "_fingerprint", None))


def load_dataset_source(src, split: str, root: Path, key: str) -> Loaded:
    """One split of a recipe's ``{dataset: ...}`` source (``src`` a
    :class:`~tunesmith.config.SplitSource`, ``key`` its recipe key for messages)."""
    local = _local(src.dataset, root)
    if local is None and paths.hub_offline("HF_DATASETS_OFFLINE"):
        raise DataError(
            f"{key}.dataset: {src.dataset!r} is not a local file or folder, and the dataset hub "
            "is not reachable (HF_HUB_OFFLINE is set); download it once with network access, "
            "or give the path of a local copy"
        )
    obj = _open(src.dataset, local, src.config, src.revision, f"{key}.dataset")
    dataset, chosen = _pick_split(obj, src.split, split, key)
    label = str(local) if local is not None else src.dataset
    return _loaded(dataset, f"{label}[{chosen}]", src.renames(), key)


def given_splits(datasets: Any) -> dict[str, Any]:
    """``datasets`` passed in from Python as ``{split: Dataset | list[dict]}``: a ``DatasetDict``
    (or any mapping) with its ``validation`` split read as ``dev``."""
    if datasets is None:
        return {}
    if not isinstance(datasets, Mapping) and not hasattr(datasets, "keys"):
        raise ConfigError(
            "datasets",
            f"expected a mapping of split name to Dataset or list of dicts, or a DatasetDict, "
            f"got {type(datasets).__name__}",
        )
    out: dict[str, Any] = {}
    for name in datasets.keys():
        split = next((s for s, names in SPLIT_NAMES.items() if name in (s, *names)), None)
        if split is None:
            raise ConfigError(
                f"datasets[{name!r}]", "unknown split", "use train, dev (or validation), test"
            )
        if split in out:
            raise ConfigError(f"datasets[{name!r}]", f"a second {split} split")
        out[split] = datasets[name]
    return out


def records_digest(records: list[dict[str, Any]]) -> str:
    """A digest of plain records (their JSON), the fingerprint of a list passed in."""
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps(rec, sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def read_given(obj: Any, split: str) -> Loaded:
    """Records of one split passed in from Python: a ``datasets.Dataset`` or a list of dicts."""
    name = f"datasets[{split}]"
    if isinstance(obj, list | tuple):
        bad = next((i for i, r in enumerate(obj) if not isinstance(r, dict)), None)
        if bad is not None:
            raise DataError(f"{name} row {bad}: expected a dict, got {type(obj[bad]).__name__}")
        records = [dict(r) for r in obj]
        return Loaded(records, [RowPlace(name, i) for i in range(len(records))], None)
    if hasattr(obj, "to_list") and hasattr(obj, "column_names"):
        return _loaded(obj, name, {}, name)
    raise DataError(
        f"{name}: expected a datasets.Dataset or a list of dicts, got {type(obj).__name__} "
        "(an IterableDataset must be materialised first, e.g. Dataset.from_generator)"
    )

"""The label set of a classification or tagging task: label string <-> class id.

Why: the ids a model was trained with must be the ids used at evaluation and prediction time,
so the vocabulary is built once (sorted, hence reproducible), saved beside the checkpoint as JSON
(``labels.json``: the raw labels, which data files are encoded with) and also written into the
model config as ``id2label`` / ``label2id`` — there with the display names of
``data.label_names`` when the recipe gives them, so a transformers pipeline shows the names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tunesmith.errors import ConfigError, DataError


class LabelVocab:
    """An ordered list of labels; the id of a label is its position.

    Labels are kept as strings (a JSONL ``1`` and a TSV ``"1"`` are the same label). ``names``
    (``data.label_names``) maps a label to the name shown to people; unnamed labels show as
    themselves.
    """

    def __init__(self, labels: Iterable[Any], names: Mapping[Any, str] | None = None):
        self.labels: list[str] = [str(x) for x in labels]
        self.label2id: dict[str, int] = {label: i for i, label in enumerate(self.labels)}
        if len(self.label2id) != len(self.labels):
            raise ValueError(f"duplicate labels in {self.labels}")
        self.names: list[str] = display_names(self.labels, names)

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], key: str = "label") -> LabelVocab:
        """The sorted unique values of ``record[key]``; list values (token tags) are flattened.

        Records whose value is missing or ``None`` (unlabelled input) are ignored. Integer labels
        sort numerically (``2`` before ``10``) and before the others, which sort alphabetically.
        """
        seen: set[str] = set()
        for rec in records:
            value = rec.get(key)
            if value is None:
                continue
            values = value if isinstance(value, list | tuple) else [value]
            seen.update(str(v) for v in values)
        if not seen:
            raise DataError(f"no labels found under key {key!r}; check label_key in the recipe")
        return cls(sorted(seen, key=_sort_key))

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def named_id2label(self) -> dict[int, str]:
        """``id2label`` with display names (what a model config gets)."""
        return dict(enumerate(self.names))

    @property
    def named_label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def name(self, label: Any) -> str:
        """The display name of ``label`` (itself when unnamed or unknown)."""
        i = self.label2id.get(str(label))
        return str(label) if i is None else self.names[i]

    def encode(self, label: Any, where: str = "") -> int:
        """The id of ``label``; an unknown label is a :class:`DataError` that lists the known ones."""
        try:
            return self.label2id[str(label)]
        except KeyError:
            place = f" in {where}" if where else ""
            raise DataError(
                f"unknown label {str(label)!r}{place}; known labels: {self.labels} "
                "(fix the data, or build the label set from a file that has every label)"
            ) from None

    def decode(self, i: int) -> str:
        return self.labels[i]

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return str(label) in self.label2id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocab) and other.labels == self.labels

    def __repr__(self) -> str:
        return f"LabelVocab({self.labels})"


def display_names(labels: list[str], names: Mapping[Any, str] | None) -> list[str]:
    """The name of each label: ``names[label]``, else the label. A key that is not a label, or
    two labels with one name, is a :class:`ConfigError` (``data.label_names``)."""
    given = {str(k): str(v) for k, v in (names or {}).items()}
    unknown = sorted(set(given) - set(labels))
    if unknown:
        raise ConfigError(
            "data.label_names",
            f"names labels {unknown} that the data does not have; the labels are {labels}",
            "the keys are the raw labels as they appear in the data files",
        )
    shown = [given.get(label, label) for label in labels]
    twice = sorted({n for n in shown if shown.count(n) > 1})
    if twice:
        raise ConfigError(
            "data.label_names", f"several labels are named {twice}", "give unique names"
        )
    return shown


def _sort_key(label: str) -> tuple[int, int | float, str]:
    try:
        return (0, int(label), label)
    except ValueError:
        return (1, 0, label)

"""The label set of a classification or tagging task: label string <-> class id.

Why: the ids a model was trained with must be the ids used at evaluation and prediction time,
so the vocabulary is built once (sorted, hence reproducible), saved beside the checkpoint as JSON
and also written into the model config as ``id2label`` / ``label2id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tunesmith.errors import DataError


class LabelVocab:
    """An ordered list of labels; the id of a label is its position.

    Labels are kept as strings (a JSONL ``1`` and a TSV ``"1"`` are the same label).
    """

    def __init__(self, labels: Iterable[Any]):
        self.labels: list[str] = [str(x) for x in labels]
        self.label2id: dict[str, int] = {label: i for i, label in enumerate(self.labels)}
        if len(self.label2id) != len(self.labels):
            raise ValueError(f"duplicate labels in {self.labels}")

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


def _sort_key(label: str) -> tuple[int, int | float, str]:
    try:
        return (0, int(label), label)
    except ValueError:
        return (1, 0, label)

"""Checks that bad data never silently changes the task.

Why: a line without a label (``the movie was good`` read as label ``the``), a byte-order mark
glued to a label (``'\\ufeffpos'``), a record without its label key or an empty dev file all used
to become a new class, a traceback or a run without model selection. Each is now a
:class:`~tunesmith.errors.DataError` naming ``file:line`` and the fix. The checks run on the
records as read, before any model loads (``tunesmith validate`` runs them too):

* every record has its label (``data.label_key``; token tasks: ``data.tags_key``), of a plain type;
* with ``data.labels`` declared, any other label is an error;
* without it, a label with non-printable characters (a BOM, a tab, a control character) is an
  error, and so is a class seen only :data:`RARE_MAX` times or fewer in a training file of at
  least :data:`RARE_MIN_EXAMPLES` examples (tags, for token tasks; ``data.allow_rare_labels: true``
  accepts them);
* a dev/test label the training split lacks, and an empty split, are errors.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tunesmith.data.readers import Place
from tunesmith.errors import DataError

logger = logging.getLogger(__name__)

RARE_MAX = 2
"""A class seen this many times or fewer in the training file is suspect (a stray line)."""
RARE_MIN_EXAMPLES = 20
"""... when the training file has at least this many examples (tiny files are left alone)."""

Places = Mapping[int, Place]  # id(record) -> where it was read


def where(places: Places, rec: dict[str, Any], split: str, i: int, k: int | None = None) -> str:
    """``file:line`` of ``rec`` (of its token ``k``), else ``data.<split> record <i>``."""
    place = places.get(id(rec))
    if place is None:
        return f"data.{split} record {i}"
    return str(place.token(k) if k is not None else place)


def record_labels(rec: dict[str, Any], key: str, per_token: bool, place: str) -> list[str]:
    """The labels of one record as strings (one per token for a token task)."""
    value = rec.get(key)
    if value is None or value == "":
        what = "tags" if per_token else "label"
        raise DataError(
            f"{place}: no {what} (field {key!r} is missing or empty; fields: {sorted(rec)}); "
            f"give every example its {what}, or point data.{'tags_key' if per_token else 'label_key'} "
            "at the field that holds it"
        )
    if per_token:
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise DataError(f"{place}: {key!r} must be a list of tags, got {value!r:.60}")
        return [str(v) for v in value]
    if isinstance(value, list | dict) or not isinstance(value, str | int | float):
        raise DataError(
            f"{place}: the label {key!r} must be a string or a number, got {value!r:.60}"
        )
    return [str(value)]


def check_file_labels(
    split: str,
    records: Sequence[dict[str, Any]],
    places: Places,
    key: str,
    per_token: bool,
    declared: Sequence[str] | None,
) -> Counter[str]:
    """Check every label of one file's records; returns the label counts."""
    allowed = set(declared) if declared is not None else None
    counts: Counter[str] = Counter()
    for i, rec in enumerate(records):
        labels = record_labels(rec, key, per_token, where(places, rec, split, i))
        for k, label in enumerate(labels):
            if allowed is not None and label not in allowed:
                raise DataError(
                    f"{where(places, rec, split, i, k if per_token else None)}: label {label!r} "
                    f"is not one of data.labels {list(declared or [])}; fix the line, or add the "
                    "label to data.labels"
                )
            if allowed is None and (not label.isprintable() or label != label.strip()):
                raise DataError(
                    f"{where(places, rec, split, i, k if per_token else None)}: label {label!r} "
                    "contains non-printable characters or surrounding spaces (a byte-order mark "
                    "from concatenated files?); fix the line, or declare the label set with "
                    "data.labels"
                )
        counts.update(labels)
    return counts


def check_rare_labels(
    records: Sequence[dict[str, Any]], places: Places, key: str, per_token: bool, counts: Counter
) -> None:
    """A class seen at most :data:`RARE_MAX` times in a training file of at least
    :data:`RARE_MIN_EXAMPLES` examples is an error naming where it occurs."""
    examples = sum(counts.values()) if per_token else len(records)  # token tasks: tags
    if examples < RARE_MIN_EXAMPLES:
        return
    rare = sorted((n, label) for label, n in counts.items() if n <= RARE_MAX)
    if not rare:
        return
    seen: dict[str, str] = {}
    for i, rec in enumerate(records):
        labels = record_labels(rec, key, per_token, "")
        for k, label in enumerate(labels):
            if any(label == r for _, r in rare) and label not in seen:
                seen[label] = where(places, rec, "train", i, k if per_token else None)
    shown = ", ".join(f"{label!r} ({n}x, first at {seen[label]})" for n, label in rare[:5])
    more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
    raise DataError(
        f"rare label(s) in the training data: {shown}{more}, among {examples} "
        f"{'tags' if per_token else 'examples'}; a "
        "class seen once or twice is usually a malformed line (a missing label, a wrong "
        "separator); fix those lines, or, if they are real classes, list the label set in "
        "data.labels or set data.allow_rare_labels: true"
    )


def check_in_vocab(
    raw: Mapping[str, Sequence[dict[str, Any]]],
    places: Places,
    key: str,
    per_token: bool,
    labels: Sequence[str],
) -> None:
    """Every dev/test label is one the model has (the training labels, or data.labels)."""
    known = set(labels)
    for split, records in raw.items():
        for i, rec in enumerate(records):
            for k, label in enumerate(
                record_labels(rec, key, per_token, where(places, rec, split, i))
            ):
                if label not in known:
                    raise DataError(
                        f"{where(places, rec, split, i, k if per_token else None)}: label "
                        f"{label!r} does not occur in the training split (labels: {list(labels)}); "
                        "fix the line, or declare the full label set with data.labels"
                    )


def check_not_empty(raw: Mapping[str, Sequence[dict[str, Any]]], paths: Mapping[str, str]) -> None:
    """An empty split (empty file, every line skipped, carved or limited to nothing) is an error:
    an empty dev split would silently turn best-model selection off."""
    for split, records in raw.items():
        if not records:
            source = f" ({paths[split]})" if split in paths else ""
            raise DataError(
                f"data.{split}{source}: no examples; give a file with examples, or remove "
                f"data.{split} (and data.split.{split} / data.limit.{split})"
            )


def log_label_counts(raw: Mapping[str, Sequence[dict[str, Any]]], counts: Counter[str]) -> None:
    """One info line: examples per split and the training label set with counts."""
    sizes = ", ".join(f"{split} {len(records):,}" for split, records in raw.items())
    if not counts:
        logger.info("data: %s examples", sizes)
        return
    labels = ", ".join(f"{label} {n:,}" for label, n in sorted(counts.items(), key=_by_count))
    logger.info("data: %s examples; %d labels in train: %s", sizes, len(counts), labels)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])

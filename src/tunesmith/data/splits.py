"""Deterministic, label-stratified train/validation/test splits.

Why: several datasets ship a single split (ag_news, sms_spam, the BBC demo corpus); a run must cut
the same split every time for a seed, and each split must keep the label mix of the whole so a
small validation set still contains the rare labels.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

from tunesmith.errors import DataError


def stratified_split(
    records: list[dict[str, Any]],
    fractions: dict[str, float],
    seed: int,
    label_key: str | None = "label",
) -> dict[str, list[dict[str, Any]]]:
    """Split ``records`` into ``{name: records}`` with ``len(split) ≈ fraction * len(records)``.

    Each label's records are shuffled with ``seed`` and dealt to the splits in proportion, so every
    split keeps the label distribution. The dealing runs over all labels in one sequence (largest
    deficit first), so rounding never starves a split: 10 labels × 3 examples with 0.9/0.1 still
    give a 3-example test split. ``label_key=None`` is a plain seeded random split. Records keep
    their identity (no copies); the order inside each split is shuffled deterministically.
    """
    _check_fractions(fractions)
    names = list(fractions)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, rec in enumerate(records):
        if label_key is None:
            groups[""].append(rec)
        elif label_key not in rec:
            raise DataError(f"record {i} has no {label_key!r} field to stratify on: {rec!r:.80}")
        else:
            groups[str(rec[label_key])].append(rec)

    ordered: list[dict[str, Any]] = []
    for label in sorted(groups):
        items = list(groups[label])
        random.Random(f"{seed}:{label}").shuffle(items)  # str seeds are stable across runs
        ordered.extend(items)

    out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    counts = dict.fromkeys(names, 0)
    for j, rec in enumerate(ordered):
        # Give the item to the split furthest below its share of the first j+1 items; every
        # prefix (hence every label's run) stays within about one item of proportional.
        name = max(names, key=lambda n: fractions[n] * (j + 1) - counts[n])
        counts[name] += 1
        out[name].append(rec)
    for name in names:
        random.Random(f"{seed}:order:{name}").shuffle(out[name])
    return out


def _check_fractions(fractions: dict[str, float]) -> None:
    if not fractions:
        raise ValueError("fractions is empty; give e.g. {'train': 0.8, 'validation': 0.2}")
    for name, f in fractions.items():
        if not isinstance(f, int | float) or not 0.0 <= f <= 1.0:
            raise ValueError(f"fraction for split {name!r} must be in [0, 1], got {f!r}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must sum to 1, got {total:g} from {fractions}")

"""Text-to-text multi-task formatting (T5 §2.4): task prefixes, named fields and labels as words.

T5 casts every task as "text in, text out": the input starts with a task prefix and names its
fields (``sst2 sentence: it is a charming film``, ``rte sentence1: ... sentence2: ...``) and the
target is the label as a word (``positive``). One generative model then trains on a mixture of
tasks with one loss. :class:`TextFormat` turns a task's records into ``{"source", "target"}`` pairs
that the existing seq2seq / causal-LM encoders take unchanged. Scoring the label words at
evaluation needs a model and lives in :mod:`tunesmith.train.scoring`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import DataError

__all__ = ["TextFormat", "verbaliser"]


def verbaliser(labels: Sequence[Any], mapping: Mapping[Any, str] | None = None) -> dict[str, str]:
    """Label -> target word. Default: the label string itself; ``mapping`` overrides some or all
    (keys compared as strings, so a YAML ``0: negative`` maps label ``"0"``).

    Words must be non-empty and distinct, else two labels could not be told apart.
    """
    given = {str(k): str(v) for k, v in (mapping or {}).items()}
    unknown = sorted(set(given) - {str(x) for x in labels})
    if unknown:
        raise DataError(f"verbaliser names unknown labels {unknown}; labels are {list(labels)}")
    words = {str(x): given.get(str(x), str(x)).strip() for x in labels}
    empty = [k for k, w in words.items() if not w]
    if empty:
        raise DataError(f"label {empty[0]!r} has an empty word in the verbaliser")
    seen: dict[str, str] = {}
    for label, word in words.items():
        if word in seen:
            raise DataError(
                f"labels {seen[word]!r} and {label!r} both verbalise to {word!r}; give them "
                "distinct words"
            )
        seen[word] = label
    return words


@dataclass(frozen=True)
class TextFormat:
    """How one task's records become text-to-text pairs.

    ``source = "<prefix> <name1>: <record[key1]> <name2>: <record[key2]>"`` for
    ``fields = ((name1, key1), (name2, key2))`` (an empty name writes the value alone), and
    ``target = verbaliser[record[label_key]]``. T5's SST-2 format is
    ``TextFormat("sst2", (("sentence", "text"),), words={"0": "negative", "1": "positive"})``.
    """

    prefix: str
    fields: tuple[tuple[str, str], ...] = (("sentence", "text"),)
    label_key: str = "label"
    words: Mapping[str, str] = field(default_factory=dict)  # label -> word (see verbaliser())

    def source(self, record: Mapping[str, Any]) -> str:
        parts = [self.prefix] if self.prefix else []
        for name, key in self.fields:
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"{self.prefix or 'task'}: field {key!r} is missing or empty in a record with "
                    f"fields {sorted(record)}"
                )
            parts.append(f"{name}: {value.strip()}" if name else value.strip())
        return " ".join(parts)

    def target(self, label: Any) -> str:
        return self.words.get(str(label), str(label))

    def to_pairs(
        self, records: Sequence[Mapping[str, Any]], source_key="source", target_key="target"
    ) -> list[dict[str, str]]:
        """``[{source_key: ..., target_key: ...}]``; a record without a label gets no target."""
        out = []
        for rec in records:
            pair = {source_key: self.source(rec)}
            if rec.get(self.label_key) is not None:
                pair[target_key] = self.target(rec[self.label_key])
            out.append(pair)
        return out

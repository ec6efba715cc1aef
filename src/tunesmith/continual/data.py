"""Freeze each task's splits to JSONL once, so every stage and evaluation sees the same data.

A stage's recipe may read any format and carve dev/test from train; the sequence reads every
task's splits once (seeded, as the recipe says), writes them under ``<out>/data/<task>/`` and
points the stage recipes there. That fixes the test split scored in every row of R, and gives
replay and joint training plain records to mix. Classification records are normalised to
``{"text", "text_pair"?, "label", "task"}`` (labels prefixed ``<task>:`` for a shared head when
``label_prefix`` is on); causal-LM records are kept as they are, plus ``task``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.atomic import atomic_write_text
from tunesmith.config import Recipe, parse_recipe
from tunesmith.configschema import to_dict
from tunesmith.data.pipeline import build_vocab, load_raw_splits

__all__ = ["TaskData", "materialize", "stage_recipe", "write_jsonl"]

SPLITS = ("train", "dev", "test")


@dataclass
class TaskData:
    """One task's frozen splits on disk and its labels (None for causal LM)."""

    name: str
    recipe: Recipe  # the task's own recipe, reading the frozen files
    root: Path  # <out>/data
    splits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    labels: list[str] | None = None

    def path(self, split: str) -> str:
        return f"{self.name}/{split}.jsonl"


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Write atomically; skipped when the file already holds exactly these records."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    atomic_write_text(path, text)


def _normalise(recipe: Recipe, rec: dict, name: str, prefix: str) -> dict[str, Any]:
    d = recipe.data
    out = {"text": rec.get(d.text_key)}
    if d.text_pair_key:
        out["text_pair"] = rec.get(d.text_pair_key)
    label = rec.get(d.label_key)
    out["label"] = None if label is None else f"{prefix}{label}"
    out["task"] = name
    return out


def materialize(name: str, recipe: Recipe, root: Path, prefix_labels: bool) -> TaskData:
    """Read ``recipe``'s splits once and write them as JSONL under ``root/name/``."""
    raw = load_raw_splits(recipe)
    task = TaskData(name, recipe, root)
    if recipe.task == "sequence_classification":
        prefix = f"{name}:" if prefix_labels else ""
        vocab = build_vocab(recipe, raw)
        task.labels = [f"{prefix}{label}" for label in vocab.labels]
        for split, records in raw.items():
            task.splits[split] = [_normalise(recipe, r, name, prefix) for r in records]
    else:
        for split, records in raw.items():
            task.splits[split] = [{**r, "task": name} for r in records]
    for split, records in task.splits.items():
        write_jsonl(root / task.path(split), records)
    task.recipe = stage_recipe(task, labels=task.labels)
    return task


def stage_recipe(
    task: TaskData,
    *,
    labels: list[str] | None = None,
    train_path: str | None = None,
    model: str | None = None,
    output_dir: str | None = None,
    objectives: list[dict] | None = None,
    data_root: Path | None = None,
    splits: dict[str, str] | None = None,
    adapter: Any = None,
) -> Recipe:
    """``task``'s recipe reading the frozen files (or ``splits``), with the given overrides."""
    data = to_dict(task.recipe)
    d = data["data"]
    root = data_root or task.root
    files = splits or {s: task.path(s) for s in SPLITS if s in task.splits}
    if train_path is not None:
        files["train"] = train_path
    d.update(root=str(root), split={}, limit={})
    for split in SPLITS:
        d[split] = {"path": files[split], "format": "jsonl"} if split in files else None
    if task.recipe.task == "sequence_classification":
        # the labels are rewritten (task-prefixed); raw-label names would no longer match them
        d.update(text_key="text", label_key="label", labels=labels, label_names=None)
        d["text_pair_key"] = "text_pair" if task.recipe.data.text_pair_key else None
    if model is not None:
        data["model"] = model
    if output_dir is not None:
        data["output_dir"] = output_dir
    if objectives is not None:
        data["objectives"] = objectives
    if adapter is not None:  # the stage's own (a continual method may change it)
        data["adapter"] = to_dict(adapter)
    return parse_recipe(data)

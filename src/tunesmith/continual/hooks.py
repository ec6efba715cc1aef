"""The work between two stages of a task sequence, and the scoring of every task after each.

After stage k (its run dir holds ``summary.json`` and ``best/``) the runner calls, each step
skipped when its output file already exists (so a resumed sequence redoes only what is missing):

1. :func:`save_head` - separate heads: keep task k's label projection (``heads/<task>``);
2. :func:`score_row` - score every task, seen and unseen, with stage k's model -> row k of R;
3. the method's ``after_stage`` (replay: offer task k's training records to the reservoir);
4. :func:`build_state` - the :class:`ContinualState` for stage k+1: old heads and the previous
   model's folder here, then what the method adds (Fisher and anchors, encoded replay examples).

:class:`SequenceContext` is what the methods see of the sequence
(:class:`tunesmith.objectives.continual.SequenceView`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from tunesmith.adapters import load_model_or_adapter, mark_trainable
from tunesmith.continual.config import ContinualConfig
from tunesmith.continual.data import TaskData, stage_recipe, write_jsonl
from tunesmith.continual.labelwords import score_by_label_words
from tunesmith.data.collate import Collator
from tunesmith.data.labels import LabelVocab
from tunesmith.data.pipeline import build_datasets, encode_split
from tunesmith.heads import MultiHeadModel, TaskView, fresh_head, head_state, label_projection_names
from tunesmith.objectives.continual import ContinualMethod, ContinualState
from tunesmith.precision import Precision, autocast, resolve_precision
from tunesmith.train.evaluation import evaluate
from tunesmith.train.setup import freeze_as_recipe

__all__ = ["SequenceContext", "build_state", "save_head", "score_row"]


@dataclass
class SequenceContext:
    """Everything the hooks share: settings, the tasks' frozen data, tokenizer, caches."""

    out: Path
    cfg: ContinualConfig
    method: ContinualMethod
    tasks: list[TaskData]
    task_type: str
    shared: bool  # one head for all tasks (or no head: causal LM)
    seed: int
    tokenizer: Any
    metric: str
    union: list[str] | None = None  # shared head: all tasks' labels, in stage order
    words: list[list[str]] | None = None  # causal LM scored by label words: each task's words
    accelerator: Accelerator = field(
        default_factory=lambda: Accelerator(cpu=not torch.cuda.is_available())
    )
    _eval: dict[int, tuple[list, Any]] = field(default_factory=dict)
    _precision: list[Precision] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def classification(self) -> bool:
        return self.task_type == "sequence_classification"

    def scoring(self):
        """Autocast for scoring, in the sequence's ``train.precision`` (as the loop scores dev):
        bf16 where ``auto`` picks it, else fp32."""
        if not self._precision:
            requested = self.tasks[0].recipe.train.precision
            self._precision.append(resolve_precision(requested, self.accelerator.device))
        return autocast(self._precision[0], self.accelerator.device)

    def labels_for(self, j: int) -> list[str] | None:
        """The label vocabulary task j is encoded with (the union for a shared head)."""
        if not self.classification:
            return None
        return self.union if self.shared else self.tasks[j].labels

    def label_ids(self, j: int) -> list[int]:
        return [self.union.index(label) for label in self.tasks[j].labels]

    def run_dir(self, i: int, name: str) -> Path:
        return self.out / "stages" / f"{i}-{name}"

    def state_path(self, k: int) -> Path:
        return self.out / "state" / f"stage-{k}.safetensors"

    def head_path(self, name: str) -> Path:
        return self.out / "heads" / f"{name}.safetensors"

    def collator(self) -> Collator:
        return Collator(pad_token_id=self.tokenizer.pad_token_id)

    def train_records(self, i: int) -> list[dict]:
        return self.tasks[i].splits["train"]

    def write_jsonl(self, path: Path, records: list[dict]) -> None:
        write_jsonl(path, records)

    def trainable(self, model, i: int) -> dict[str, torch.nn.Parameter]:
        """The parameters stage i trains (its recipe's freezing), minus separate label heads."""
        recipe = self.tasks[i].recipe
        freeze_as_recipe(recipe, model)
        if recipe.adapter is not None:  # only the adapter (and the head, if it trains) counts
            name, train_head, _ = recipe.adapter_settings()
            mark_trainable(model, name, train_head=train_head)
        separate = self.classification and not self.shared
        heads = set(label_projection_names(model)) if separate else set()
        return {n: p for n, p in model.named_parameters() if p.requires_grad and n not in heads}

    def encoded(self, j: int, records: list[dict], where: str) -> list[dict]:
        """Encode task j's records with its recipe and label vocabulary."""
        labels = self.labels_for(j)
        recipe = stage_recipe(self.tasks[j], labels=labels)
        vocab = LabelVocab(labels) if labels is not None else None
        return encode_split(recipe, records, self.tokenizer, vocab, where)

    def eval_data(self, j: int) -> tuple[list, Any]:
        """Task j's encoded evaluation split and vocabulary (cached)."""
        if j not in self._eval:
            split = self.cfg.eval_split
            task = self.tasks[j]
            data = build_datasets(stage_recipe(task, labels=self.labels_for(j)), self.tokenizer)
            examples = getattr(data, split)
            if not examples:
                raise ValueError(f"task {task.name!r} has no {split} split to score")
            self._eval[j] = (examples, data.vocab)
        return self._eval[j]


def load_stage_model(ctx: SequenceContext, best: Path | str, labels: list[str] | None = None):
    if (Path(best) / "multitask.json").is_file():  # joint training with a head per task
        return MultiHeadModel.from_pretrained(best).to(ctx.accelerator.device).eval()
    kwargs = {}
    if labels is not None:
        kwargs = dict(id2label=dict(enumerate(labels)))
    model = load_model_or_adapter(str(best), ctx.task_type, **kwargs)
    return model.to(ctx.accelerator.device).eval()


def save_head(ctx: SequenceContext, model, name: str) -> None:
    path = ctx.head_path(name)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in head_state(model).items()}, str(path))


def load_head(ctx: SequenceContext, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(ctx.head_path(name)))


def score_row(
    ctx: SequenceContext, model, trained: int, own: Callable[[int], Any] | None = None
) -> list[dict[str, float]]:
    """Every task's metrics with ``model``, which has been trained on tasks ``0..trained``
    (``trained = -1``: the initial model). Separate heads: task j's saved head when j was
    trained, else a fresh head seeded by ``seed + j`` (the same one the initial row uses).
    A multi-head model (joint training with separate heads) scores each task with its head.
    ``own(j)``: task-id routing, the model task j <= trained is scored with (its own stage's)."""
    with ctx.scoring():
        return _score_row(ctx, model, trained, own)


def _score_row(ctx: SequenceContext, model, trained: int, own) -> list[dict[str, float]]:
    metrics = []
    current = model
    for j, task in enumerate(ctx.tasks):
        model = own(j) if own is not None and j <= trained else current
        if ctx.words is not None:  # a causal-LM task written as text: rank its label words
            split = ctx.cfg.eval_split
            metrics.append(score_by_label_words(model, ctx.tokenizer, task, ctx.words[j], split))
            continue
        examples, vocab = ctx.eval_data(j)
        if not ctx.classification:
            view = model
        elif hasattr(model, "task_view"):
            view = model.task_view(task.name)
        elif not ctx.shared:
            head = (
                load_head(ctx, task.name)
                if j <= trained
                else fresh_head(model, len(task.labels), ctx.seed + j)
            )
            view = TaskView(model, head=head)
        else:
            restrict = ctx.cfg.restrict_eval_labels or ctx.method.joint
            view = TaskView(model, label_ids=ctx.label_ids(j) if restrict else None)
        batch = task.recipe.train.eval_batch_size
        metrics.append(
            evaluate(view, examples, ctx.collator(), ctx.task_type, vocab, ctx.accelerator, batch)
        )
    return metrics


def write_row(path: Path, metrics: list[dict[str, float]], metric: str) -> list[float]:
    row = [float(m[metric]) for m in metrics]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"row": row, "metrics": metrics}, indent=2))
    return row


def build_state(ctx: SequenceContext, k: int, model, best: Path) -> ContinualState:
    """The state handed to stage k, from stage k-1's ``model`` (loaded from ``best``)."""
    i = k - 1
    prev = ctx.state_path(i)
    old = ContinualState.load(prev) if prev.is_file() else ContinualState()
    state = ContinualState(
        task=ctx.task_type,
        heads="shared" if ctx.shared else "separate",
        stage=k,
        seen=ctx.names[:k],
        previous_model=str(best),
    )
    if ctx.classification and not ctx.shared:
        state.head_weights = {n: load_head(ctx, n) for n in ctx.names[:k]}
    if ctx.classification and ctx.shared:
        state.old_label_ids = sorted({x for j in range(k) for x in ctx.label_ids(j)})
    ctx.method.update_state(state, old, ctx, model, i)
    state.save(ctx.state_path(k))
    if not ctx.cfg.keep_state and prev.is_file():
        prev.unlink()
    return state

"""How a distilled student compares with its teacher, measured at the end of the run.

A distillation run's ``summary.json`` gets a ``distill`` key (and ``report.md`` a section, the log
a few lines) with the teacher's and the student's metrics on the same dev/test batches, the share
of the teacher's score the student keeps, both parameter counts and the measured inference
speed-up. The teacher is the one the run distilled from, loaded again for this evaluation (so it
works when the run trained on cached teacher outputs and never kept a live teacher).

Share kept: ``100 * student / teacher`` for a metric where higher is better (accuracy, F1), and
``100 * teacher / student`` where lower is (loss, perplexity), so 100% means "as good as the
teacher" either way. Speed-up: ``teacher seconds / student seconds`` for forward passes over the
same dev batches (test when there is no dev set; up to ``max_batches``, eval batch size, sorted
by length as evaluation does), after one untimed warm-up batch per model, the two models taking
turns batch by batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunesmith.distill import load_teacher
from tunesmith.distill.ensemble import TeacherEnsemble
from tunesmith.metrics import greater_is_better
from tunesmith.models import count_parameters
from tunesmith.tasks import model_inputs
from tunesmith.train.evaluation import Collate, eval_batches

if TYPE_CHECKING:
    from tunesmith.train.setup import Run

__all__ = ["distill_results", "describe_results", "kept_pct", "time_forward"]


def kept_pct(student: float, teacher: float, metric: str) -> float | None:
    """Share of the teacher's ``metric`` the student keeps, in percent (module doc)."""
    num, den = (student, teacher) if greater_is_better(metric) else (teacher, student)
    return None if den == 0 else round(100.0 * num / den, 2)


@torch.no_grad()
def time_forward(
    models: Sequence[nn.Module],
    batches: Sequence[dict[str, torch.Tensor]],
    task: str,
    device: torch.device,
) -> list[float]:
    """Seconds each of ``models`` spends in forward passes over ``batches`` (eval mode).

    Each model first runs the first batch untimed (warm-up: allocator, kernels, lazy init); then
    the models take turns batch by batch, so a change in machine load hits them alike."""
    totals = [0.0] * len(models)

    def run(model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
        model(**model_inputs(task, {k: v.to(device) for k, v in batch.items()}))
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for model in models:
        model.eval()
        run(model, batches[0])
    for batch in batches:
        for i, model in enumerate(models):
            start = time.perf_counter()
            run(model, batch)
            totals[i] += time.perf_counter() - start
    return totals


def speed(
    student: nn.Module,
    teacher: nn.Module,
    examples: list[dict],
    collator: Collate,
    task: str,
    batch_size: int,
    device: torch.device,
    max_batches: int = 16,
) -> dict[str, Any]:
    """Teacher and student timed on the same batches of ``examples``; speed-up = t / s."""
    index = eval_batches(examples, batch_size)[:max_batches]
    batches = [collator([examples[i] for i in idx]) for idx in index]
    t_student, t_teacher = time_forward([student, teacher], batches, task, device)
    return {
        "timed_batches": len(batches),
        "timed_examples": sum(len(idx) for idx in index),
        "student_s": round(t_student, 4),
        "teacher_s": round(t_teacher, 4),
        "speedup": round(t_teacher / max(t_student, 1e-9), 3),
    }


def _load_run_teacher(run: Run) -> nn.Module:
    """The run's teacher, loaded again as the run loaded it: a live teacher bound to the terms
    may have been switched to eager attention (attention KD), which would skew the timing.
    Several teachers are scored as their mixture (per-example choice needs gold labels)."""
    d = run.recipe.distill
    specs = d.teacher_specs
    if len(specs) == 1:
        return load_teacher(specs[0][0], run.recipe.task).to(run.accelerator.device)
    models = [load_teacher(spec, run.recipe.task) for spec, _ in specs]
    mixture = TeacherEnsemble(models, [w for _, w in specs], "mixture", run.recipe.task)
    return mixture.to(run.accelerator.device)


def run_notes(run: Run) -> dict[str, Any]:
    """What the set-up learned about the student and the cache (loss before training, layer
    choices, cache bytes per token), for ``summary.json``."""
    notes = dict(getattr(run.collator, "info", None) or {})
    model = run.raw_model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return notes | dict(getattr(base, "tunesmith_distill_notes", None) or {})


def distill_results(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    """The ``distill`` entry of ``summary.json`` for a finished distillation ``run`` (a
    :class:`~tunesmith.train.setup.Run` with the best student loaded; ``summary`` holds the
    student's ``dev`` / ``test`` metrics)."""
    mode, metric = run.mode, run.metric
    teacher = _load_run_teacher(run)
    out: dict[str, Any] = {"metric": metric, "teacher": {}, "student": {}, "kept_pct": {}}
    out |= run_notes(run)
    for split in ("dev", "test"):
        if split not in summary:
            continue
        scores = mode.evaluate(teacher, split)  # the same batches the student was scored on
        out["teacher"][split], out["student"][split] = scores, summary[split]
        if metric in scores and metric in summary[split]:
            out["kept_pct"][split] = kept_pct(summary[split][metric], scores[metric], metric)
    out["teacher_params"] = count_parameters(teacher)[1]
    out["student_params"] = count_parameters(run.raw_model)[1]
    out["params_pct"] = round(100.0 * out["student_params"] / max(out["teacher_params"], 1), 2)
    timed = "dev" if mode.split_examples("dev") else "test"
    examples = mode.split_examples(timed)
    if examples:
        out["timed_split"] = timed
        out |= speed(
            run.raw_model,
            teacher,
            examples,
            mode.eval_collator(),
            run.recipe.task,
            run.recipe.train.eval_batch_size,
            run.accelerator.device,
        )
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def describe_results(d: dict[str, Any]) -> list[str]:
    """Log lines for the ``distill`` entry: scores, share kept, size and speed."""
    metric, lines = d["metric"], []
    for split, teacher in d["teacher"].items():
        if metric in teacher and metric in d["student"][split]:
            lines.append(
                f"distill {split} {metric}: teacher {teacher[metric]:.4f}, student "
                f"{d['student'][split][metric]:.4f} ({_pct(d['kept_pct'].get(split))} of the "
                "teacher's score kept)"
            )
    if "student_loss_before_training" in d:
        lines.append(f"distill student loss before training: {d['student_loss_before_training']}")
    if d.get("cache_bytes_per_token"):
        lines.append(f"distill teacher cache: {d['cache_bytes_per_token']} bytes per token")
    lines.append(
        f"distill parameters: teacher {d['teacher_params']:,}, student {d['student_params']:,} "
        f"({d['params_pct']}%)"
    )
    if "speedup" in d:
        lines.append(
            f"distill inference: {d['speedup']:.2f}x faster than the teacher on "
            f"{d['timed_examples']:,} {d['timed_split']} examples ({d['timed_batches']} "
            f"batches: teacher "
            f"{d['teacher_s']:.3f} s, student {d['student_s']:.3f} s, warm-up excluded)"
        )
    return lines

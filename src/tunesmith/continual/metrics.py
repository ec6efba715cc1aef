"""Continual-learning metrics on an accuracy matrix, with the formulas written out.

``R[i][j]`` is the score (accuracy by default) on task ``j``'s test set after training stage
``i``; stages and tasks are numbered ``0 .. T-1`` and stage ``i`` trains task ``i``, so ``R`` is
``(T, T)``: the diagonal holds each task just after it was learned, the lower triangle the old
tasks, the upper triangle the tasks not seen yet. ``b[j]`` is the score of the model before any
stage (the initial model) on task ``j``.

The definitions follow Lopez-Paz & Ranzato (2017, "Gradient Episodic Memory for Continual
Learning": ACC, BWT, FWT) and Chaudhry et al. (2018, "Riemannian Walk for Incremental
Learning": forgetting). ``docs/continual.md`` writes them out with a worked example.

For a metric where lower is better (perplexity, loss), pass ``higher_is_better=False``: every
difference is negated, so that a negative BWT and a positive forgetting always mean "got worse".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Forgetting",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "matrix_report",
]


class Forgetting(NamedTuple):
    per_task: list[float]  # f_j for j = 0 .. T-2 (the last task cannot have been forgotten yet)
    mean: float


def _matrix(R: Any, square: bool = True) -> np.ndarray:
    """``R`` as a float64 (S, T) array; ``square`` demands S == T (one stage per task)."""
    m = np.asarray(R, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"an accuracy matrix is 2-D with at least one entry, got shape {m.shape}")
    if square and m.shape[0] != m.shape[1]:
        raise ValueError(
            f"this metric needs one row per task (a (T, T) matrix), got shape {m.shape}; "
            "a joint-training run has a single row and only ACC"
        )
    return m


def average_accuracy(R: Any) -> float:
    """ACC = (1/T) sum_{j=0}^{T-1} R[T-1, j]: the mean score over all tasks after the last stage
    (Lopez-Paz & Ranzato 2017). Accepts one row (joint training) or (T, T)."""
    m = _matrix(R, square=False)
    return float(m[-1].mean())


def backward_transfer(R: Any, higher_is_better: bool = True) -> float:
    """BWT = (1/(T-1)) sum_{j=0}^{T-2} (R[T-1, j] - R[j, j]) (Lopez-Paz & Ranzato 2017).

    How much learning the later tasks changed each earlier task, measured against its score
    just after it was learned; negative means forgetting. ``nan`` for a single task.
    """
    m = _matrix(R)
    T = m.shape[0]
    if T < 2:
        return math.nan
    sign = 1.0 if higher_is_better else -1.0
    return float(sign * np.mean([m[T - 1, j] - m[j, j] for j in range(T - 1)]))


def forgetting(R: Any, higher_is_better: bool = True) -> Forgetting:
    """f_j = max_{l in 0..T-2} R[l, j] - R[T-1, j] for j < T-1, and their mean
    (Chaudhry et al. 2018, at the last stage k = T-1).

    The reference is the *best* score task j ever had before the last stage, not the diagonal
    ``R[j, j]``: if a later task first improved task j (positive backward transfer) and the last
    stage then lost it, that loss counts in full. The max runs over every earlier row, as in
    the paper (rows l < j are scores before task j was trained, normally below its peak).
    """
    m = _matrix(R)
    T = m.shape[0]
    if T < 2:
        return Forgetting([], math.nan)
    if higher_is_better:
        per_task = [float(m[: T - 1, j].max() - m[T - 1, j]) for j in range(T - 1)]
    else:
        per_task = [float(m[T - 1, j] - m[: T - 1, j].min()) for j in range(T - 1)]
    return Forgetting(per_task, float(np.mean(per_task)))


def forward_transfer(R: Any, initial: Sequence[float], higher_is_better: bool = True) -> float:
    """FWT = (1/(T-1)) sum_{j=1}^{T-1} (R[j-1, j] - b[j]) (Lopez-Paz & Ranzato 2017).

    How much the tasks learned so far help task j before it is trained, against the initial
    model's score ``b[j]``. ``nan`` for a single task.
    """
    m = _matrix(R)
    T = m.shape[0]
    b = np.asarray(initial, dtype=np.float64)
    if b.shape != (T,):
        raise ValueError(f"initial scores must have one entry per task ({T}), got shape {b.shape}")
    if T < 2:
        return math.nan
    sign = 1.0 if higher_is_better else -1.0
    return float(sign * np.mean([m[j - 1, j] - b[j] for j in range(1, T)]))


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def summarize(
    R: Any, initial: Sequence[float] | None = None, higher_is_better: bool = True
) -> dict[str, Any]:
    """ACC, BWT, forgetting (per task and mean) and FWT as a JSON-able dict (None where a
    metric is undefined: one task, a one-row joint matrix, no initial scores)."""
    m = _matrix(R, square=False)
    out: dict[str, Any] = {"acc": _finite(average_accuracy(m))}
    square = m.shape[0] == m.shape[1]
    out["bwt"] = _finite(backward_transfer(m, higher_is_better)) if square else None
    f = forgetting(m, higher_is_better) if square else Forgetting([], math.nan)
    out["forgetting"] = _finite(f.mean)
    out["forgetting_per_task"] = [_finite(x) for x in f.per_task]
    fwt = None
    if square and initial is not None:
        fwt = _finite(forward_transfer(m, initial, higher_is_better))
    out["fwt"] = fwt
    return out


def _markdown(m: np.ndarray, tasks: list[str], stats: dict, initial, metric: str) -> str:
    rows = [f"after stage {i} ({tasks[i] if m.shape[0] > 1 else 'joint'})" for i in range(len(m))]
    head = f"| {metric} | " + " | ".join(tasks) + " |"
    lines = [head, "|---" * (len(tasks) + 1) + "|"]
    if initial is not None:
        lines.append("| initial model | " + " | ".join(f"{v:.4f}" for v in initial) + " |")
    for name, row in zip(rows, m, strict=True):
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    lines.append("")
    for key in ("acc", "bwt", "forgetting", "fwt"):
        value = stats[key]
        lines.append(f"- **{key.upper()}**: {'n/a' if value is None else f'{value:.4f}'}")
    return "\n".join(lines) + "\n"


def _heatmap(m: np.ndarray, tasks: list[str], path: Path, metric: str) -> str | None:
    """Draw R as an annotated heatmap; returns why not when matplotlib is unavailable."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed (`pip install matplotlib`)"
    fig = Figure(figsize=(1.2 * len(tasks) + 2.5, 0.9 * len(m) + 1.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_yticks(range(len(m)), [f"stage {i}" for i in range(len(m))])
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after training")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.3f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return None


def matrix_report(
    R: Any,
    task_names: Sequence[str],
    out_dir: str | Path,
    initial: Sequence[float] | None = None,
    *,
    metric: str = "accuracy",
    higher_is_better: bool = True,
    extra: dict[str, Any] | None = None,
    appendix: str = "",
) -> dict[str, Any]:
    """Write ``matrix.json``, ``matrix.png`` (heatmap) and ``matrix.md`` into ``out_dir``
    (``appendix``: markdown added at the end of ``matrix.md``, e.g. the probe's section).

    ``R`` is (T, T), or (1, T) for joint training (then only ACC is defined). Returns the JSON
    content: tasks, metric, matrix (list of rows), initial, acc, bwt, forgetting (mean),
    forgetting_per_task, fwt, plus ``extra``.
    """
    m = _matrix(R, square=False)
    tasks = [str(t) for t in task_names]
    if m.shape[1] != len(tasks):
        raise ValueError(f"{len(tasks)} task names for a matrix with {m.shape[1]} columns")
    stats = summarize(m, initial, higher_is_better)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "tasks": tasks,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "matrix": m.tolist(),
        "initial": None if initial is None else [float(v) for v in initial],
        **stats,
        **(extra or {}),
    }
    (out / "matrix.json").write_text(json.dumps(report, indent=2))
    (out / "matrix.md").write_text(_markdown(m, tasks, stats, initial, metric) + appendix)
    why_not = _heatmap(m, tasks, out / "matrix.png", metric)
    if why_not:
        report["heatmap"] = why_not
    return report

"""Run reports: ``report.md`` and ``curves.png`` written from the files a run leaves behind.

Inputs, all in the run directory:

* ``metrics.jsonl`` (required) — written by :class:`tunesmith.train.logging.MetricsLogger`. Train
  records are those with ``split == "train"``; their ``loss`` and ``lr`` (or ``learning_rate``)
  are plotted. Every other split (``dev``, ``test``, ...) is an evaluation split: each of its
  numeric metrics gets a panel, and its last values fill the "Final metrics" table.
* ``summary.json`` (optional) — any JSON object (``best_step``, ``best_metric``, ``test``,
  ``wall_s``, ``trainable_params``, ``total_params``, ...); nested objects are flattened to
  ``parent.child`` rows. When both parameter counts exist a ``trainable %`` row is added. A
  ``distill`` object (distillation runs) gets its own teacher-vs-student table instead.
* ``config.yaml`` (optional) — the resolved recipe, shown verbatim in a collapsed block.
* ``labels.json`` (optional) — the label list (``{task: labels}`` for several tasks), shown as a
  table of class ids and labels, with the recipe's ``data.label_names`` beside them.

The figures (``curves.png``, ``fusion.png``) are drawn by :mod:`tunesmith.figures`; without
matplotlib the report is still written and says why it has no curves.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tunesmith.atomic import atomic_write_text
from tunesmith.errors import DataError
from tunesmith.figures import Panel, Series, fusion_lines, plot_curves

__all__ = ["METRICS_FILE", "read_metrics", "write_report"]

METRICS_FILE = "metrics.jsonl"

TRAIN_SPLIT = "train"
_RECORD_KEYS = {"step", "epoch", "split", "time"}
_LR_KEYS = ("lr", "learning_rate")


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """All records of ``run_dir/metrics.jsonl`` in file order.

    Lines that are not JSON objects (e.g. the partial last line of a crashed run) are skipped with
    a warning naming the file and line.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise DataError(f"{path}: no metrics file (is {run_dir} a tunesmith run directory?)")
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                warnings.warn(
                    f"{path}:{lineno}: skipping a line that is not a JSON object", stacklevel=2
                )
                continue
            records.append(record)
    return records


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    """Numbers in a width that suits a table: ints with separators, floats with 4 decimals."""
    if isinstance(value, bool) or not _is_number(value):
        return "—" if value is None else str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    v = float(value)
    if not math.isfinite(v) or v == 0:
        return str(v) if v else "0"
    if abs(v) < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.1f}"


def _series(records: Iterable[dict[str, Any]], split: str, key: str) -> Series | None:
    """``(split, steps, values)`` for one metric; a step logged twice (resumed run) keeps the last."""
    by_step: dict[float, float] = {}
    for r in records:
        if r.get("split") == split and _is_number(r.get(key)) and _is_number(r.get("step")):
            by_step[r["step"]] = float(r[key])
    if not by_step:
        return None
    steps = sorted(by_step)
    return split, steps, [by_step[s] for s in steps]


def _eval_splits(records: list[dict[str, Any]]) -> list[str]:
    splits = dict.fromkeys(r.get("split") for r in records)  # ordered by first appearance
    return [s for s in splits if isinstance(s, str) and s != TRAIN_SPLIT]


def _metric_names(records: list[dict[str, Any]], split: str) -> list[str]:
    names = dict.fromkeys(
        k
        for r in records
        if r.get("split") == split
        for k, v in r.items()
        if k not in _RECORD_KEYS and _is_number(v)
    )
    return list(names)


def _panels(records: list[dict[str, Any]]) -> list[Panel]:
    """Loss (train and eval), learning rate, then one panel per evaluation metric."""
    splits = _eval_splits(records)
    loss = [s for s in [_series(records, x, "loss") for x in [TRAIN_SPLIT, *splits]] if s]
    panels: list[Panel] = [("loss", loss)] if loss else []
    for key in _LR_KEYS:
        lr = _series(records, TRAIN_SPLIT, key)
        if lr:
            panels.append(("learning rate", [lr]))
            break
    metrics = dict.fromkeys(m for s in splits for m in _metric_names(records, s) if m != "loss")
    for metric in metrics:
        lines = [s for s in [_series(records, x, metric) for x in splits] if s]
        panels.append((metric, lines))
    return panels


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _read_summary(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(summary, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return summary


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    own_section = {"distill", "confusion", "fusion"}
    rows = _flatten({k: v for k, v in summary.items() if k not in own_section})
    trainable, total = rows.get("trainable_params"), rows.get("total_params")
    if _is_number(trainable) and _is_number(total) and total:
        rows["trainable %"] = 100.0 * trainable / total
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {_fmt(value)} |" for key, value in rows.items()]
    return lines


def _column(split: str, step: Any, summary: dict[str, Any] | None) -> str:
    """A column header: the split and its step; ``final_*`` splits score the best checkpoint
    (reloaded at the end of a run with dev data), so they name the best step."""
    best = (summary or {}).get("best_step")
    if split.startswith("final_") and _is_number(best):
        return f"{split} (best checkpoint, step {_fmt(best)})"
    return f"{split} (step {_fmt(step)})"


def _distill_lines(d: dict[str, Any]) -> list[str]:
    """Teacher vs student: the run metric per split, parameters, measured inference time."""
    metric = d.get("metric")
    lines = ["| | teacher | student | student / teacher |", "|---|---|---|---|"]
    for split, teacher in d.get("teacher", {}).items():
        student = d.get("student", {}).get(split, {})
        kept = d.get("kept_pct", {}).get(split)
        lines.append(
            f"| {split} {metric} | {_fmt(teacher.get(metric))} | {_fmt(student.get(metric))} "
            f"| {'—' if kept is None else f'{kept:.2f}% kept'} |"
        )
    t, s = d.get("teacher_params"), d.get("student_params")
    lines.append(f"| parameters | {_fmt(t)} | {_fmt(s)} | {_fmt(d.get('params_pct'))}% |")
    if "speedup" in d:
        lines.append(
            f"| inference s ({_fmt(d.get('timed_examples'))} "
            f"{d.get('timed_split', 'dev')} examples) "
            f"| {_fmt(d['teacher_s'])} | {_fmt(d['student_s'])} "
            f"| {d['speedup']:.2f}x faster |"
        )
    return lines


def _confusion_lines(confusion: dict[str, Any], limit: int = 20) -> list[str]:
    """One table per split: rows are gold labels, columns predicted labels (label names)."""
    lines: list[str] = []
    for split, c in confusion.items():
        names, matrix = c.get("labels") or [], c.get("matrix") or []
        if not matrix or len(names) != len(matrix):
            continue
        if len(names) > limit:
            lines += ["", f"{split}: {len(names)} labels (more than {limit}; see summary.json)"]
            continue
        lines += ["", f"{split} (rows: gold, columns: predicted):", ""]
        lines += ["| gold \\ predicted | " + " | ".join(map(str, names)) + " |"]
        lines += ["|---" * (len(names) + 1) + "|"]
        lines += [
            f"| {n} | " + " | ".join(map(str, row)) + " |"
            for n, row in zip(names, matrix, strict=True)
        ]
    return lines


def _final_lines(records: list[dict[str, Any]], summary: dict[str, Any] | None = None) -> list[str]:
    """Metric rows x evaluation-split columns, each cell the split's last logged value."""
    splits = _eval_splits(records)
    if not splits:
        return []
    last: dict[str, dict[str, Any]] = {s: {} for s in splits}
    for r in records:
        if r.get("split") in last:
            last[r["split"]].update({k: v for k, v in r.items() if k not in {"split", "time"}})
    metrics = list(dict.fromkeys(m for s in splits for m in _metric_names(records, s)))
    header = [_column(s, last[s].get("step"), summary) for s in splits]
    lines = ["| metric | " + " | ".join(header) + " |", "|---" * (len(splits) + 1) + "|"]
    for m in metrics:
        lines.append(f"| {m} | " + " | ".join(_fmt(last[s].get(m)) for s in splits) + " |")
    return lines


def _label_names(config: Path) -> dict[str, dict[str, str]]:
    """``{task: {label: name}}`` from a run's ``config.yaml`` (task ``""``: a single-task run)."""
    try:
        recipe = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else None
    except yaml.YAMLError:
        return {}
    if not isinstance(recipe, dict):
        return {}
    datas = [("", recipe.get("data"))]
    datas += [
        (t.get("name", ""), t.get("data")) for t in recipe.get("tasks") or [] if isinstance(t, dict)
    ]
    return {
        task: {str(k): str(v) for k, v in (d.get("label_names") or {}).items()}
        for task, d in datas
        if isinstance(d, dict)
    }


def _label_lines(run_dir: Path, limit: int = 100) -> list[str]:
    """Class id | label (| name) rows per task from ``labels.json``; none without that file."""
    path = run_dir / "labels.json"
    try:
        labels = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError:
        return []
    tables = labels.items() if isinstance(labels, dict) else [("", labels)]
    names = _label_names(run_dir / "config.yaml")
    lines: list[str] = []
    for task, task_labels in tables:
        if not isinstance(task_labels, list):
            continue
        named = names.get(task, {})
        lines += ["", f"{task}:"] if task else []
        lines += (
            ["| id | label | name |", "|---|---|---|"] if named else ["| id | label |", "|---|---|"]
        )
        for i, label in enumerate(task_labels[:limit]):
            lines.append(
                f"| {i} | {label} | {named.get(str(label), label)} |"
                if named
                else f"| {i} | {label} |"
            )
        if len(task_labels) > limit:
            lines.append(f"| ... | {len(task_labels) - limit} more |" + (" |" if named else ""))
    return lines


def write_report(run_dir: Path | str, title: str | None = None) -> Path:
    """Write ``run_dir/report.md`` (and ``run_dir/curves.png`` when there is something to plot).

    Returns the path of ``report.md``. Raises :class:`~tunesmith.errors.DataError` when
    ``metrics.jsonl`` is missing or ``summary.json`` is malformed.
    """
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    summary = _read_summary(run_dir / "summary.json")
    steps = [r["step"] for r in records if _is_number(r.get("step"))]

    md = [f"# {title or f'Run report: {run_dir.name}'}", ""]
    md += [f"Run directory: `{run_dir}` — {len(records)} logged records"]
    md[-1] += f", last step {_fmt(max(steps))}." if steps else "."
    if summary:
        md += ["", "## Summary", "", *_summary_lines(summary)]
    if summary and isinstance(summary.get("distill"), dict):
        md += ["", "## Distillation", "", *_distill_lines(summary["distill"])]
    final = _final_lines(records, summary)
    if final:
        md += ["", "## Final metrics", "", *final]

    if summary and isinstance(summary.get("confusion"), dict):
        confusion = _confusion_lines(summary["confusion"])
        if confusion:
            md += ["", "## Confusion matrix", *confusion]

    if summary and isinstance(summary.get("fusion"), dict) and summary["fusion"]:
        md += ["", "## AdapterFusion attention (dev mean per layer)", ""]
        md += fusion_lines(summary["fusion"], run_dir / "fusion.png")

    labels = _label_lines(run_dir)
    if labels:
        md += ["", "## Labels", "", *labels]

    md += ["", "## Curves", ""]
    panels = _panels(records)
    why_not = (
        plot_curves(panels, run_dir / "curves.png", line_only=TRAIN_SPLIT)
        if panels
        else "nothing to plot yet"
    )
    md.append(f"_No curves: {why_not}._" if why_not else "![training curves](curves.png)")

    config = run_dir / "config.yaml"
    if config.is_file():
        text = config.read_text(encoding="utf-8").rstrip("\n")
        md += ["", "## Config", "", "<details><summary>config.yaml</summary>", ""]
        md += ["```yaml", text, "```", "", "</details>"]

    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    return path


def replace_marked_section(path: Path | str, name: str, text: str) -> bool:
    """Replace what lies between ``<!-- {name}:start -->`` and ``<!-- {name}:end -->`` in ``path``
    (benchmark scripts keep their README tables this way). Returns False, writing nothing, when
    the markers are absent."""
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = path.read_text()
    if start not in content or end not in content:
        return False
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}")
    return True

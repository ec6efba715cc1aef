"""Run metrics: one JSON line per logging event in ``run_dir/metrics.jsonl``, optionally
TensorBoard and experiment trackers (``train.report_to``: :mod:`tunesmith.train.trackers`).

``metrics.jsonl`` is the source of truth (reports and plots read it with
:func:`tunesmith.report.read_metrics`); TensorBoard and the trackers are live views.
Each line is ``{"step", "epoch", "split", "time", **metrics}``, for example::

    {"step": 100, "epoch": 0.5, "split": "train", "time": 1732580000.1, "loss": 0.71, "lr": 2e-05}
    {"step": 100, "epoch": 0.5, "split": "dev", "time": 1732580004.9, "accuracy": 0.83}

The file is opened in append mode so a resumed run continues it. Non-finite floats are written
as ``NaN`` / ``Infinity`` (Python's ``json`` reads them back; strict JSON parsers do not).
"""

from __future__ import annotations

import json
import numbers
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesmith.report import METRICS_FILE

__all__ = ["METRICS_FILE", "MetricsLogger"]
_RESERVED = ("step", "epoch", "split", "time")
_tb_warned = False  # warn about a missing tensorboard once per process, not once per run


def _plain(value: Any) -> Any:
    """numpy / torch scalars -> Python numbers so ``json`` can write them."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _open_summary_writer(log_dir: Path) -> Any | None:
    global _tb_warned
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
    except ImportError:
        if not _tb_warned:
            warnings.warn(
                "tensorboard is not installed; metrics go to metrics.jsonl only "
                "(pip install tensorboard to get TensorBoard logs)",
                stacklevel=3,
            )
            _tb_warned = True
        return None
    return SummaryWriter(log_dir=str(log_dir))


class MetricsLogger:
    """Appends metrics to ``run_dir/metrics.jsonl`` and mirrors scalars to TensorBoard and to
    started accelerate trackers (``trackers``: objects with ``log(values, step)`` and
    ``finish()``; closing the logger finishes them).

    Scalars are tagged ``split/metric`` (``train/loss``, ``dev/f1``); TensorBoard's go under
    ``run_dir/tensorboard``. Usable as a context manager; :meth:`close` is idempotent.
    """

    def __init__(
        self, run_dir: Path | str, tensorboard: bool = True, trackers: list[Any] | None = None
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        # A crash mid-write can leave a partial last line; start ours on a fresh line so only that
        # partial line is lost (report.read_metrics skips it) rather than the first line of the resume.
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb+") as f:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = _open_summary_writer(self.run_dir / "tensorboard") if tensorboard else None
        self._trackers = list(trackers or [])

    def log(
        self, step: int, split: str, metrics: Mapping[str, Any], epoch: float | None = None
    ) -> None:
        """Write one record; ``metrics`` values should be numbers (others go to the JSONL only)."""
        clash = [k for k in metrics if k in _RESERVED]
        if clash:
            raise ValueError(f"metric names {clash} are reserved for the record itself")
        if self._file.closed:
            raise RuntimeError(f"MetricsLogger for {self.run_dir} is closed")
        values = {k: _plain(v) for k, v in metrics.items()}
        record = {"step": int(step), "epoch": epoch, "split": split, "time": time.time(), **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        scalars = {f"{split}/{k}": float(v) for k, v in values.items() if _is_number(v)}
        if self._writer is not None:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, value, int(step))
        for tracker in self._trackers:
            tracker.log(scalars, step=int(step))

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        trackers, self._trackers = self._trackers, []
        for tracker in trackers:
            tracker.finish()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

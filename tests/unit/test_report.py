"""MetricsLogger (JSONL + TensorBoard) and the markdown/PNG run report."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest

import tunesmith.train.logging as tlog
from tunesmith.errors import DataError
from tunesmith.report import read_metrics, write_report
from tunesmith.train.logging import MetricsLogger


def _synthetic_run(run_dir, tensorboard=False):
    with MetricsLogger(run_dir, tensorboard=tensorboard) as logger:
        for step in range(10, 101, 10):
            lr = 1e-4 * (1 - step / 100)
            logger.log(step, "train", {"loss": 2.0 / step**0.5, "lr": lr}, epoch=step / 50)
            if step % 50 == 0:
                logger.log(
                    step, "dev", {"loss": 0.5, "accuracy": step / 125, "f1": 0.61 + step / 1000}
                )
        logger.log(100, "test", {"accuracy": 0.8123, "f1": 0.7777}, epoch=2.0)


def test_logger_writes_jsonl_records(tmp_path):
    _synthetic_run(tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 10 + 2 + 1
    records = [json.loads(line) for line in lines]  # every line is a JSON object
    first = records[0]
    assert set(first) == {"step", "epoch", "split", "time", "loss", "lr"}
    assert (first["step"], first["split"], first["epoch"]) == (10, "train", 0.2)
    assert isinstance(first["time"], float)
    assert read_metrics(tmp_path) == records


def test_logger_appends_on_reopen_and_converts_numpy(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        logger.log(1, "train", {"loss": np.float32(0.5)})
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        logger.log(2, "train", {"loss": np.float64(0.25), "n": np.int64(3)})
    records = read_metrics(tmp_path)
    assert [(r["step"], r["loss"], r["epoch"]) for r in records] == [
        (1, 0.5, None),
        (2, 0.25, None),
    ]
    assert records[1]["n"] == 3


def test_logger_recovers_from_a_partial_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "split": "train", "loss": 1.0}\n{"step": 2, "spl'
    )
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        logger.log(2, "train", {"loss": 0.5})
    with pytest.warns(UserWarning, match=r"metrics.jsonl:2"):
        records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]


def test_logger_rejects_reserved_names_and_use_after_close(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    with pytest.raises(ValueError, match="reserved"):
        logger.log(1, "train", {"step": 3})
    logger.close()
    logger.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        logger.log(1, "train", {"loss": 1.0})


def test_read_metrics_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no metrics file"):
        read_metrics(tmp_path)


def test_tensorboard_event_file_created(tmp_path):
    pytest.importorskip("tensorboard")
    _synthetic_run(tmp_path, tensorboard=True)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/lr", "dev/accuracy", "test/f1"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("dev/accuracy")] == [50, 100]


def test_missing_tensorboard_warns_once_and_logs_jsonl(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    monkeypatch.setattr(tlog, "_tb_warned", False)
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        first = MetricsLogger(tmp_path / "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = MetricsLogger(tmp_path / "b")  # no second warning
    for logger in (first, second):
        logger.log(1, "train", {"loss": 1.0})
        logger.close()
    assert len(read_metrics(tmp_path / "a")) == 1
    assert not (tmp_path / "a" / "tensorboard").exists()


def test_report_with_summary_config_and_curves(tmp_path):
    _synthetic_run(tmp_path)
    (tmp_path / "config.yaml").write_text("model: tiny-bert\ntrain:\n  lr: 1.0e-4\n")
    summary = {
        "best_step": 100,
        "best_metric": 0.71,
        "test": {"accuracy": 0.8123},
        "wall_s": 12.5,
        "trainable_params": 1000,
        "total_params": 4000,
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    path = write_report(tmp_path, title="Tiny run")
    assert path == tmp_path / "report.md"
    png = tmp_path / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = path.read_text()
    assert md.startswith("# Tiny run\n")
    assert "| best_step | 100 |" in md
    assert "| test.accuracy | 0.8123 |" in md
    assert "| trainable % | 25.0000 |" in md
    assert "| total_params | 4,000 |" in md
    # final metrics: dev's last accuracy is 100/125 = 0.8; test's f1 0.7777; test has no loss
    assert "| metric | dev (step 100) | test (step 100) |" in md
    assert "| accuracy | 0.8000 | 0.8123 |" in md
    assert "| f1 | 0.7100 | 0.7777 |" in md
    assert "| loss | 0.5000 | — |" in md
    assert "![training curves](curves.png)" in md
    assert "<details><summary>config.yaml</summary>" in md and "  lr: 1.0e-4" in md


def test_report_without_matplotlib_still_written(tmp_path, monkeypatch):
    _synthetic_run(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    md = write_report(tmp_path).read_text()
    assert md.startswith(f"# Run report: {tmp_path.name}")
    assert "matplotlib is not installed" in md
    assert "curves.png" not in md and not (tmp_path / "curves.png").exists()
    assert "## Summary" not in md and "## Config" not in md  # optional files absent
    assert "| accuracy | 0.8000 | 0.8123 |" in md


def test_report_rejects_bad_summary(tmp_path):
    _synthetic_run(tmp_path)
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        write_report(tmp_path)


def test_final_columns_name_the_best_checkpoints_step(tmp_path):
    """Issue 18.7: final_* metrics score the reloaded best checkpoint, not the last step."""
    _synthetic_run(tmp_path)
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        logger.log(100, "final_dev", {"accuracy": 0.4})  # as runs before the fix logged it
    (tmp_path / "summary.json").write_text(json.dumps({"best_step": 50}))
    md = write_report(tmp_path).read_text()
    assert "final_dev (best checkpoint, step 50)" in md
    assert "final_dev (step 100)" not in md

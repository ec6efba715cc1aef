"""train.report_to (issue 15 item 5): trackers through accelerate, offline (wandb offline mode, an
MLflow file store); a tracker whose package is missing is a one-line ConfigError naming the
pip extra. metrics.jsonl is written whatever is listed."""

from __future__ import annotations

import importlib.util

import pytest

from tunesmith.config import parse_recipe
from tunesmith.configschema import to_dict
from tunesmith.errors import ConfigError
from tunesmith.train.loop import train

from .conftest import make_recipe

TASK = "sequence_classification"


def tracked(tiny_models, tiny_data, run_dir, *names):
    recipe = make_recipe(
        tiny_models["bert", TASK], TASK, tiny_data, run_dir, **{"train.max_steps": 3}
    )
    data = to_dict(recipe)
    data["train"]["report_to"] = list(names)
    return parse_recipe(data)


def needs(module: str):
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"{module} is not installed (pip install 'tunesmith[trackers]')",
    )


def test_unknown_tracker_is_a_config_error(tiny_models, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match=r"train.report_to: unknown tracker 'neptune'"):
        tracked(tiny_models, tiny_data, tmp_path / "r", "neptune")


def test_missing_tracker_package_names_the_pip_extra(tiny_models, tiny_data, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(ConfigError) as err:
        tracked(tiny_models, tiny_data, tmp_path / "r", "wandb")
    message = str(err.value)
    assert "\n" not in message
    assert "train.report_to: wandb is not installed" in message
    assert "pip install 'tunesmith[trackers]'" in message


@needs("wandb")
def test_wandb_offline_gets_the_config_and_metrics(tiny_models, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    run_dir = tmp_path / "r"
    summary = train(tracked(tiny_models, tiny_data, run_dir, "wandb"))
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((run_dir / "wandb").iterdir())
    assert list(runs[0].glob("*.wandb")), "the offline run file holds the logged records"
    assert (run_dir / "metrics.jsonl").is_file() and summary["steps"] == 3


@needs("mlflow")
def test_mlflow_file_store_gets_params_and_metrics(tiny_models, tiny_data, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7
    mlflow.set_tracking_uri(store)
    run_dir = tmp_path / "r"
    summary = train(tracked(tiny_models, tiny_data, run_dir, "mlflow", "tensorboard"))
    client = MlflowClient(tracking_uri=store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tunesmith"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "r" and run.info.status == "FINISHED"
    assert float(run.data.params["optim.lr"]) == pytest.approx(1e-3)
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == [3]  # log_every 10: logged at the last step
    final = run.data.metrics["final_test/accuracy"]
    assert final == pytest.approx(summary["test"]["accuracy"])
    assert (run_dir / "tensorboard").is_dir()  # report_to: tensorboard turns it on


@needs("mlflow")
def test_mlflow_defaults_to_a_file_store_in_the_run_folder(
    tiny_models, tiny_data, tmp_path, monkeypatch
):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    previous = mlflow.get_tracking_uri()
    run_dir = tmp_path / "r"
    try:
        train(tracked(tiny_models, tiny_data, run_dir, "mlflow"))
    finally:
        mlflow.set_tracking_uri(previous)
    assert list((run_dir / "mlruns").glob("*/*/metrics/train/loss"))

"""Multi-task (task: multi_head) through the one loop: per-task heads, mixing, per-task metrics."""

import json

from tunesmith.config import parse_recipe
from tunesmith.train.loop import train


def multitask_recipe(model_dir, data_root, run_dir, **over):
    base = {
        "model": str(model_dir),
        "task": "multi_head",
        "output_dir": str(run_dir),
        "seed": 3,
        "tasks": [
            {
                "name": "sent",
                "head": "sequence_classification",
                "data": {
                    "root": str(data_root),
                    "train": {"path": "sent.txt", "format": "label_text"},
                    "split": {"dev": 0.25},
                },
            },
            {
                "name": "ner",
                "head": "token_classification",
                "data": {"root": str(data_root), "train": "ner.conll", "split": {"dev": 0.25}},
            },
        ],
        "mixing": {"strategy": "temperature", "temperature": 2.0},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "train": {"batch_size": 8, "epochs": 2, "progress": False, "tensorboard": False},
    }
    return parse_recipe(base, [f"{k}={v}" for k, v in over.items()])


def test_multi_head_run_reports_each_task_and_the_mean(tiny_models, tiny_data, tmp_path):
    model_dir = tiny_models["bert", "sequence_classification"]
    run = tmp_path / "mt"
    summary = train(multitask_recipe(model_dir, tiny_data, run))
    dev = summary["dev"]
    assert {"sent/accuracy", "ner/f1", "mean"} <= set(dev)
    assert dev["mean"] == (dev["sent/accuracy"] + dev["ner/f1"]) / 2
    rates = summary["mixing_rates"]
    assert set(rates) == {"sent", "ner"} and abs(sum(rates.values()) - 1) < 1e-9
    labels = json.loads((run / "labels.json").read_text())
    assert set(labels) == {"sent", "ner"}
    assert (run / "best" / "tasks" / "sent" / "config.json").is_file()  # single-task export


def test_multi_head_resume_matches_uninterrupted(tiny_models, tiny_data, tmp_path):
    import pytest
    import torch
    from safetensors.torch import load_file

    from tunesmith.train.loop import Interrupted

    model_dir = tiny_models["bert", "sequence_classification"]
    over = {"train.max_steps": 6, "train.save_every": 2}
    train(multitask_recipe(model_dir, tiny_data, tmp_path / "a", **over))
    recipe = multitask_recipe(model_dir, tiny_data, tmp_path / "b", **over)
    with pytest.raises(Interrupted):
        train(recipe, interrupt_at_step=3)
    train(recipe, resume=True)
    a = load_file(str(tmp_path / "a/best/model.safetensors"))
    b = load_file(str(tmp_path / "b/best/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_multi_head_eval_and_predict_per_task(tiny_models, tiny_data, tmp_path):
    import pytest

    from tunesmith.errors import ConfigError
    from tunesmith.predict import evaluate_run, predict_texts

    run = tmp_path / "mt"
    summary = train(
        multitask_recipe(
            tiny_models["bert", "sequence_classification"], tiny_data, run, **{"train.max_steps": 3}
        )
    )
    again = evaluate_run(run, ("dev",))["dev"]
    assert again["mean"] == pytest.approx(summary["dev"]["mean"])
    assert predict_texts(run, ["good happy film"], task="sent")[0]["label"] in {"0", "1"}
    tags = predict_texts(run, ["the good movie"], task="ner")[0]
    assert [w for w, _ in tags] == ["the", "good", "movie"]
    with pytest.raises(ConfigError, match="needs --task"):
        predict_texts(run, ["x"])

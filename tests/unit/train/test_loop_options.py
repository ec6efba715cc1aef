"""Loop options: gradient accumulation invariance, early stopping, bf16 autocast, eval at start."""

import json

import torch
from safetensors.torch import load_file

from tunesmith.testing import save_tiny_model
from tunesmith.train.loop import train

from .conftest import make_recipe


def no_dropout_bert(path):
    save_tiny_model(path, "bert", "sequence_classification")
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_batch_times_accumulation_gives_the_same_trajectory(tiny_data, tmp_path):
    """batch 8 x accum 1 == batch 4 x accum 2 (same examples per step, loss averaged alike)."""
    model = no_dropout_bert(tmp_path / "m")
    common = {
        "train.length_grouping": "false",
        "train.max_steps": 5,
        "data.split": "{}",
        "optim.weight_decay": 0.0,
    }
    a = make_recipe(
        model,
        "sequence_classification",
        tiny_data,
        tmp_path / "a",
        **common,
        **{"train.batch_size": 8},
    )
    b = make_recipe(
        model,
        "sequence_classification",
        tiny_data,
        tmp_path / "b",
        **common,
        **{"train.batch_size": 4, "optim.grad_accum": 2},
    )
    train(a)
    train(b)
    wa, wb = (
        load_file(str(tmp_path / "a/best/model.safetensors")),
        load_file(str(tmp_path / "b/best/model.safetensors")),
    )
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k


def test_early_stopping_stops_when_dev_does_not_improve(tiny_models, tiny_data, tmp_path):
    recipe = make_recipe(
        tiny_models["bert", "sequence_classification"],
        "sequence_classification",
        tiny_data,
        tmp_path / "es",
        **{
            "optim.lr": 1e-9,
            "train.epochs": 10,
            "train.eval_every": 2,
            "train.early_stopping_patience": 2,
        },
    )
    summary = train(recipe)
    assert summary["steps"] == 6  # evals at 2 (best), 4 and 6 (no gain twice) -> stop
    assert summary["best_step"] == 2


def test_bf16_autocast_and_eval_at_start(tiny_models, tiny_data, tmp_path):
    recipe = make_recipe(
        tiny_models["llama", "causal_lm"],
        "causal_lm",
        tiny_data,
        tmp_path / "bf",
        **{"train.precision": "bf16", "train.max_steps": 3, "train.eval_at_start": "true"},
    )
    summary = train(recipe)
    assert summary["dev_at_start"]["loss"] > 0 and summary["dev"]["loss"] > 0
    records = [json.loads(x) for x in (tmp_path / "bf/metrics.jsonl").read_text().splitlines()]
    assert records[0]["split"] == "dev" and records[0]["step"] == 0

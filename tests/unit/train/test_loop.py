import json

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.errors import ConfigError, TrainingError
from tunesmith.registry import TASKS
from tunesmith.tasks import task_kind
from tunesmith.train.loop import Interrupted, train

from .conftest import make_recipe

# (architecture, task kind) pairs trained end to end; every registered kind must be among them
END_TO_END = [
    ("bert", "sequence_classification"),
    ("gpt2", "sequence_classification"),
    ("bert", "token_classification"),
    ("llama", "causal_lm"),
    ("t5", "seq2seq"),
]


def test_end_to_end_matrix_covers_every_task_kind():
    assert {task for _, task in END_TO_END} == set(TASKS.names())


@pytest.mark.parametrize(("arch", "task"), END_TO_END)
def test_each_task_trains_end_to_end(tiny_models, tiny_data, tmp_path, arch, task):
    run = tmp_path / "run"
    summary = train(make_recipe(tiny_models[arch, task], task, tiny_data, run))
    kind = task_kind(task)
    metric = "perplexity" if kind.generative else kind.default_metric
    assert metric in summary["dev"] and kind.default_metric in summary["dev"]
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "report.md",
        "best/config.json",
        "best/model.safetensors",
        "best/tunesmith.json",
    ):
        assert (run / name).exists(), name
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(x["split"] == "train" and "loss" in x and "tokens_per_s" in x for x in lines)
    assert any(x["split"] == "dev" for x in lines)


def test_classification_learns_the_toy_task(tiny_models, tiny_data, tmp_path):
    recipe = make_recipe(
        tiny_models["bert", "sequence_classification"],
        "sequence_classification",
        tiny_data,
        tmp_path / "r",
        **{"train.epochs": 8},
    )
    summary = train(recipe)
    assert summary["test"]["accuracy"] >= 0.9  # words decide the label: trivially learnable


def weights(run):
    return load_file(str(run / "best" / "model.safetensors"))


def test_resume_after_kill_gives_identical_weights(tiny_models, tiny_data, tmp_path):
    over = {"train.max_steps": 7, "train.save_every": 2, "data.split": "{}", "data.limit": "{}"}
    model = tiny_models["bert", "sequence_classification"]
    full = tmp_path / "full"
    train(make_recipe(model, "sequence_classification", tiny_data, full, **over))
    killed = tmp_path / "killed"
    recipe = make_recipe(model, "sequence_classification", tiny_data, killed, **over)
    with pytest.raises(Interrupted):
        train(recipe, interrupt_at_step=5)  # last checkpoint is step 4: step 5 is redone
    with pytest.raises(ConfigError, match="--resume"):
        train(recipe)
    train(recipe, resume=True)
    a, b = weights(full), weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_frozen_parameters_stay_bit_identical(tiny_models, tiny_data, tmp_path):
    model_dir = tiny_models["bert", "sequence_classification"]
    run = tmp_path / "frozen"
    train(
        make_recipe(
            model_dir,
            "sequence_classification",
            tiny_data,
            run,
            **{"transfer.freeze_embeddings": "true", "transfer.freeze_layers": 1},
        )
    )
    before = load_file(str(model_dir / "model.safetensors"))
    after = weights(run)
    for name, t in after.items():
        frozen = "embeddings" in name or "encoder.layer.0." in name
        if name in before and frozen:
            assert torch.equal(before[name], t), name
        elif name in before and "weight" in name:
            assert not torch.equal(before[name], t), f"{name} did not train"


def test_linear_probe_trains_only_the_head(tiny_models, tiny_data, tmp_path):
    model_dir = tiny_models["bert", "sequence_classification"]
    run = tmp_path / "probe"
    summary = train(
        make_recipe(
            model_dir,
            "sequence_classification",
            tiny_data,
            run,
            **{"transfer.linear_probe": "true"},
        )
    )
    before, after = load_file(str(model_dir / "model.safetensors")), weights(run)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith("classifier") for n in changed), changed
    assert summary["trainable_params"] < summary["total_params"] / 10


def test_gradual_unfreezing_opens_one_group_every_n_steps(tiny_models, tiny_data, tmp_path):
    model_dir = tiny_models["bert", "sequence_classification"]
    run = tmp_path / "gu"
    train(
        make_recipe(
            model_dir,
            "sequence_classification",
            tiny_data,
            run,
            **{
                "transfer.gradual_unfreeze": "{every: 3, unit: steps}",
                "data.split": "{}",  # no dev: best/ is the final model
                "transfer.layerwise_lr_decay": 0.5,
                "train.max_steps": 8,
            },
        )
    )
    before, after = load_file(str(model_dir / "model.safetensors")), weights(run)
    # groups: head (from step 0), block 2 (after 3 steps), block 1 (after 6), embeddings (after 9)
    emb = "bert.embeddings.word_embeddings.weight"
    first_block = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(before[first_block], after[first_block])  # trained in steps 7-8
    assert torch.equal(before[emb], after[emb])  # still frozen at step 8


def test_nan_loss_stops_with_clear_error(tiny_models, tiny_data, tmp_path, monkeypatch):
    import tunesmith.train.step as step

    monkeypatch.setattr(step, "task_loss", lambda task, logits, labels: logits.sum() * float("nan"))
    recipe = make_recipe(
        tiny_models["bert", "sequence_classification"],
        "sequence_classification",
        tiny_data,
        tmp_path / "nan",
    )
    with pytest.raises(TrainingError, match="non-finite loss .* step 1"):
        train(recipe)


def test_l2_sp_term_is_logged(tiny_models, tiny_data, tmp_path):
    run = tmp_path / "l2sp"
    train(
        make_recipe(
            tiny_models["bert", "sequence_classification"],
            "sequence_classification",
            tiny_data,
            run,
            objectives="[{name: l2_sp, weight: 0.01}]",
        )
    )
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("l2_sp" in x for x in lines if x["split"] == "train")

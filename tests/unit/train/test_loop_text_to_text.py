"""Text-to-text multi-task (T5 style) through the one loop: one generative model, task prefixes,
labels as words, per-task accuracy by scoring each task's label words."""

import pytest
import torch

from tunesmith.config import parse_recipe
from tunesmith.errors import ConfigError
from tunesmith.train.loop import train

WORDS = {"sent": {"0": "bad", "1": "good"}, "yesno": {"0": "no", "1": "yes"}}


def text_recipe(model_dir, data_root, run_dir, task="causal_lm", **over):
    def one(name, prefix):
        return {
            "name": name,
            "text": {"prefix": prefix, "fields": [["sentence", "text"]], "words": WORDS[name]},
            "data": {
                "root": str(data_root),
                "train": {"path": "sent.txt", "format": "label_text"},
                "split": {"dev": 0.25, "test": 0.25},
                "template": "plain",
                "max_length": 32,
            },
        }

    base = {
        "model": str(model_dir),
        "task": task,
        "output_dir": str(run_dir),
        "seed": 3,
        "tasks": [one("sent", "sst2"), one("yesno", "answer")],
        "mixing": {"strategy": "equal"},
        "optim": {"lr": 3e-3, "warmup_steps": 1},
        "train": {"batch_size": 8, "max_steps": 12, "progress": False, "tensorboard": False},
    }
    return parse_recipe(base, [f"{k}={v}" for k, v in over.items()])


@pytest.mark.parametrize("arch,task", [("llama", "causal_lm"), ("t5", "seq2seq")])
def test_text_to_text_run_scores_each_task_by_its_label_words(
    arch, task, tiny_models, tiny_data, tmp_path
):
    from tunesmith.data.pipeline import build_task_datasets
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.train.scoring import classify_by_scoring

    run = tmp_path / "t2t"
    recipe = text_recipe(tiny_models[arch, task], tiny_data, run, task=task)
    summary = train(recipe)
    dev = summary["dev"]
    assert {"sent/accuracy", "yesno/accuracy", "mean"} <= set(dev)
    assert dev["mean"] == pytest.approx((dev["sent/accuracy"] + dev["yesno/accuracy"]) / 2)
    assert summary["mixing_rates"] == {"sent": 0.5, "yesno": 0.5}
    # the reported accuracy is the argmax over the label words of the reloaded best model
    tok = load_tokenizer(str(run / "best"))
    model = load_model(str(run / "best"), task)
    data = build_task_datasets(recipe, tok)
    prompts, gold = data.tasks["sent"].text_eval["test"]
    assert prompts[0].startswith("sst2 sentence: ")
    assert set(gold) <= {"bad", "good"}
    kw = {"template": "plain"} if task == "causal_lm" else {}
    preds = classify_by_scoring(model, tok, prompts, ["bad", "good"], **kw)
    acc = sum(["bad", "good"][p] == g for p, g in zip(preds, gold, strict=True)) / len(gold)
    assert summary["test"]["sent/accuracy"] == pytest.approx(acc)


def test_text_to_text_trains_only_on_the_label_word(tiny_models, tiny_data, tmp_path):
    from tunesmith.data.encode import IGNORE_INDEX
    from tunesmith.data.pipeline import build_task_datasets
    from tunesmith.models import load_tokenizer

    model_dir = tiny_models["llama", "causal_lm"]
    recipe = text_recipe(model_dir, tiny_data, tmp_path / "x")
    tok = load_tokenizer(str(model_dir))
    data = build_task_datasets(recipe, tok)
    ex = data.tasks["yesno"].train[0]
    target = [
        t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE_INDEX
    ]
    word = data.tasks["yesno"].raw["train"][0]["label"]
    expected = tok(WORDS["yesno"][word], add_special_tokens=False)["input_ids"]
    assert target == expected + [tok.eos_token_id]
    assert {e["task"] for e in data.train} == {"sent", "yesno"}


def test_text_to_text_learns_the_mapping(tiny_models, tiny_data, tmp_path):
    """12 steps on a separable toy task: the dev accuracy of both tasks rises above chance."""
    torch.manual_seed(0)
    recipe = text_recipe(
        tiny_models["llama", "causal_lm"], tiny_data, tmp_path / "l", **{"train.max_steps": 30}
    )
    summary = train(recipe)
    assert summary["dev"]["mean"] >= 0.75, summary["dev"]


@pytest.mark.parametrize(
    "change,where",
    [
        ({"head": "sequence_classification"}, "tasks[0].head"),
        ({"text": {"fields": [["sentence"]]}}, "tasks[0].text.fields[0]"),
    ],
)
def test_text_to_text_config_errors(change, where, tiny_models, tiny_data, tmp_path):
    recipe = text_recipe(tiny_models["llama", "causal_lm"], tiny_data, tmp_path / "e")
    from tunesmith.configschema import to_dict

    raw = to_dict(recipe)
    raw["tasks"][0].update(change)
    with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_recipe(raw)


def test_multi_head_tasks_need_a_head_and_no_text(tiny_models, tiny_data, tmp_path):
    recipe = text_recipe(tiny_models["llama", "causal_lm"], tiny_data, tmp_path / "e")
    from tunesmith.configschema import to_dict

    raw = to_dict(recipe)
    raw["task"] = "multi_head"
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.head"):
        parse_recipe(raw)
    raw["tasks"] = [{**t, "head": "sequence_classification"} for t in raw["tasks"]]
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.text"):
        parse_recipe(raw)


def test_text_to_text_eval_and_predict(tiny_models, tiny_data, tmp_path):
    from tunesmith.predict import evaluate_run, predict_texts

    run = tmp_path / "t2t"
    summary = train(text_recipe(tiny_models["llama", "causal_lm"], tiny_data, run))
    again = evaluate_run(run, ("dev",))["dev"]
    assert again["mean"] == pytest.approx(summary["dev"]["mean"])
    out = predict_texts(run, ["the film was good"], task="yesno")[0]
    assert out["label"] in {"0", "1"} and out["word"] == WORDS["yesno"][out["label"]]
    assert 0.5 <= out["score"] <= 1.0
    with pytest.raises(ConfigError, match="needs --task"):
        predict_texts(run, ["x"])

"""``predict_texts`` on finished tiny runs of each task, and prompts tokenised as at training time."""

import json
import random

import pytest

from tunesmith.data.encode import IGNORE_INDEX, encode_seq2seq
from tunesmith.data.lmencode import encode_causal_lm
from tunesmith.data.pipeline import load_raw_splits
from tunesmith.errors import TunesmithError
from tunesmith.models import load_tokenizer
from tunesmith.predict import predict_texts, prompt_inputs
from tunesmith.testing import BOS_ID
from tunesmith.train.loop import train

from .conftest import NEG, POS, make_recipe, sentence


@pytest.fixture(scope="module")
def runs(tiny_models, tiny_data, tmp_path_factory):
    """One finished run per task (trained once for the module)."""
    root = tmp_path_factory.mktemp("predict-runs")
    specs = {
        "sequence_classification": ("bert", {"train.epochs": 3}),
        "token_classification": ("bert", {"train.epochs": 3}),
        "causal_lm": ("llama", {"train.max_steps": 4}),
        "seq2seq": ("t5", {"train.max_steps": 4, "data.prefix": "'copy : '"}),
    }
    out = {}
    for task, (arch, over) in specs.items():
        recipe = make_recipe(tiny_models[arch, task], task, tiny_data, root / task, **over)
        out[task] = (recipe, root / task, train(recipe))
    return out


def test_classification_labels_come_from_labels_json(runs):
    recipe, run, summary = runs["sequence_classification"]
    dev = load_raw_splits(recipe)["dev"]
    preds = predict_texts(run, [r["text"] for r in dev])
    labels = json.loads((run / "labels.json").read_text())
    assert {p["label"] for p in preds} <= set(labels)
    assert all(0.5 <= p["score"] <= 1.0 for p in preds)
    # predict tokenises like training: it reproduces the dev accuracy of the best model
    accuracy = sum(p["label"] == r["label"] for p, r in zip(preds, dev, strict=True)) / len(dev)
    assert accuracy == pytest.approx(summary["dev"]["accuracy"])

    (run / "labels.json").write_text(json.dumps(["negative", "positive"]))
    try:
        renamed = predict_texts(run, [r["text"] for r in dev[:4]])
    finally:
        (run / "labels.json").write_text(json.dumps(labels))
    assert [p["label"] for p in renamed] == [
        {"0": "negative", "1": "positive"}[p["label"]] for p in preds[:4]
    ]


def test_pair_classification_takes_tab_separated_pairs(tiny_models, tiny_data, tmp_path):
    rng = random.Random(1)
    rows = [
        {"premise": sentence(rng, POS), "hypothesis": sentence(rng, POS if i % 2 else NEG),
         "label": "same" if i % 2 else "differ"}
        for i in range(48)
    ]  # fmt: skip
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    over = {"data.root": str(tmp_path), "data.train": "pairs.jsonl", "data.text_key": "premise",
            "data.text_pair_key": "hypothesis"}  # fmt: skip
    model = tiny_models["bert", "sequence_classification"]
    recipe = make_recipe(model, "sequence_classification", tiny_data, tmp_path / "run", **over)
    summary = train(recipe)
    dev = load_raw_splits(recipe)["dev"]
    preds = predict_texts(tmp_path / "run", [f"{r['premise']}\t{r['hypothesis']}" for r in dev])
    accuracy = sum(p["label"] == r["label"] for p, r in zip(preds, dev, strict=True)) / len(dev)
    assert accuracy == pytest.approx(summary["dev"]["accuracy"])  # pairs encoded as in training
    with pytest.raises(TunesmithError, match="first<TAB>second"):
        predict_texts(tmp_path / "run", ["no second text"])


def test_token_classification_tags_every_word(runs):
    recipe, run, summary = runs["token_classification"]
    dev = load_raw_splits(recipe)["dev"]
    tagged = predict_texts(run, [" ".join(r["tokens"]) for r in dev])
    labels = set(json.loads((run / "labels.json").read_text()))
    for pairs, record in zip(tagged, dev, strict=True):
        assert [w for w, _ in pairs] == record["tokens"]
        assert {t for _, t in pairs} <= labels
    right = sum(
        t == g
        for pairs, r in zip(tagged, dev, strict=True)
        for (_, t), g in zip(pairs, r["tags"], strict=True)
    )
    # one tag per word on its first sub-token, as the token accuracy of evaluation counts it
    assert right / sum(len(r["tags"]) for r in dev) == pytest.approx(summary["dev"]["accuracy"])


def test_causal_lm_generates_text(runs):
    _, run, _ = runs["causal_lm"]
    first = predict_texts(run, ["say good", "say bad"], max_new_tokens=5)
    assert len(first) == 2 and all(isinstance(p["generated"], str) for p in first)
    assert predict_texts(run, ["say good", "say bad"], max_new_tokens=5) == first  # greedy


def test_seq2seq_generates_text(runs):
    _, run, _ = runs["seq2seq"]
    (pred,) = predict_texts(run, ["copy good"], max_new_tokens=4)
    assert isinstance(pred["generated"], str)


@pytest.mark.parametrize(
    "over",
    [
        {"data.template": "chat"},
        {"data.template": "chat", "data.system": "be brief"},
        {"data.template": "alpaca"},  # the tokenizer adds <s>: training and predict alike
        {"data.template": "plain"},
        {"data.template": "plain", "data.prompt_key": "question", "data.response_key": "answer"},
    ],
    ids=["chat", "chat-system", "alpaca", "plain", "plain-prompt-key"],
)
def test_causal_prompt_matches_the_training_prompt(tiny_models, tiny_data, tmp_path, over):
    model_dir = tiny_models["llama", "causal_lm"]
    recipe = make_recipe(model_dir, "causal_lm", tiny_data, tmp_path, **over)
    tok, cfg = load_tokenizer(str(model_dir)), recipe.data
    text = "what is the name of the cat ?"
    record = {cfg.prompt_key or "instruction": text, cfg.response_key: "a dog"}
    (ex,) = encode_causal_lm(
        [record],
        tok,
        template=cfg.template,
        prompt_key=cfg.prompt_key,
        response_key=cfg.response_key,
        system=cfg.system,
    )
    n_prompt = next(i for i, y in enumerate(ex["labels"]) if y != IGNORE_INDEX)
    ids = prompt_inputs(recipe, tok, text)["input_ids"][0].tolist()
    assert ids == ex["input_ids"][:n_prompt]
    assert ids[0] == BOS_ID and ids.count(BOS_ID) == 1


def test_plain_lm_prompt_is_the_text_as_trained(tiny_models, tiny_data, tmp_path):
    model_dir = tiny_models["llama", "causal_lm"]
    recipe = make_recipe(
        model_dir, "causal_lm", tiny_data, tmp_path, **{"data.lm_text_key": "output"}
    )
    tok = load_tokenizer(str(model_dir))
    (ex,) = encode_causal_lm([{"output": "the cat is good"}], tok, text_key="output")
    assert (
        prompt_inputs(recipe, tok, "the cat is good")["input_ids"][0].tolist()
        == ex["input_ids"][:-1]
    )


def test_seq2seq_prompt_matches_the_training_source(tiny_models, tiny_data, tmp_path):
    model_dir = tiny_models["t5", "seq2seq"]
    recipe = make_recipe(model_dir, "seq2seq", tiny_data, tmp_path, **{"data.prefix": "'copy : '"})
    tok = load_tokenizer(str(model_dir))
    (ex,) = encode_seq2seq([{"source": "good dog", "target": "x"}], tok, prefix="copy : ")
    assert prompt_inputs(recipe, tok, "good dog")["input_ids"][0].tolist() == ex["input_ids"]


def test_label_names_reach_predict_best_config_and_report(tiny_models, tiny_data, tmp_path):
    # issue 18 item 4: predict printed "label": "4"; names are now declared in the recipe
    from tunesmith.predict import evaluate_run
    from tunesmith.report import write_report

    model = tiny_models["bert", "sequence_classification"]
    names = "{'0': negative, '1': positive}"
    recipe = make_recipe(
        model, "sequence_classification", tiny_data, tmp_path / "run", **{"data.label_names": names}
    )
    summary = train(recipe)
    run = tmp_path / "run"
    assert json.loads((run / "labels.json").read_text()) == ["0", "1"]  # data stays raw
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}  # an HF pipeline shows names
    assert config["label2id"] == {"negative": 0, "positive": 1}
    dev = load_raw_splits(recipe)["dev"]
    preds = predict_texts(run, [r["text"] for r in dev])
    assert {(p["label"], p["raw_label"]) for p in preds} <= {("negative", "0"), ("positive", "1")}
    accuracy = sum(p["raw_label"] == r["label"] for p, r in zip(preds, dev, strict=True)) / len(dev)
    assert accuracy == pytest.approx(summary["dev"]["accuracy"])
    assert evaluate_run(run)["dev"]["accuracy"] == pytest.approx(summary["dev"]["accuracy"])
    report = write_report(run).read_text()
    assert (
        "| id | label | name |\n|---|---|---|\n| 0 | 0 | negative |\n| 1 | 1 | positive |" in report
    )
    # ... and the confusion matrix (summary.json and report.md), rows gold, columns predicted
    dev_matrix = summary["confusion"]["dev"]
    assert dev_matrix["labels"] == ["negative", "positive"]
    m = dev_matrix["matrix"]
    assert sum(map(sum, m)) == len(dev)
    assert [sum(row) for row in m] == [sum(r["label"] == y for r in dev) for y in ("0", "1")]
    assert (m[0][0] + m[1][1]) / len(dev) == pytest.approx(summary["dev"]["accuracy"])
    assert "## Confusion matrix" in report
    assert "| gold \\ predicted | negative | positive |" in report
    assert f"| negative | {m[0][0]} | {m[0][1]} |" in report

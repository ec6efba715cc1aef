"""Per-task evaluation of a multi-head model and the macro average over tasks."""

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.data import Collator, LabelVocab, encode_classification, encode_token_classification
from tunesmith.errors import ConfigError
from tunesmith.testing import NER_TAGS, SENT_LABELS
from tunesmith.train.evaluation import (
    MEAN_KEY,
    TaskEval,
    evaluate_tasks,
    flatten_task_metrics,
    macro_average,
    primary_metric,
    shard_batches,
)
from tunesmith.train.scoring import classify_by_scoring, evaluate_text_to_text


def test_macro_average_by_hand():
    per_task = {"a": {"accuracy": 0.9, "macro_f1": 0.1}, "b": {"accuracy": 0.6}, "n": {"f1": 0.3}}
    metrics = {"a": "accuracy", "b": "accuracy", "n": "f1"}
    assert macro_average(per_task, metrics) == pytest.approx((0.9 + 0.6 + 0.3) / 3)
    flat = flatten_task_metrics(per_task, metrics)
    assert flat["a/macro_f1"] == 0.1 and flat["n/f1"] == 0.3
    assert flat[MEAN_KEY] == pytest.approx(0.6)


def test_macro_average_refuses_mixed_directions_and_missing_metrics():
    with pytest.raises(ConfigError, match="higher"):
        macro_average({"a": {"accuracy": 1.0}, "b": {"loss": 2.0}}, {"a": "accuracy", "b": "loss"})
    with pytest.raises(ConfigError, match="tasks\\[a\\].metric"):
        macro_average({"a": {"accuracy": 1.0}}, {"a": "f1"})


def test_primary_metric_defaults():
    assert primary_metric("sequence_classification") == "accuracy"
    assert primary_metric("token_classification") == "f1"
    assert primary_metric("seq2seq", "exact_match") == "exact_match"
    with pytest.raises(ConfigError):
        primary_metric("qa")


def test_evaluate_tasks_uses_each_head(multihead, bert_tokenizer):
    sent_vocab, ner_vocab = LabelVocab(SENT_LABELS), LabelVocab(NER_TAGS)
    sent = encode_classification(
        [
            {"text": t, "label": SENT_LABELS[i % 3]}
            for i, t in enumerate(
                ["the cat", "a bad dog", "i love this film", "no", "very happy people", "sad"]
            )
        ],
        bert_tokenizer,
        sent_vocab,
    )
    ner = encode_token_classification(
        [
            {"tokens": ["the", "man", "came", "home"], "tags": ["O", "B-PER", "O", "B-LOC"]},
            {"tokens": ["mother", "and", "father"], "tags": ["B-PER", "O", "B-PER"]},
        ],
        bert_tokenizer,
        ner_vocab,
    )
    tasks = {
        "sent": TaskEval(sent, "sequence_classification", sent_vocab),
        "ner": TaskEval(ner, "token_classification", ner_vocab),
        "empty": TaskEval([], "sequence_classification"),
    }
    collator = Collator(pad_token_id=bert_tokenizer.pad_token_id)
    multihead.train()
    got = evaluate_tasks(multihead, tasks, collator, Accelerator(cpu=True), batch_size=4)
    assert set(got) == {"sent", "ner"}
    assert multihead.training  # restored
    assert {"accuracy", "macro_f1"} <= set(got["sent"]) and "f1" in got["ner"]
    multihead.eval()
    with torch.no_grad():
        b = collator(sent)
        preds = multihead(
            **{k: v for k, v in b.items() if k != "labels"}, task="sent"
        ).logits.argmax(-1)
    assert got["sent"]["accuracy"] == pytest.approx(float((preds == b["labels"]).float().mean()))
    metrics = {t: primary_metric(tasks[t].kind) for t in got}
    flat = flatten_task_metrics(got, metrics)
    assert flat[MEAN_KEY] == pytest.approx((got["sent"]["accuracy"] + got["ner"]["f1"]) / 2)


def test_evaluate_text_to_text(tiny_lms):
    model = AutoModelForCausalLM.from_pretrained(tiny_lms["llama"])
    tok = AutoTokenizer.from_pretrained(tiny_lms["llama"])
    prompts = ["the movie was good", "a bad film", "i love it", "no"]
    words = ["positive", "negative"]
    gold = ["positive", "negative", "positive", "negative"]
    preds = classify_by_scoring(model, tok, prompts, words)
    got = evaluate_text_to_text(model, tok, prompts, gold, words)
    want = sum(words[p] == g for p, g in zip(preds, gold, strict=True)) / 4
    assert got["accuracy"] == pytest.approx(want)
    with pytest.raises(ValueError, match="not among"):
        evaluate_text_to_text(model, tok, prompts[:1], ["maybe"], words)


@pytest.mark.parametrize("n", [1, 7, 10, 11, 12])
def test_every_process_runs_as_many_eval_forwards(n):
    """Uneven shards (11 examples, batches of 5, 2 processes: 2 batches vs 1) get filler batches
    so a sharded model's forwards line up; the real batches still cover every example once."""
    examples = [{"input_ids": [1] * (i % 4 + 1), "labels": [0]} for i in range(n)]

    def collate(rows):
        return {"input_ids": torch.tensor([r["input_ids"][:1] for r in rows])}

    per_rank = [
        list(shard_batches(examples, collate, 5, torch.device("cpu"), rank, 2)) for rank in (0, 1)
    ]
    assert len(per_rank[0]) == len(per_rank[1])
    real = sorted(i for batches in per_rank for idx, _ in batches if idx is not None for i in idx)
    assert real == list(range(n))

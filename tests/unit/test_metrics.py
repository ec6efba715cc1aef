"""Metrics against hand-computed values, and entity F1 against seqeval."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest

from tunesmith.errors import ConfigError
from tunesmith.metrics import (
    METRICS,
    accuracy,
    compute_metrics,
    confusion_matrix,
    entity_f1,
    entity_spans,
    exact_match,
    macro_f1,
    normalize_answer,
    perplexity,
)


def test_accuracy_hand_computed():
    # matches at positions 0, 1, 3 -> 3 / 5
    assert accuracy([0, 1, 2, 2, 1], [0, 1, 1, 2, 0]) == pytest.approx(0.6)
    assert accuracy(np.array([[1, 0], [0, 0]]), np.array([[1, 1], [0, 0]])) == 0.75


def test_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])


def test_macro_f1_three_classes_by_hand():
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 2, 2]
    # class 0: TP=2 FP=0 FN=1 -> F1 = 4 / (4 + 0 + 1) = 0.8
    # class 1: TP=1 FP=1 FN=1 -> F1 = 2 / (2 + 1 + 1) = 0.5
    # class 2: TP=1 FP=1 FN=0 -> F1 = 2 / (2 + 1 + 0) = 2/3
    # macro = (0.8 + 0.5 + 0.6667) / 3 = 0.65556
    expected = (0.8 + 0.5 + 2 / 3) / 3
    assert macro_f1(preds, labels) == pytest.approx(expected)
    # with num_labels=4, class 3 never occurs and counts as F1 = 0: (0.8 + 0.5 + 2/3 + 0) / 4
    assert macro_f1(preds, labels, num_labels=4) == pytest.approx((0.8 + 0.5 + 2 / 3) / 4)


def test_macro_f1_class_only_in_preds_and_no_tp():
    # classes {0, 1}: class 0 TP=1 FP=0 FN=1 -> 2/3; class 1 TP=0 -> 0; macro = 1/3
    assert macro_f1([0, 1], [0, 0]) == pytest.approx(1 / 3)
    assert macro_f1([1, 1], [1, 1]) == 1.0


def test_macro_f1_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    assert macro_f1(p, y) == pytest.approx(sklearn_metrics.f1_score(y, p, average="macro"))


def test_macro_f1_rejects_ids_outside_num_labels():
    with pytest.raises(ValueError, match="outside 0..2"):
        macro_f1([0, 1], [0, -100], num_labels=3)


def test_entity_spans_iob2_iob1_and_type_changes():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    # I- without B- starts a chunk (IOB1); B- after I- of the same type splits it
    assert entity_spans(["I-PER", "I-PER", "B-PER", "O"]) == {("PER", 0, 1), ("PER", 2, 2)}
    # a type change ends the chunk even without B-
    assert entity_spans(["B-PER", "I-LOC", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 2)}
    assert entity_spans(["O", "O"]) == set()
    assert entity_spans([]) == set()
    # a chunk still open at the end is closed
    assert entity_spans(["O", "I-MISC"]) == {("MISC", 1, 1)}


def test_entity_f1_hand_computed():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    # true {PER 0-1, LOC 3, ORG s2:0}; pred {PER 0-1, ORG 3, ORG s2:0, LOC s2:1}; correct = 2
    # precision = 2/4, recall = 2/3, f1 = 2 * 0.5 * 0.6667 / 1.1667 = 4/7
    scores = entity_f1(true, pred)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(4 / 7)


def test_entity_f1_no_entities_is_zero_not_error():
    assert entity_f1([["O"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_entity_f1_rejects_length_mismatch():
    with pytest.raises(ValueError, match="sentence 1"):
        entity_f1([["O"], ["O", "O"]], [["O"], ["O"]])


def _seqeval_scores(true, pred):
    sl = pytest.importorskip("seqeval.metrics.sequence_labeling")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on 0/0 and on non-NE tags
        return (
            {"precision": sl.precision_score(true, pred), "recall": sl.recall_score(true, pred)}
            | {"f1": sl.f1_score(true, pred)},
            sl.get_entities,
        )


HAND_MADE = [
    ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"],
    ["I-PER", "I-PER", "B-PER", "I-LOC", "O", "I-MISC"],
    ["B-PER", "B-PER", "I-ORG", "B-ORG", "I-PER", "O"],
    ["O", "O", "O"],
    ["I-LOC"],
    ["B-MISC", "I-MISC", "I-MISC", "I-MISC"],
]


def test_entity_spans_match_seqeval_get_entities():
    _, get_entities = _seqeval_scores([["O"]], [["O"]])
    rng = random.Random(0)
    tags = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-MISC", "B", "I", "B-A-B"]
    sequences = HAND_MADE + [
        [rng.choice(tags) for _ in range(rng.randint(0, 12))] for _ in range(300)
    ]
    for seq in sequences:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert entity_spans(seq) == set(get_entities(seq)), seq


def test_entity_f1_matches_seqeval_on_hand_made_and_random_tags():
    rng = random.Random(1)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-MISC", "B-MISC"]
    for trial in range(40):
        if trial == 0:
            true, pred = HAND_MADE, [list(reversed(s)) for s in HAND_MADE]
        else:
            lengths = [rng.randint(1, 10) for _ in range(rng.randint(1, 8))]
            true = [[rng.choice(tags) for _ in range(n)] for n in lengths]
            # mostly-correct predictions so precision/recall are not all ~0
            pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in true]
        expected, _ = _seqeval_scores(true, pred)
        got = entity_f1(true, pred)
        for key in ("precision", "recall", "f1"):
            assert got[key] == pytest.approx(expected[key]), (key, true, pred)


def test_exact_match_squad_normalisation():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a day") == "apple day"
    preds = ["The Eiffel Tower.", "paris", "42", "a cat"]
    refs = ["eiffel tower", "Paris ", "forty-two", ["dog", "Cat"]]
    # matches: 0 (articles + punctuation), 1 (case + space), 3 (any of several refs) -> 3/4
    assert exact_match(preds, refs) == 0.75
    # without normalisation every case / punctuation / article difference is a miss
    assert exact_match(preds, refs, normalize=False) == 0.0
    assert exact_match(["x"], ["x"], normalize=False) == 1.0


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(20.0)) == pytest.approx(20.0)
    assert perplexity(1000.0) == math.inf  # exp(1000) would overflow
    assert math.isnan(perplexity(float("nan")))


def test_registry_holds_all_metrics():
    assert METRICS.names() == ["accuracy", "entity_f1", "exact_match", "macro_f1", "perplexity"]
    assert METRICS.get("accuracy") is accuracy
    with pytest.raises(ConfigError, match="unknown metric"):
        METRICS.get("bleu", "eval.metric")


def test_compute_metrics_sequence_classification_ids_and_logits():
    out = compute_metrics(
        "sequence_classification", preds=[0, 0, 1, 1, 2, 2], labels=[0, 0, 0, 1, 1, 2]
    )
    assert out == pytest.approx({"accuracy": 4 / 6, "macro_f1": (0.8 + 0.5 + 2 / 3) / 3})
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 0.0]])  # argmax -> [0, 1]; class 2 absent
    out = compute_metrics("sequence_classification", preds=logits, labels=[0, 0])
    # class 0: TP=1 FN=1 -> 2/3; class 1: 0; class 2: 0 -> macro = 2/9
    assert out == pytest.approx({"accuracy": 0.5, "macro_f1": 2 / 9})


def test_compute_metrics_token_classification():
    id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}
    labels = [[1, 2, 0, 3], [0, 1]]
    preds = [[1, 2, 0, 0], [0, 1]]
    # true entities {PER 0-1, LOC 3, PER s2:1}; pred {PER 0-1, PER s2:1} -> P=1, R=2/3, F1=0.8
    # token accuracy: 5 of 6 tokens right
    out = compute_metrics("token_classification", preds=preds, labels=labels, id2label=id2label)
    assert out == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "accuracy": 5 / 6})
    as_list = ["O", "B-PER", "I-PER", "B-LOC"]
    str_keys = {str(k): v for k, v in id2label.items()}
    for names in (as_list, str_keys):
        assert (
            compute_metrics("token_classification", preds=preds, labels=labels, id2label=names)
            == out
        )
    with pytest.raises(ValueError, match="label id 7"):
        compute_metrics("token_classification", preds=[[7]], labels=[[0]], id2label=id2label)
    with pytest.raises(ValueError, match="id2label"):
        compute_metrics("token_classification", preds=preds, labels=labels)


def test_compute_metrics_generation_tasks():
    out = compute_metrics("causal_lm", mean_nll=math.log(8.0))
    assert out == pytest.approx({"loss": math.log(8.0), "perplexity": 8.0})
    out = compute_metrics(
        "seq2seq", mean_nll=0.0, preds=["Paris", "Rome"], labels=["paris", "Oslo"]
    )
    assert out == {"loss": 0.0, "perplexity": 1.0, "exact_match": 0.5}
    with pytest.raises(ValueError, match="mean_nll"):
        compute_metrics("causal_lm")


def test_compute_metrics_unknown_task_is_a_config_error():
    with pytest.raises(ConfigError, match="sequence_classification"):
        compute_metrics("regression", preds=[1.0], labels=[1.0])


def test_confusion_matrix_by_hand():
    # gold 0,0,1,2,2,2 predicted 0,1,1,2,0,2 -> rows gold, columns predicted
    m = confusion_matrix([0, 1, 1, 2, 0, 2], [0, 0, 1, 2, 2, 2], 3)
    assert m == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert confusion_matrix([], [], 2) == [[0, 0], [0, 0]]
    with pytest.raises(ValueError):
        confusion_matrix([0], [0, 1], 2)

"""Diagonal Fisher: per-example squared gradients of the trainable parameters only."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tunesmith.data.collate import Collator
from tunesmith.models import load_model
from tunesmith.objectives.continual.fisher import (
    diagonal_fisher,
    normalize_fisher,
    online_update,
    sample_labels,
)
from tunesmith.objectives.continual.penalty import quadratic_penalty


class BagOfWords(nn.Module):
    """logits = W (sum of frozen embeddings) + b: a linear model with a hand-computable Fisher."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = nn.Embedding(10, 3)
        self.emb.weight.data = torch.randn(10, 3, generator=g)
        self.emb.weight.requires_grad_(False)
        self.fc = nn.Linear(3, 4)
        self.fc.weight.data = torch.randn(4, 3, generator=g)
        self.fc.bias.data = torch.randn(4, generator=g)

    def features(self, ids):
        return self.emb(torch.tensor(ids)).sum(0)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.fc(self.emb(input_ids).sum(1)))


EXAMPLES = [
    {"input_ids": [1, 2], "attention_mask": [1, 1], "labels": 0},
    {"input_ids": [3, 4, 5], "attention_mask": [1, 1, 1], "labels": 2},
    {"input_ids": [6], "attention_mask": [1], "labels": 3},
]


def _hand_fisher(model):
    fw, fb = torch.zeros(4, 3), torch.zeros(4)
    for ex in EXAMPLES:
        x = model.features(ex["input_ids"])
        p = torch.softmax(model.fc.weight @ x + model.fc.bias, -1)
        e = torch.nn.functional.one_hot(torch.tensor(ex["labels"]), 4).float()
        fw += torch.outer(p - e, x) ** 2  # d CE / dW = (p - e) x^T
        fb += (p - e) ** 2
    return fw / len(EXAMPLES), fb / len(EXAMPLES)


def test_empirical_fisher_equals_the_per_example_squared_gradient_mean():
    model = BagOfWords()
    fisher = diagonal_fisher(model, EXAMPLES, Collator(0), "sequence_classification")
    assert set(fisher) == {"fc.weight", "fc.bias"}  # the frozen embedding is left out
    fw, fb = _hand_fisher(model)
    torch.testing.assert_close(fisher["fc.weight"], fw)
    torch.testing.assert_close(fisher["fc.bias"], fb)
    # not the square of the mean gradient (what a batched estimate would give)
    assert not torch.allclose(fisher["fc.bias"], torch.zeros(4))


def test_sampled_fisher_converges_to_the_true_fisher():
    model = BagOfWords()
    ex = EXAMPLES[1]
    fisher = diagonal_fisher(
        model, [ex], Collator(0), "sequence_classification", kind="sampled", n_samples=3000
    )
    x = model.features(ex["input_ids"])
    p = torch.softmax(model.fc.weight @ x + model.fc.bias, -1)
    # X_c = (p_c - [c = y])^2 with y ~ p: E X_c = p_c (1 - p_c); 4 standard errors of the mean
    true_b = p * (1 - p)
    second = p * (1 - p) ** 4 + (1 - p) * p**4
    se = ((second - true_b**2) / 3000).sqrt()
    assert ((fisher["fc.bias"] - true_b).abs() <= 4 * se).all()
    assert (
        (fisher["fc.weight"] - torch.outer(true_b, x**2)).abs() <= 4 * torch.outer(se, x**2)
    ).all()


def test_max_examples_takes_a_seeded_subset_and_restores_train_mode():
    model = BagOfWords().train()
    a = diagonal_fisher(model, EXAMPLES, Collator(0), "sequence_classification", max_examples=2)
    b = diagonal_fisher(model, EXAMPLES, Collator(0), "sequence_classification", max_examples=2)
    torch.testing.assert_close(a, b)
    assert model.training


def test_causal_lm_fisher_is_token_level_and_masked(tiny_llama):
    model = load_model(tiny_llama, "causal_lm")
    ex = {
        "input_ids": [5, 20, 21, 22, 23],
        "attention_mask": [1] * 5,
        "labels": [-100, -100, 21, 22, 23],
    }
    masked = {**ex, "labels": [-100] * 5}  # nothing to score: skipped
    collate = Collator(0)
    one = diagonal_fisher(model, [ex], collate, "causal_lm")
    both = diagonal_fisher(model, [ex, masked], collate, "causal_lm")
    torch.testing.assert_close(one, both)
    assert set(one) == {n for n, _ in model.named_parameters()}
    assert all(torch.isfinite(f).all() and (f >= 0).all() for f in one.values())
    assert sum(float(f.sum()) for f in one.values()) > 0
    sampled = diagonal_fisher(model, [ex], collate, "causal_lm", kind="sampled", n_samples=2)
    assert all(torch.isfinite(f).all() for f in sampled.values())


def test_sampled_labels_keep_the_mask_and_the_shift():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([[-100, -100, 4, 5]])
    logits = torch.full((1, 4, 8), -1e4)
    logits[0, 1, 7] = logits[0, 2, 6] = 0.0  # positions 1, 2 predict tokens 2, 3 -> 7, 6
    out = sample_labels("causal_lm", logits, labels, g)
    assert out.tolist() == [[-100, -100, 7, 6]]
    out = sample_labels("token_classification", logits, labels, g)
    assert out[0, :2].tolist() == [-100, -100] and out[0, 2].item() == 6


def test_fisher_covers_only_lora_and_head_under_an_adapter(tiny_bert):
    from tunesmith.adapters import LoraConfig, add_adapter, mark_trainable

    model = load_model(tiny_bert, "sequence_classification")
    add_adapter(model, "lora", LoraConfig(r=2))
    trainable = set(mark_trainable(model, "lora", train_head=True))
    ex = {
        "input_ids": [2, 20, 21, 3],
        "attention_mask": [1] * 4,
        "token_type_ids": [0] * 4,
        "labels": 1,
    }
    fisher = diagonal_fisher(model, [ex], Collator(0), "sequence_classification")
    assert set(fisher) == trainable
    assert any("lora" in n for n in fisher) and "classifier.weight" in fisher
    assert not any(
        "attention.self.query.weight" == n.split("bert.encoder.layer.0.")[-1] for n in fisher
    )


def test_online_update_decays_the_old_fisher():
    old = {"w": torch.tensor([1.0, 2.0]), "gone": torch.tensor([5.0])}
    new = {"w": torch.tensor([0.5, 0.5]), "fresh": torch.tensor([3.0])}
    out = online_update(old, new, gamma=0.5)
    torch.testing.assert_close(out["w"], torch.tensor([1.0, 1.5]))  # 0.5 * old + new
    torch.testing.assert_close(out["fresh"], torch.tensor([3.0]))
    assert "gone" not in out  # only parameters that still train
    torch.testing.assert_close(online_update(None, new, 0.9)["w"], new["w"])
    with pytest.raises(ValueError, match="gamma"):
        online_update(old, new, 1.5)


# -- scale-free importance (issue 18, item 1: a lambda that transfers) ---------------------------


class TwoParams(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))


def _mean(fisher):
    return sum(float(f.sum()) for f in fisher.values()) / sum(f.numel() for f in fisher.values())


def test_normalised_fisher_has_mean_one_over_all_penalised_parameters():
    fisher = diagonal_fisher(BagOfWords(), EXAMPLES, Collator(0), "sequence_classification")
    out = normalize_fisher(fisher)  # the default: "mean"
    assert _mean(out) == pytest.approx(1.0)
    # one scale for every tensor: relative importances (also across tensors) are kept
    scale = float(out["fc.weight"][0, 0] / fisher["fc.weight"][0, 0])
    for name in fisher:
        torch.testing.assert_close(out[name], fisher[name] * scale)


def test_the_penalty_does_not_change_when_the_fisher_is_rescaled():
    """Multiplying the loss by c multiplies the (empirical) Fisher by c^2; a mean-normalised
    penalty is the same, so lambda means the same whatever the loss scale."""
    fisher = diagonal_fisher(BagOfWords(), EXAMPLES, Collator(0), "sequence_classification")
    model = BagOfWords()
    anchor = {n: p.detach() + 0.1 for n, p in model.named_parameters() if p.requires_grad}
    base = quadratic_penalty(model, normalize_fisher(fisher), anchor)
    for c in (1e-6, 3.0, 1e4):
        scaled = {n: f * c for n, f in fisher.items()}
        torch.testing.assert_close(quadratic_penalty(model, normalize_fisher(scaled), anchor), base)
        # the raw Fisher scales the penalty with it: lambda would have to follow c
        raw = quadratic_penalty(model, normalize_fisher(scaled, "none"), anchor)
        torch.testing.assert_close(raw, c * quadratic_penalty(model, fisher, anchor))


def test_normalised_penalty_by_hand():
    # F = {a: [1, 3], b: [0, 4]}: mean 2 -> {a: [0.5, 1.5], b: [0, 2]}
    fisher = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([0.0, 4.0])}
    norm = normalize_fisher(fisher, "mean")
    torch.testing.assert_close(norm["a"], torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(norm["b"], torch.tensor([0.0, 2.0]))
    model = TwoParams([1.0, 1.0], [1.0, 2.0])
    anchor = {"a": torch.zeros(2), "b": torch.zeros(2)}
    # 0.5 * (0.5*1 + 1.5*1 + 0*1 + 2*4) = 5
    assert float(quadratic_penalty(model, norm, anchor).detach()) == pytest.approx(5.0)
    # none: today's raw Fisher, 0.5 * (1 + 3 + 0 + 16) = 10
    assert (
        float(quadratic_penalty(model, normalize_fisher(fisher, "none"), anchor).detach()) == 10.0
    )


def test_normalize_none_and_an_all_zero_fisher_are_left_alone():
    fisher = {"a": torch.tensor([1e-9, 3e-9])}
    assert normalize_fisher(fisher, "none")["a"].equal(fisher["a"])
    zero = {"a": torch.zeros(3)}
    assert normalize_fisher(zero)["a"].equal(zero["a"])
    with pytest.raises(ValueError, match="normalisation"):
        normalize_fisher(fisher, "max")

"""Continual objective terms: EWC, online EWC, L2 anchor, LwF and replay, against hand values."""

import json

import pytest
import torch
from torch import nn

from tunesmith.config import ObjectiveConfig
from tunesmith.errors import ConfigError
from tunesmith.heads import fresh_head, head_state, logits_per_head
from tunesmith.models import load_model
from tunesmith.objectives import build_terms, combine
from tunesmith.objectives.continual import (
    ContinualState,
    EWCTerm,
    L2AnchorTerm,
    LwFTerm,
    OnlineEWCTerm,
    ReplayTerm,
    merge_quadratics,
)


def val(t):
    return float(t.detach())


def linear():
    torch.manual_seed(0)
    return nn.Linear(2, 2)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def ewc_state(model, fisher):
    return ContinualState(seen=["a"], anchors={"a": snapshot(model)}, fishers={"a": fisher})


def test_ewc_is_zero_at_the_anchor_and_half_lambda_f_delta_squared_away():
    model = linear()
    fisher = {"weight": torch.tensor([[1.0, 2.0], [0.0, 4.0]]), "bias": torch.tensor([3.0, 0.5])}
    term = EWCTerm(weight=10.0)
    term.bind_state(ewc_state(model, fisher))
    term.setup(model)
    assert val(term.loss(model, {}, None)) == 0.0
    with torch.no_grad():
        model.weight.add_(torch.tensor([[1.0, -1.0], [2.0, 0.5]]))
        model.bias.add_(torch.tensor([0.0, 2.0]))
    # 0.5 * (1*1 + 2*1 + 0*4 + 4*0.25 + 3*0 + 0.5*4) = 0.5 * 6
    value = term.loss(model, {}, None)
    assert val(value) == pytest.approx(3.0)
    total, parts = combine(torch.tensor(0.0), [term], model, {}, None)
    assert parts["ewc"] == pytest.approx(3.0) and parts["loss"] == pytest.approx(30.0)
    total.backward()  # d/dtheta (lambda/2) F delta^2 = lambda F delta
    expected = 10.0 * fisher["weight"] * torch.tensor([[1.0, -1.0], [2.0, 0.5]])
    torch.testing.assert_close(model.weight.grad, expected)


def test_several_tasks_fold_into_one_quadratic_with_the_same_value_and_gradient():
    g = torch.Generator().manual_seed(1)
    pairs = [
        ({"w": torch.rand(3, generator=g)}, {"w": torch.randn(3, generator=g)}) for _ in range(3)
    ]
    A, m, c = merge_quadratics(pairs)
    theta = torch.randn(3, generator=g, requires_grad=True)
    separate = sum((f["w"] * (theta - a["w"]) ** 2).sum() for f, a in pairs)
    folded = (A["w"] * (theta - m["w"]) ** 2).sum() + c
    assert val(folded) == pytest.approx(val(separate), rel=1e-5)
    (g1,) = torch.autograd.grad(separate, theta)
    (g2,) = torch.autograd.grad(folded, theta)
    torch.testing.assert_close(g1, g2)


def test_ewc_sums_over_tasks_through_the_state():
    model = linear()
    a1 = snapshot(model)
    a2 = {n: t + 1.0 for n, t in a1.items()}
    f1 = {n: torch.full_like(t, 2.0) for n, t in a1.items()}
    f2 = {n: torch.full_like(t, 1.0) for n, t in a1.items()}
    state = ContinualState(seen=["a", "b"], anchors={"a": a1, "b": a2}, fishers={"a": f1, "b": f2})
    term = EWCTerm()
    term.bind_state(state)
    term.setup(model)
    # at a1: task a contributes 0, task b 0.5 * 1 * (1^2) * 6 parameters
    assert val(term.loss(model, {}, None)) == pytest.approx(3.0, rel=1e-5)


def test_online_ewc_scales_the_running_fisher_by_gamma():
    model = linear()
    anchor = {n: t - 1.0 for n, t in snapshot(model).items()}  # every entry 1 away
    running = {n: torch.full_like(t, 4.0) for n, t in anchor.items()}
    state = ContinualState(seen=["a"], anchors={"a": anchor}, online_fisher=running)
    term = OnlineEWCTerm(params=OnlineEWCTerm.Params(gamma=0.5))
    term.bind_state(state)
    term.setup(model)
    assert val(term.loss(model, {}, None)) == pytest.approx(0.5 * 0.5 * 4.0 * 6)


def test_l2_anchor_is_ewc_with_unit_fisher():
    model = linear()
    anchor = {n: t + 0.5 for n, t in snapshot(model).items()}
    ones = {n: torch.ones_like(t) for n, t in anchor.items()}
    l2, ewc = L2AnchorTerm(), EWCTerm()
    l2.bind_state(ContinualState(seen=["a"], anchors={"a": anchor}))
    ewc.bind_state(ContinualState(seen=["a"], anchors={"a": anchor}, fishers={"a": ones}))
    l2.setup(model)
    ewc.setup(model)
    assert val(l2.loss(model, {}, None)) == pytest.approx(0.5 * 0.25 * 6)
    assert val(l2.loss(model, {}, None)) == pytest.approx(val(ewc.loss(model, {}, None)))


def test_state_file_handoff_and_checkpoint_round_trip(tmp_path):
    model = linear()
    fisher = {n: torch.rand_like(t) for n, t in snapshot(model).items()}
    state = ewc_state(model, fisher)
    state.previous_model = "somewhere/best"
    path = state.save(tmp_path / "state" / "stage-1.safetensors")
    loaded = ContinualState.load(path)
    assert loaded.seen == ["a"] and loaded.previous_model == "somewhere/best"
    torch.testing.assert_close(loaded.fishers["a"], fisher)
    cfg = ObjectiveConfig(name="ewc", weight=2.0, params={"state": str(path)})
    (term,) = build_terms([cfg])
    term.setup(model)
    with torch.no_grad():
        model.weight.add_(0.3)
    value = val(term.loss(model, {}, None))
    assert value > 0
    resumed = EWCTerm()  # a resumed run: the checkpointed term state, no file needed
    resumed.load_state_dict(term.state_dict())
    assert val(resumed.loss(model, {}, None)) == pytest.approx(value)


def test_frozen_and_reshaped_parameters_are_not_penalised():
    model = linear()
    state = ewc_state(model, {n: torch.ones_like(t) for n, t in snapshot(model).items()})
    state.anchors["a"]["bias"] = torch.zeros(5)  # another shape (e.g. a new head)
    model.weight.requires_grad_(False)
    term = EWCTerm()
    term.bind_state(state)
    term.setup(model)
    assert term.anchor == {}
    assert val(term.loss(model, {}, None)) == 0.0


def test_missing_state_is_a_config_error_with_a_hint():
    with pytest.raises(ConfigError, match="tunesmith continual"):
        EWCTerm().setup(linear())


# -- LwF --------------------------------------------------------------------------------------


def bert_batch():
    ids = torch.tensor([[2, 20, 21, 22, 3], [2, 30, 31, 3, 0]])
    mask = (ids != 0).long()
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1])}


def test_lwf_separate_heads_is_zero_for_the_same_model_and_positive_after_a_change(
    tiny_bert, tmp_path
):
    model = load_model(tiny_bert, "sequence_classification").eval()
    with torch.no_grad():
        model.classifier.weight.mul_(100.0)  # a trained head's logits, not ~0 ones
    model.save_pretrained(tmp_path / "previous")  # what the term loads: state.previous_model
    heads = {"a": head_state(model), "b": {n: t * 100 for n, t in fresh_head(model, 3, 1).items()}}
    state = ContinualState(
        seen=["a", "b"], head_weights=heads, previous_model=str(tmp_path / "previous")
    )
    term = LwFTerm(weight=1.0)
    term.bind_state(state)
    term.setup(model)
    batch = bert_batch()
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert val(term.loss(model, batch, outputs)) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        w = model.bert.encoder.layer[0].output.dense.weight
        w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    value = term.loss(model, batch, outputs)
    assert val(value) > 1e-4
    value.backward()  # gradients reach the body, the old heads are plain tensors
    assert model.bert.encoder.layer[0].output.dense.weight.grad is not None


def test_lwf_shared_head_uses_the_old_labels_and_causal_lm_the_response_tokens(
    tiny_bert, tiny_llama
):
    model = load_model(tiny_bert, "sequence_classification").eval()
    term = LwFTerm()
    shared = ContinualState(
        heads="shared", seen=["a"], old_label_ids=[1], previous_model=str(tiny_bert)
    )
    term.bind_state(shared)
    term.setup(model)
    batch = bert_batch()
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    # one old label: a softmax over one logit is always 1, so nothing to distil
    with torch.no_grad():
        outputs.logits.add_(torch.tensor([0.0, 3.0]))
    assert val(term.loss(model, batch, outputs)) == pytest.approx(0.0, abs=1e-6)

    lm = load_model(tiny_llama, "causal_lm").eval()
    term = LwFTerm(params=LwFTerm.Params(temperature=1.0))
    lm_state = ContinualState(
        task="causal_lm", heads="shared", seen=["a"], previous_model=str(tiny_llama)
    )
    term.bind_state(lm_state)
    term.setup(lm)
    ids = torch.tensor([[5, 20, 21, 22]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    batch["labels"] = torch.tensor([[-100, -100, 21, 22]])
    out = lm(input_ids=ids, attention_mask=batch["attention_mask"])
    assert val(term.loss(lm, batch, out)) == pytest.approx(0.0, abs=1e-6)
    logits = out.logits.clone()
    logits[0, 0] += 5.0  # position 0 predicts a prompt token (-100): not distilled
    assert val(term.loss(lm, batch, type(out)(logits=logits))) == pytest.approx(0.0, abs=1e-6)
    logits[0, 1] += torch.randn(logits.shape[-1])  # position 1 predicts a response token
    assert val(term.loss(lm, batch, type(out)(logits=logits))) > 1e-4


def test_lwf_first_stage_is_inactive():
    term = LwFTerm()
    term.bind_state(ContinualState())
    term.setup(linear())
    assert val(term.loss(linear(), {}, None)) == 0.0


def test_logits_per_head_match_a_model_with_that_head(tiny_bert):
    model = load_model(tiny_bert, "sequence_classification").eval()
    head = fresh_head(model, 3, seed=0)
    other = load_model(tiny_bert, "sequence_classification", num_labels=3).eval()
    other.load_state_dict({**model.state_dict(), **head})
    batch = bert_batch()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    own, swapped = logits_per_head(model, [head_state(model), head], inputs)
    torch.testing.assert_close(own, model(**inputs).logits)
    torch.testing.assert_close(swapped, other(**inputs).logits)


# -- replay through separate heads --------------------------------------------------------------


def test_replay_term_scores_old_examples_through_their_own_heads(tiny_bert, tmp_path):
    model = load_model(tiny_bert, "sequence_classification")
    heads = {"a": fresh_head(model, 3, seed=2)}
    examples = [
        {"input_ids": [2, 20, 21, 3], "attention_mask": [1] * 4, "labels": i % 3, "task": "a"}
        for i in range(6)
    ]
    path = tmp_path / "replay.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    state = ContinualState(seen=["a"], head_weights=heads, replay_file=str(path))
    term = ReplayTerm(params=ReplayTerm.Params(ratio=1.0, seed=0))
    term.bind_state(state)
    term.setup(model)
    batch = bert_batch()
    saved = term.state_dict()
    value = term.loss(model, batch, None)
    assert val(value) > 0 and torch.isfinite(value)
    value.backward()
    assert model.bert.embeddings.word_embeddings.weight.grad is not None
    assert model.classifier.weight.grad is None  # the current head is not used for old tasks
    term.load_state_dict(saved)  # same draws after a resume
    assert val(term.loss(model, batch, None)) == pytest.approx(val(value))

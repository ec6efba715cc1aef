"""Continual learning with adapters and separate heads, and the methods for it (issue 16 item 1):
O-LoRA, adapter per task (task-id routing), MAS and A-GEM. The pure parts against hand-computed
values; the sequences on the tiny BERT with LoRA and a head per task."""

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tunesmith.adapters import (
    adapter_parameters,
    frozen_parameters,
    head_parameters,
    load_model_or_adapter,
    mark_trainable,
)
from tunesmith.continual import parse_sequence, run_sequence
from tunesmith.errors import ConfigError
from tunesmith.heads import label_projection_names
from tunesmith.objectives.base import ObjectiveTerm, register
from tunesmith.objectives.continual import (
    METHODS,
    ContinualMethod,
    ContinualState,
    agem_project,
    mas_importance,
    register_method,
)
from tunesmith.objectives.continual.mas import output_sq_norm
from tunesmith.objectives.continual.olora import l2_new, orthogonality

from .conftest import sequence_dict

LORA = {"type": "lora", "r": 4, "targets": "all-linear"}
TASK = "sequence_classification"


def _adapter_sequence(tiny_bert, two_tasks, out, method, adapter=LORA, **continual):
    data = sequence_dict(tiny_bert, two_tasks, out, method, replay={"capacity": 8}, **continual)
    data["adapter"] = adapter
    return parse_sequence(data)


def _load(out, stage):
    return load_model_or_adapter(str(out / "stages" / stage / "best"), TASK)


# -- pure parts -----------------------------------------------------------------------------------


def test_olora_orthogonality_and_l2_by_hand():
    old = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # A_t: (r=2, in=2)
    new = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    # A_t A_new^T = new^T = [[1, 0], [1, 2]]
    assert float(orthogonality([old], new)) == pytest.approx(1 + 0 + 1 + 4)
    assert float(orthogonality([old], new, "abs")) == pytest.approx(4)
    assert float(orthogonality([old, 2 * old], new)) == pytest.approx(6 + 4 * 6)
    assert float(orthogonality([], new)) == 0.0
    orth = torch.tensor([[0.0, 0.0], [0.0, 3.0]])  # rows orthogonal to new's? no: check zero case
    assert float(orthogonality([torch.tensor([[1.0, 0.0]])], torch.tensor([[0.0, 5.0]]))) == 0.0
    assert float(l2_new(torch.tensor([[3.0, 4.0]]), torch.zeros(2, 1))) == pytest.approx(5.0)
    assert float(l2_new(orth, torch.tensor([[1.0], [0.0]]))) == pytest.approx(4.0)


def test_agem_projection_by_hand():
    g, ref = [torch.tensor([1.0]), torch.tensor([0.0])], [torch.tensor([-1.0]), torch.tensor([1.0])]
    new, projected = agem_project(g, ref)  # g.ref = -1, |ref|^2 = 2: g + ref / 2
    assert projected
    assert [float(t) for t in new] == pytest.approx([0.5, 0.5])
    same, projected = agem_project([torch.tensor([1.0, 1.0])], [torch.tensor([1.0, 0.0])])
    assert not projected and same[0].tolist() == [1.0, 1.0]
    zero, projected = agem_project([torch.ones(3)], [torch.zeros(3)])
    assert not projected
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        g = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)]
        r = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)]
        new, projected = agem_project(g, r)
        dot = sum(float((a.double() * b.double()).sum()) for a, b in zip(new, r, strict=True))
        assert dot >= -1e-5  # never against the memory's gradient
        if not projected:
            assert all(a.equal(b) for a, b in zip(new, g, strict=True))


class _Linear(nn.Module):
    """logits = W x, with x given as input_ids (floats)."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))
        self.frozen = nn.Parameter(torch.ones(1), requires_grad=False)

    def forward(self, input_ids, attention_mask=None, **_):
        return SimpleNamespace(logits=input_ids.float() @ self.weight.T)


def test_mas_importance_by_hand():
    model = _Linear([[-1.0, 0.0], [0.0, 1.0]])
    examples = [{"x": [1.0, 2.0]}, {"x": [0.0, 1.0]}]

    def collate(batch):
        x = torch.tensor([e["x"] for e in batch])
        return {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": torch.zeros(1)}

    omega = mas_importance(model, examples, collate, TASK)
    # d||Wx||^2/dW = 2 (Wx) x^T: x1 -> 2 [-1, 2]^T [1, 2] = [[-2, -4], [4, 8]];
    # x2 -> 2 [0, 1]^T [0, 1] = [[0, 0], [0, 2]]; mean of |.|: [[1, 2], [2, 5]]
    assert set(omega) == {"weight"}  # the trainable parameters only
    torch.testing.assert_close(omega["weight"], torch.tensor([[1.0, 2.0], [2.0, 5.0]]))
    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    assert float(output_sq_norm(logits, torch.tensor([[1, 1, 0]]))) == pytest.approx(2.5)
    assert float(output_sq_norm(torch.tensor([[3.0, 4.0]]))) == pytest.approx(25.0)


# -- sequences: adapters with a head per task --------------------------------------------------


def _trainable(model):
    mark_trainable(model, "default", train_head=True)
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", [m for m in METHODS.names() if not METHODS.get(m).joint])
def test_every_method_runs_with_lora_and_separate_heads(method, tiny_bert, two_tasks, tmp_path):
    """Every method on LoRA + a head per task; the base never moves; the quadratic penalties'
    importance covers exactly what trains (the adapter + the shared part of the head)."""
    seq = _adapter_sequence(tiny_bert, two_tasks, tmp_path, method, keep_state=True)
    report = run_sequence(seq)
    assert report["heads"] == "separate" and len(report["matrix"]) == 2
    base0, base1 = (_load(tmp_path, s) for s in ("0-senti", "1-topic"))
    after = dict(base1.named_parameters())
    for n, a in base0.named_parameters():
        if "adapter_slot" not in n and not n.startswith(("classifier", "bert.pooler")):
            assert a.equal(after[n]), n  # the base never moves
    assert base1.config.num_labels == 3 and base0.config.num_labels == 2
    if method not in ("ewc", "online_ewc", "l2_anchor", "mas"):
        return
    trainable = _trainable(base0)
    assert trainable == set(adapter_parameters(base0, "default")) | set(head_parameters(base0))
    penalised = trainable - set(label_projection_names(base0))  # the task's own head is not
    state = ContinualState.load(tmp_path / "state" / "stage-1.safetensors")
    assert set(state.anchors["senti"]) == penalised
    importance = state.fishers["senti"] if method == "ewc" else state.online_fisher
    if method != "l2_anchor":
        assert set(importance) == penalised


def test_the_full_fisher_keys_are_the_trainable_parameters(tiny_bert, two_tasks, tmp_path):
    from tunesmith.continual import diagonal_fisher
    from tunesmith.data.collate import Collator

    seq = _adapter_sequence(tiny_bert, two_tasks, tmp_path, "naive")
    run_sequence(seq, stop_after=1)
    model = _load(tmp_path, "0-senti")
    trainable = _trainable(model)
    examples = [{"input_ids": [2, 5, 7, 3], "attention_mask": [1] * 4, "labels": 1}]
    fisher = diagonal_fisher(model, examples, Collator(pad_token_id=0), TASK, max_examples=None)
    assert set(fisher) == trainable


def test_separate_heads_stage_starts_from_the_last_adapter_and_scores_exactly(
    tiny_bert, two_tasks, tmp_path
):
    seq = _adapter_sequence(tiny_bert, two_tasks, tmp_path, "naive", keep_state=True)
    report = run_sequence(seq)
    config = (tmp_path / "stages" / "1-topic" / "config.yaml").read_text()
    init = tmp_path / "init" / "1-topic"
    assert str(init) in config
    # the start folder: stage 0's adapter, a fresh 3-label head
    stage0 = _load(tmp_path, "0-senti")
    start = load_model_or_adapter(str(init), TASK)
    a0, s = adapter_parameters(stage0, "default"), adapter_parameters(start, "default")
    assert set(a0) == set(s) and all(a0[n].equal(s[n]) for n in a0)
    assert start.config.num_labels == 3
    # saved per stage exactly: task 0 after stage 1 rescored from the files gives the row's value
    from tunesmith.continual.stages import _Runner

    runner = _Runner(seq.stages, seq.continual, tmp_path)
    from tunesmith.continual.hooks import load_stage_model, score_row

    model = load_stage_model(runner.ctx, tmp_path / "stages" / "1-topic" / "best")
    again = score_row(runner.ctx, model, trained=1)
    assert [m["accuracy"] for m in again] == report["matrix"][1]


def test_adapter_per_task_never_forgets_bit_for_bit(tiny_bert, two_tasks, tmp_path):
    report = run_sequence(_adapter_sequence(tiny_bert, two_tasks, tmp_path, "adapter_per_task"))
    rows = [json.loads((tmp_path / "rows" / f"{k}.json").read_text()) for k in (0, 1)]
    assert rows[1]["metrics"][0] == rows[0]["metrics"][0]  # every metric of task 0, exactly
    assert report["bwt"] == 0.0
    config = (tmp_path / "stages" / "1-topic" / "config.yaml").read_text()
    assert f"model: {tiny_bert}" in config  # a fresh adapter on the initial model
    a0 = adapter_parameters(_load(tmp_path, "0-senti"), "default")
    a1 = adapter_parameters(_load(tmp_path, "1-topic"), "default")
    assert any(not a0[n].equal(a1[n]) for n in a0)


def test_olora_adds_a_frozen_lora_per_task_and_reloads_exactly(tiny_bert, two_tasks, tmp_path):
    run_sequence(
        _adapter_sequence(tiny_bert, two_tasks, tmp_path, "olora", olora={"l2_weight": 0.1})
    )
    meta = json.loads((tmp_path / "stages/1-topic/best/tunesmith_adapter.json").read_text())
    assert meta["config"]["type"] == "olora" and meta["config"]["tasks"] == 2
    t0 = load_file(str(tmp_path / "stages/0-senti/best/adapter_model.safetensors"))
    t1 = load_file(str(tmp_path / "stages/1-topic/best/adapter_model.safetensors"))
    block0 = [k for k in t0 if ".lora_" in k]
    assert block0 and all(".0.weight" in k for k in block0)
    assert all(t0[k].equal(t1[k]) for k in block0)  # task 0's LoRA was frozen
    assert any(".1.weight" in k and t1[k].abs().sum() > 0 for k in t1 if ".lora_B." in k)
    model = _load(tmp_path, "1-topic")
    frozen = frozen_parameters(model, "default")
    assert frozen and all(".0.weight" in n for n in frozen)
    assert not (_trainable(model) & frozen)
    again = _load(tmp_path, "1-topic")
    batch = {"input_ids": torch.tensor([[2, 5, 7, 3]]), "attention_mask": torch.ones(1, 4)}
    assert model.eval()(**batch).logits.equal(again.eval()(**batch).logits)
    logged = (tmp_path / "stages/1-topic/metrics.jsonl").read_text()
    assert '"olora"' in logged


def test_methods_that_train_adapters_need_one(tiny_bert, two_tasks, tmp_path):
    for method in ("olora", "adapter_per_task"):
        with pytest.raises(ConfigError, match="needs an adapter"):
            parse_sequence(sequence_dict(tiny_bert, two_tasks, tmp_path, method))
    with pytest.raises(ConfigError, match="LoRA adapter"):
        run_sequence(
            _adapter_sequence(tiny_bert, two_tasks, tmp_path, "olora", adapter={"type": "houlsby"})
        )


class _ZeroGrads(ObjectiveTerm):
    """Clears every gradient in the loop's adjust_gradients hook: nothing may move."""

    name = "test_zero_grads"

    def loss(self, model, batch, outputs):
        return torch.zeros(())

    def adjust_gradients(self, model, params):
        for p in params:
            p.grad.zero_()


class _ZeroMethod(ContinualMethod):
    name = "test_zero_grads"

    def terms(self, seq, k):
        return [{"name": "test_zero_grads", "weight": 0.0}]


register(_ZeroGrads, "test only")
register_method(_ZeroMethod, "test only")


def test_the_loop_calls_adjust_gradients_before_the_step(tiny_bert, two_tasks, tmp_path):
    data = sequence_dict(tiny_bert, two_tasks, tmp_path, "test_zero_grads", keep_state=True)
    data["adapter"] = LORA
    data["optim"]["weight_decay"] = 0.0
    run_sequence(parse_sequence(data))
    start = adapter_parameters(
        load_model_or_adapter(str(tmp_path / "init/1-topic"), TASK), "default"
    )
    end = adapter_parameters(_load(tmp_path, "1-topic"), "default")
    assert all(start[n].equal(end[n]) for n in start)


def test_agem_term_projects_against_the_memory(tiny_bert, two_tasks, tmp_path):
    """The term's hook with a memory: the step it leaves has a non-negative dot with g_ref."""
    seq = _adapter_sequence(tiny_bert, two_tasks, tmp_path, "agem", keep_state=True)
    run_sequence(seq)
    from tunesmith.objectives.continual import AGEMTerm
    from tunesmith.objectives.continual.replay import memory_loss

    model = _load(tmp_path, "1-topic")
    params = [p for n, p in model.named_parameters() if n in _trainable(model)]
    term = AGEMTerm(params=AGEMTerm.Params(batch_size=4, seed=1))
    term.bind_state(ContinualState.load(tmp_path / "state" / "stage-1.safetensors"))
    term.setup(model)
    assert term.examples and len(term.heads) == 1
    for p in params:  # a gradient that certainly conflicts: minus the memory's own
        p.grad = None
    state = term.generator.get_state()
    ref_loss = memory_loss(model, TASK, term.heads, term.draw(4), term.collator)
    ref = torch.autograd.grad(ref_loss, params, allow_unused=True)
    for p, r in zip(params, ref, strict=True):
        p.grad = torch.zeros_like(p) if r is None else -r.detach().clone()
    term.generator.set_state(state)  # the hook draws the same memory batch
    term.adjust_gradients(model, params)
    assert term.projected == 1.0
    dot = sum(
        float((p.grad * (r if r is not None else 0)).sum())
        for p, r in zip(params, ref, strict=True)
    )
    assert abs(dot) < 1e-5  # -g_ref projected onto g_ref's normal plane: zero

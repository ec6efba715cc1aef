"""AdamW groups against a hand-built AdamW, schedules against hand-computed values, clipping."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import transformers as T
from torch import nn

from tunesmith.errors import ConfigError
from tunesmith.optim import (
    SCHEDULES,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    param_groups,
)
from tunesmith.transfer import layer_layout, layerwise_lr_scales

LLAMA = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    intermediate_size=64,
    tie_word_embeddings=True,
)


def tiny(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "bert":
        cfg = T.BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
        return T.BertForSequenceClassification(cfg)
    if kind == "llama":
        return T.LlamaForCausalLM(T.LlamaConfig(**LLAMA))
    if kind == "gpt2":
        cfg = T.GPT2Config(
            vocab_size=100, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
        )
        return T.GPT2LMHeadModel(cfg)
    raise ValueError(kind)


def lm_step(model: nn.Module) -> None:
    torch.manual_seed(1)
    ids = torch.randint(0, 100, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()


# --- parameter groups ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bert", "llama", "gpt2"])
def test_no_decay_groups_hold_biases_and_norms_only(kind):
    model = tiny(kind)
    groups = param_groups(model, lr=1e-3, weight_decay=0.1)
    params = dict(model.named_parameters())
    no_decay = {n for g in groups if g["weight_decay"] == 0.0 for n in g["names"]}
    decay = {n for g in groups if g["weight_decay"] == 0.1 for n in g["names"]}
    assert no_decay | decay == set(params) and not no_decay & decay
    assert all(params[n].ndim < 2 for n in no_decay)
    assert all(params[n].ndim >= 2 for n in decay)
    biases = {n for n in params if n.endswith(".bias")}
    norms = {n for n in params if "norm" in n.lower() or ".ln_" in n}
    assert biases | norms <= no_decay
    assert norms  # LayerNorm (bert, gpt2) or RMSNorm (llama) weights were found


def test_norm_modules_get_no_decay_whatever_their_shape():
    class FancyNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(2, 4))

    model = nn.Sequential(nn.Linear(4, 4), FancyNorm())
    groups = param_groups(model, lr=1e-3, weight_decay=0.1)
    by_name = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert by_name == {"0.weight": 0.1, "0.bias": 0.0, "1.scale": 0.0}


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_tied_embeddings_appear_once(kind):
    model = tiny(kind)
    groups = param_groups(model, lr=1e-3, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert ids.count(id(model.lm_head.weight)) == 1
    assert "lm_head.weight" not in {n for g in groups for n in g["names"]}


def test_groups_follow_lr_scales_and_include():
    model = tiny("bert")
    layout = layer_layout(model)
    scales = layerwise_lr_scales(model, layout, 0.5)
    for p in model.bert.embeddings.parameters():
        p.requires_grad_(False)
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, lr_scales=scales)
    names = {n for g in groups for n in g["names"]}
    assert not any(n.startswith("bert.embeddings.") for n in names)
    for g in groups:
        assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"])
        assert {scales[n] for n in g["names"]} == {g["lr_scale"]}
    assert {g["lr_scale"] for g in groups} == {1.0, 0.5, 0.25}

    everything = param_groups(model, lr=1e-3, weight_decay=0.1, include=lambda n, p: True)
    assert sum(len(g["params"]) for g in everything) == len(list(model.parameters()))


def test_no_trainable_parameters_is_a_config_error():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError) as err:
        param_groups(model, lr=1e-3, weight_decay=0.0)
    assert err.value.key == "transfer"


# --- AdamW equals a hand-built AdamW ---------------------------------------------------------


def _nanogpt_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_adamw_step_matches_hand_built_adamw(kind):
    ours, ref = tiny(kind), tiny(kind)
    opt = build_optimizer(param_groups(ours, lr=1e-2, weight_decay=0.1), lr=1e-2, betas=(0.9, 0.95))
    ref_opt = torch.optim.AdamW(_nanogpt_groups(ref, 0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for _ in range(2):
        for model, optimizer in ((ours, opt), (ref, ref_opt)):
            optimizer.zero_grad()
            lm_step(model)
            optimizer.step()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7, msg=name)
    assert not torch.equal(ours.lm_head.weight, tiny(kind).lm_head.weight)


def test_adamw_step_with_layerwise_lrs_matches_per_param_adamw():
    ours = tiny("bert").eval()  # no dropout: both models must see the same forward pass
    ref = copy.deepcopy(ours)
    scales = layerwise_lr_scales(ours, layer_layout(ours), 0.8)
    groups = param_groups(ours, lr=1e-2, weight_decay=0.01, lr_scales=scales)
    opt = build_optimizer(groups, lr=1e-2)
    ref_opt = torch.optim.AdamW(
        [
            {"params": [p], "lr": 1e-2 * scales[n], "weight_decay": 0.01 if p.dim() >= 2 else 0.0}
            for n, p in ref.named_parameters()
        ],
        lr=1e-2,
    )
    labels = torch.tensor([0, 1])
    ids = torch.randint(1, 100, (2, 8))
    for model, optimizer in ((ours, opt), (ref, ref_opt)):
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7, msg=name)


def test_fused_when_requested():
    model = tiny("gpt2")
    groups = param_groups(model, lr=1e-3, weight_decay=0.1)
    assert build_optimizer(groups, lr=1e-3, fused=True).defaults["fused"]  # torch has CPU fused
    default = build_optimizer(groups, lr=1e-3)
    assert default.defaults["foreach"] and not default.defaults["fused"]


# --- schedules -------------------------------------------------------------------------------


def lrs(name: str, steps: list[int], **kw) -> dict[int, list[float]]:
    """Group LRs at the given scheduler steps; the groups start at LR 1.0 and 0.5 (LLRD)."""
    opt = torch.optim.SGD(
        [{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (1.0, 0.5)], lr=1.0
    )
    sched = build_scheduler(opt, name, **kw)
    out = {}
    for step in range(max(steps) + 1):
        if step in steps:
            out[step] = [g["lr"] for g in opt.param_groups]
        opt.step()
        sched.step()
    return out


def test_schedule_names():
    assert SCHEDULES.names() == ["constant", "cosine", "linear"]


def test_linear_schedule():
    got = lrs("linear", [0, 5, 10, 60, 110, 120], warmup_steps=10, total_steps=110)
    expected = {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.5, 110: 0.0, 120: 0.0}
    for step, factor in expected.items():
        assert got[step] == pytest.approx([factor, 0.5 * factor], abs=1e-12), step


def test_cosine_schedule_to_min_lr():
    got = lrs("cosine", [5, 10, 35, 60, 110], warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    quarter = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25))
    expected = {5: 0.5, 10: 1.0, 35: quarter, 60: 0.1 + 0.9 * 0.5, 110: 0.1}
    for step, factor in expected.items():
        assert got[step] == pytest.approx([factor, 0.5 * factor], abs=1e-12), step


def test_constant_schedule():
    got = lrs("constant", [0, 2, 4, 50], warmup_steps=4, total_steps=50)
    for step, factor in {0: 0.0, 2: 0.5, 4: 1.0, 50: 1.0}.items():
        assert got[step] == pytest.approx([factor, 0.5 * factor]), step


def test_no_warmup_starts_at_full_lr():
    assert lrs("cosine", [0], warmup_steps=0, total_steps=10)[0] == [1.0, 0.5]


def test_schedule_validation():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError) as err:
        build_scheduler(opt, "linear", warmup_steps=20, total_steps=10)
    assert err.value.key == "optim.warmup_steps"
    with pytest.raises(ConfigError) as err:
        build_scheduler(opt, "step", warmup_steps=0, total_steps=10)
    assert err.value.key == "optim.schedule"
    with pytest.raises(ConfigError):
        build_scheduler(opt, "cosine", warmup_steps=0, total_steps=10, min_lr_ratio=2.0)


# --- gradient clipping -----------------------------------------------------------------------


def test_clip_gradients():
    a, b, frozen = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    assert clip_gradients([a, b, frozen, a], None) == pytest.approx(5.0)  # a counted once
    assert a.grad.tolist() == [3.0, 0.0]  # measuring does not clip
    assert clip_gradients([a, b], 0) == pytest.approx(5.0)
    assert clip_gradients([a, b], 1.0) == pytest.approx(5.0)
    assert torch.cat([a.grad, b.grad]).norm().item() == pytest.approx(1.0, rel=1e-5)
    assert clip_gradients([frozen], 1.0) == 0.0

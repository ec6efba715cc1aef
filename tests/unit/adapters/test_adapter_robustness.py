"""Adapted models behave like ordinary modules: deepcopy, full state dicts, bf16, checkpointing."""

from __future__ import annotations

import copy

import torch

from tunesmith.adapters import (
    HoulsbyConfig,
    LoraConfig,
    adapter_parameters,
    add_adapter,
    delete_adapter,
    mark_trainable,
    set_active_adapter,
)

from .helpers import enable_checkpointing, logits, make_batch, perturb, tiny_model


def test_deepcopy_gets_its_own_hooks_and_state():
    model = tiny_model("bert")
    add_adapter(model, "h", HoulsbyConfig())
    perturb(adapter_parameters(model, "h"))
    batch = make_batch("bert")
    expected = logits(model, batch)
    twin = copy.deepcopy(model)  # e.g. a frozen teacher or an EWC anchor
    torch.testing.assert_close(logits(twin, batch), expected, atol=0, rtol=0)
    set_active_adapter(twin, None)
    delete_adapter(twin, "h")
    torch.testing.assert_close(logits(model, batch), expected, atol=0, rtol=0)
    assert not torch.allclose(logits(twin, batch), expected)


def test_full_state_dict_resumes_into_a_model_with_the_same_adapter():
    model = tiny_model("llama")
    add_adapter(model, "l", LoraConfig(r=2))
    perturb(adapter_parameters(model, "l"))
    state = model.state_dict()  # what a full training checkpoint holds
    resumed = tiny_model("llama", seed=1)
    add_adapter(resumed, "l", LoraConfig(r=2))
    resumed.load_state_dict(state)
    batch = make_batch("llama")
    torch.testing.assert_close(logits(resumed, batch), logits(model, batch), atol=0, rtol=0)


def test_bf16_base_keeps_fp32_adapters():
    model = tiny_model("llama").to(torch.bfloat16)
    add_adapter(model, "l", LoraConfig(r=2))
    assert all(p.dtype == torch.float32 for p in adapter_parameters(model, "l").values())
    mark_trainable(model, "l")
    batch = make_batch("llama")
    out = model(**batch)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    assert all(p.grad is not None for p in adapter_parameters(model, "l").values())


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = tiny_model("llama")
        torch.manual_seed(0)  # the same adapter init both times
        add_adapter(model, "h", HoulsbyConfig())
        perturb(adapter_parameters(model, "h"), scale=0.1)
        mark_trainable(model, "h")
        if checkpointing:
            enable_checkpointing(model)
        model.train()
        model.config.use_cache = False
        model(**make_batch("llama")).loss.backward()
        grads.append([p.grad for p in adapter_parameters(model, "h").values()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)

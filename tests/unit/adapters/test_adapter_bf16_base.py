"""Adapters on a bf16 base (model.dtype: bf16) with fp32 adapter weights, with and without
autocast; gradient checkpointing gives the same loss and gradients as none."""

import pytest
import torch

from tunesmith.adapters import (
    ADAPTERS,
    LoraConfig,
    adapter_parameters,
    add_adapter,
    mark_trainable,
)
from tunesmith.memory import cast_for_training, enable_gradient_checkpointing

from .helpers import TYPES, make_batch, matrix, tiny_model


@pytest.mark.parametrize("method,arch", matrix(TYPES, ("llama", "bert")))
@pytest.mark.parametrize("autocast", [False, True])
def test_adapters_train_on_a_bf16_base(method, arch, autocast):
    model = tiny_model(arch)
    add_adapter(model, "a", ADAPTERS.get(method)())
    mark_trainable(model, "a", train_head=False)
    trained = list(adapter_parameters(model, "a").values())
    cast_for_training(model, trained, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in trained)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(**make_batch(arch)).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trained)


def grads_with(arch, lora, checkpointing):
    model = tiny_model(arch)
    model.config.use_cache = False
    if lora:
        torch.manual_seed(0)
        add_adapter(model, "l", LoraConfig(r=2))
        for p in adapter_parameters(model, "l").values():  # B = 0 at init: make it count
            torch.nn.init.normal_(p, std=0.1)
        mark_trainable(model, "l", train_head=False)
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    for m in model.modules():  # dropout off: both runs see the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    loss = model(**make_batch(arch)).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["llama", "bert"])
@pytest.mark.parametrize("lora", [False, True])
def test_checkpointing_gives_the_same_loss_and_gradients(arch, lora):
    loss, grads = grads_with(arch, lora, checkpointing=False)
    loss_ck, grads_ck = grads_with(arch, lora, checkpointing=True)
    torch.testing.assert_close(loss_ck, loss, atol=1e-6, rtol=1e-6)
    assert grads.keys() == grads_ck.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads_ck[name], grads[name], atol=1e-6, rtol=1e-6)

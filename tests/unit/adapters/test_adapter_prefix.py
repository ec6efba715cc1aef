"""Prefix tuning on decoders: the prefix is P extra attended positions, in forward and generate."""

from __future__ import annotations

import pytest
import torch

from tunesmith.adapters import PrefixConfig, add_adapter, disable_adapters, mark_trainable
from tunesmith.errors import ConfigError, TrainingError

from .helpers import enable_checkpointing, make_batch, tiny_model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("projection", [False, True])
def test_generate_matches_full_forward(arch, projection):
    model = tiny_model(arch)
    add_adapter(
        model,
        "p",
        PrefixConfig(
            num_virtual_tokens=3, prefix_projection=projection, projection_hidden=16, init_std=1.0
        ),
    )
    ids = torch.randint(7, 100, (1, 5))
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=4,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
    )
    seq = out.sequences
    with torch.no_grad():  # one forward over the whole sequence, no generation cache
        full = model(input_ids=seq, attention_mask=torch.ones_like(seq), use_cache=False).logits
    for step, step_logits in enumerate(out.logits):
        torch.testing.assert_close(step_logits[0], full[0, 4 + step], atol=1e-4, rtol=1e-4)
    with disable_adapters(model):
        plain = model(input_ids=seq).logits
    assert not torch.allclose(plain, full, atol=1e-3)


def test_padding_and_gradients():
    model = tiny_model("llama")
    add_adapter(model, "p", PrefixConfig(num_virtual_tokens=2))
    batch = make_batch("llama")
    mark_trainable(model, "p")
    with torch.no_grad():  # a right-padded row gives the same logits as the unpadded row
        padded = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        alone = model(input_ids=batch["input_ids"][1:, :6])
    torch.testing.assert_close(padded.logits[1, :6], alone.logits[0], atol=1e-5, rtol=1e-5)
    model.train()
    model(**batch).loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_refuses_encoders_and_gradient_checkpointing():
    with pytest.raises(ConfigError, match="decoder-only"):
        add_adapter(tiny_model("bert"), "p", PrefixConfig())
    model = tiny_model("gpt2")
    add_adapter(model, "p", PrefixConfig(num_virtual_tokens=2))
    enable_checkpointing(model)
    model.train()
    with pytest.raises(TrainingError, match="gradient checkpointing"):
        model(**make_batch("gpt2"))

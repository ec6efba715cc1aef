"""Method x architecture matrix on tiny random models (BERT, Llama, GPT-2, T5).

For every method where it applies: identity at init (all but prefix), training changes exactly
the adapter (+ head) parameters and leaves the base bit-identical, disabling gives the base
output, merging gives the unmerged output (LoRA, IA3), and save/load round-trips exactly. The
methods come from the registry (``helpers.TYPES``), so a new method runs every check it declares.
"""

from __future__ import annotations

import pytest
import torch

from tunesmith.adapters import (
    adapter_config_from_dict,
    adapter_parameters,
    add_adapter,
    disable_adapters,
    head_parameters,
    load_adapter,
    mark_trainable,
    merge_adapter,
    save_adapter,
    unmerge_adapter,
)

from .helpers import (
    IDENTITY_AT_INIT,
    MERGEABLE,
    base_hash,
    is_adapter,
    logits,
    make_batch,
    matrix,
    perturb,
    tiny_model,
    train_steps,
)

SMALL = {"prefix": {"num_virtual_tokens": 3}, "lora": {"r": 4}}


def adapted(method: str, arch: str, seed: int = 0, **kw):
    model = tiny_model(arch, seed=seed, **kw)
    config = adapter_config_from_dict({"type": method, **SMALL.get(method, {})})
    touched = add_adapter(model, "task", config)
    assert touched
    return model


@pytest.mark.parametrize("method,arch", matrix(methods=IDENTITY_AT_INIT))
def test_identity_at_init(method, arch):
    batch = make_batch(arch)
    model = tiny_model(arch)
    base = logits(model, batch)
    add_adapter(model, "task", adapter_config_from_dict({"type": method}))
    torch.testing.assert_close(logits(model, batch), base, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method,arch", matrix())
def test_training_changes_only_the_adapter(method, arch):
    model = adapted(method, arch)
    batch = make_batch(arch)
    base_out = logits(model, batch) if method == "prefix" else None
    train_head = arch == "bert"  # the causal LMs tie lm_head to the embeddings: no head
    trainable = set(mark_trainable(model, "task", train_head=train_head))
    expected = set(adapter_parameters(model, "task"))
    heads = set(head_parameters(model)) if train_head else set()
    assert trainable == expected | heads and expected
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen_hash = base_hash(model, skip=tuple(heads))
    with disable_adapters(model):
        plain = logits(model, batch)

    train_steps(model, batch)

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == expected | heads  # every adapter tensor moved, nothing else did
    assert base_hash(model, skip=tuple(heads)) == frozen_hash
    assert not torch.allclose(logits(model, batch), plain)
    if not train_head:  # with a frozen head, disabling the adapter gives the base model back
        with disable_adapters(model):
            torch.testing.assert_close(logits(model, batch), plain, atol=0, rtol=0)
    if base_out is not None:
        assert not torch.allclose(logits(model, batch), base_out)


@pytest.mark.parametrize("method,arch", matrix(methods=MERGEABLE))
def test_merged_equals_unmerged(method, arch):
    model = adapted(method, arch)
    perturb(adapter_parameters(model, "task"), scale=0.3)
    batch = make_batch(arch)
    before_merge = base_hash(model)
    unmerged = logits(model, batch)
    merge_adapter(model, "task")
    assert base_hash(model) != before_merge  # really folded into the weights
    torch.testing.assert_close(logits(model, batch), unmerged, atol=1e-5, rtol=0)
    unmerge_adapter(model)
    torch.testing.assert_close(logits(model, batch), unmerged, atol=1e-5, rtol=0)
    with disable_adapters(model):
        base = logits(model, batch)
    torch.testing.assert_close(base, logits(tiny_model(arch), batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method,arch", matrix())
def test_save_load_round_trip(method, arch, tmp_path):
    model = adapted(method, arch)
    perturb(adapter_parameters(model, "task"), scale=0.3)
    if arch == "bert":
        perturb(head_parameters(model), scale=0.3, seed=1)
    batch = make_batch(arch)
    expected = logits(model, batch)
    save_adapter(model, tmp_path / "ad", "task", include_head=True)

    fresh = tiny_model(arch)  # same seed: the same base weights, the original head
    name = load_adapter(fresh, tmp_path / "ad")
    assert name == "task"
    torch.testing.assert_close(logits(fresh, batch), expected, atol=0, rtol=0)
    saved = {n for n, _ in fresh.named_parameters() if is_adapter(n)}
    assert saved == set(adapter_parameters(fresh, "task"))

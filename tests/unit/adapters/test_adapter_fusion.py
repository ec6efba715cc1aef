"""AdapterFusion (adapters/fusion.py): attention over trained, frozen adapters."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from tunesmith.adapters import (
    FusionConfig,
    adapter_config_from_dict,
    adapter_parameters,
    add_adapter,
    fusion_attention,
    load_adapter,
    mark_trainable,
    read_adapter_meta,
    save_adapter,
)
from tunesmith.adapters.fusion import fuse
from tunesmith.adapters.io import META_FILE
from tunesmith.errors import ConfigError, ModelError

from .helpers import base_hash, logits, make_batch, perturb, tiny_model


def trained_adapter(tmp_path, arch, spec, name, seed, num_labels=3, peft_only=False):
    """A saved adapter with non-trivial weights, from a model whose head has other labels."""
    model = tiny_model(arch, num_labels=num_labels) if arch == "bert" else tiny_model(arch)
    add_adapter(model, "default", adapter_config_from_dict(spec))
    perturb(adapter_parameters(model, "default"), scale=0.3, seed=seed)
    folder = save_adapter(model, tmp_path / name, "default", include_head=arch == "bert")
    if peft_only:  # as PEFT writes it: no tunesmith_adapter.json
        (folder / META_FILE).unlink()
    return folder


def fused_model(arch, sources, **extra):
    model = tiny_model(arch, num_labels=2) if arch == "bert" else tiny_model(arch)
    config = adapter_config_from_dict({"type": "fusion", "adapters": sources, **extra})
    add_adapter(model, "fusion", config)
    return model


def test_fuse_matches_hand_computation():
    q, k, v = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        for lin in (q, k, v):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    y = torch.tensor([[1.0, 0.0]])  # (1, d)
    deltas = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])  # (1, N=2, d)
    fused, probs = fuse(y, deltas, q, k, v)
    # scores: y . z_1 = 2, y . z_2 = 0 -> softmax [e^2, 1] / (e^2 + 1)
    s1 = torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 1)
    assert torch.allclose(probs, torch.tensor([[s1, 1 - s1]]))
    assert torch.allclose(fused, torch.tensor([[2 * s1, 3 * (1 - s1)]]))


def test_config_needs_adapters_and_refuses_fusing_a_fusion():
    with pytest.raises(ConfigError, match="adapter.adapters"):
        adapter_config_from_dict({"type": "fusion"})
    with pytest.raises(ConfigError, match="adapter.target"):
        adapter_config_from_dict({"type": "fusion", "adapters": ["a"], "target": "fusion"})


def test_fusion_of_two_trains_only_the_fusion_and_head(tmp_path):
    a = trained_adapter(tmp_path, "bert", {"type": "houlsby"}, "emotion", seed=1)
    b = trained_adapter(tmp_path, "bert", {"type": "pfeiffer"}, "trec", seed=2)
    model = fused_model("bert", [str(a), str(b)])
    trainable = mark_trainable(model, "fusion", train_head=True)
    assert trainable and all(
        n.startswith("classifier.") or n.rsplit(".", 2)[-2] in ("query", "key", "value")
        for n in trainable
    )
    members = {n: p.detach().clone() for n, p in model.named_parameters() if ".members." in n}
    base = base_hash(model, skip=("classifier.",))
    batch = make_batch("bert")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if n in trainable}
    assert changed
    assert all(torch.equal(p, members[n]) for n, p in model.named_parameters() if n in members)
    assert base_hash(model, skip=("classifier.",)) == base


def test_saved_fusion_reloads_exactly_without_its_sources(tmp_path):
    a = trained_adapter(tmp_path, "bert", {"type": "houlsby"}, "a", seed=1)
    b = trained_adapter(tmp_path, "bert", {"type": "lora", "r": 4}, "b", seed=2)
    model = fused_model("bert", [str(a), str(b)], target={"type": "pfeiffer"})
    perturb({n: p for n, p in model.named_parameters() if "adapter_slot" in n}, 0.1, seed=3)
    batch = make_batch("bert")
    before = logits(model, batch)
    saved = save_adapter(model, tmp_path / "best", "fusion")
    shutil.rmtree(a)
    shutil.rmtree(b)  # the copies in the saved fusion are enough
    meta = read_adapter_meta(saved)
    assert [m["config"]["type"] for m in meta["config"]["members"]] == ["houlsby", "lora"]
    fresh = tiny_model("bert", num_labels=2)
    load_adapter(fresh, saved)
    assert torch.equal(logits(fresh, batch), before)


def test_target_adapter_trains_and_members_stay_frozen(tmp_path):
    a = trained_adapter(tmp_path, "bert", {"type": "pfeiffer"}, "a", seed=1)
    model = fused_model("bert", [str(a)], target={"type": "pfeiffer"})
    trainable = mark_trainable(model, "fusion")
    assert any(".members.target." in n for n in trainable)
    assert not any(".members.0." in n for n in trainable)


def test_attention_sums_to_one_per_layer(tmp_path):
    a = trained_adapter(tmp_path, "bert", {"type": "houlsby"}, "emotion", seed=1)
    b = trained_adapter(tmp_path, "bert", {"type": "houlsby"}, "trec", seed=2)
    model = fused_model("bert", [str(a), str(b)])
    perturb({n: p for n, p in model.named_parameters() if ".query." in n}, 1.0, seed=4)
    with fusion_attention(model) as attention:
        logits(model, make_batch("bert"))
    assert attention["adapters"] == ["emotion", "trec"]
    assert sorted(attention["layers"]) == ["0", "1"]  # the tiny model's two blocks
    for weights in attention["layers"].values():
        assert len(weights) == 2 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    with fusion_attention(tiny_model("bert")) as none:  # no fusion: nothing recorded
        pass
    assert none == {}


@pytest.mark.parametrize(
    "arch,spec,peft_only",
    [
        ("bert", {"type": "houlsby"}, False),
        ("llama", {"type": "lora", "r": 4}, False),
        ("llama", {"type": "lora", "r": 4}, True),  # a PEFT folder
    ],
)
def test_one_adapter_at_init_is_that_adapter(tmp_path, arch, spec, peft_only):
    """V starts as the identity and softmax over one adapter is 1: the fusion is the adapter."""
    source = trained_adapter(tmp_path, arch, spec, "only", seed=5, peft_only=peft_only)
    batch = make_batch(arch)
    labels = {"num_labels": 3} if arch == "bert" else {}  # the source's head (same init)
    alone = tiny_model(arch, **labels)
    load_adapter(alone, source)
    fused = tiny_model(arch, **labels)
    add_adapter(fused, "fusion", FusionConfig(adapters=[str(source)]))
    expected, got = logits(alone, batch), logits(fused, batch)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_adapters_from_another_base_are_refused(tmp_path):
    a = trained_adapter(tmp_path, "bert", {"type": "houlsby"}, "a", seed=1)
    other = tiny_model("bert", num_labels=2, seed=7)  # same config, other weights
    config = adapter_config_from_dict({"type": "fusion", "adapters": [str(a)]})
    with pytest.raises(ModelError, match="another base model"):
        add_adapter(other, "fusion", config)
    assert not [n for n, _ in other.named_parameters() if "adapter_slot" in n]  # nothing left


def test_input_changing_adapters_cannot_be_fused(tmp_path):
    a = trained_adapter(tmp_path, "llama", {"type": "prefix"}, "p", seed=1)
    model = fused_model("llama", [str(a)])
    with pytest.raises(ModelError, match="changes the input"):
        logits(model, make_batch("llama"))


def test_fusion_is_registered_as_composite():
    from tunesmith.adapters import METHODS

    assert METHODS.get(FusionConfig.method).composite

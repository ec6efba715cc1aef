"""DoRA (Liu et al. 2024) against its equation, PEFT's implementation and PEFT's files.

The method x architecture matrix and the registry-built PEFT round trips (test_adapter_matrix.py,
test_adapter_peft_interop.py) cover DoRA because it registers itself; these tests check what is
DoRA's own: ``W' = m (W + s B A) / ||W + s B A||_c`` with the norm detached, ``m = ||W||_c`` at
init, PEFT's ``use_dora`` files and PEFT's merge.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tunesmith.adapters import (
    DoraConfig,
    LoraConfig,
    adapter_config_from_dict,
    adapter_parameters,
    add_adapter,
    load_adapter,
    merge_and_unload,
    save_adapter,
)
from tunesmith.adapters.targets import SLOT
from tunesmith.errors import ModelError

from .helpers import MERGEABLE, PEFT_TYPES, logits, make_batch, matrix, perturb, tiny_model
from .peft_checks import CASES, check_we_load_peft, peft_logits

peft = pytest.importorskip("peft")

QUERY = "bert.encoder.layer.0.attention.self.query"


def test_recipe_key_and_registry():
    config = adapter_config_from_dict({"type": "dora", "r": 4, "alpha": 16, "dropout": 0.1})
    assert config == DoraConfig(r=4, alpha=16.0, dropout=0.1) and config.scaling == 4.0
    assert adapter_config_from_dict("dora").r == LoraConfig().r  # LoRA's keys and defaults
    assert "dora" in MERGEABLE and "dora" in PEFT_TYPES
    assert ("dora", "t5") in matrix()  # every architecture with linear layers


def _dora_query(seed: int = 0):
    """A tiny BERT with a DoRA adapter on the queries only, moved away from its init."""
    model = tiny_model("bert")
    add_adapter(model, "d", DoraConfig(r=4, alpha=8, targets=["query"]))
    perturb(adapter_parameters(model, "d"), scale=0.3, seed=seed)
    module = dict(model.named_modules())[QUERY]
    return model, module, getattr(module, SLOT)["d"]


def _expected_weight(weight, layer, detach=True):
    """Eq. 5: ``m (W + s B A) / ||W + s B A||_c``, rows of ``(out, in)``."""
    direction = weight + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
    norm = direction.norm(dim=1, keepdim=True)
    return layer.lora_magnitude_vector.view(-1, 1) * direction / (norm.detach() if detach else norm)


def test_forward_is_the_papers_weight_decomposition():
    model, module, layer = _dora_query()
    x = torch.randn(3, 5, module.in_features)
    expected = F.linear(x, _expected_weight(module.weight, layer), module.bias)
    torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=1e-5)


def test_magnitude_starts_at_the_row_norms():
    for arch, name in [("bert", QUERY), ("gpt2", "transformer.h.0.attn.c_attn")]:
        model = tiny_model(arch)
        add_adapter(model, "d", DoraConfig(targets=[name.rsplit(".", 1)[1]]))
        module = dict(model.named_modules())[name]
        layer = getattr(module, SLOT)["d"]
        weight = module.weight.T if arch == "gpt2" else module.weight  # Conv1D is (in, out)
        torch.testing.assert_close(layer.lora_magnitude_vector, weight.norm(dim=1))
        assert layer.lora_magnitude_vector.shape == (weight.shape[0],)


def test_the_norm_gets_no_gradient():
    """Gradients equal those of Eq. 5 with ||.||_c detached (§4.3), not with it differentiated."""
    model, module, layer = _dora_query()
    x = torch.randn(4, module.in_features)
    params = [layer.lora_A.weight, layer.lora_B.weight, layer.lora_magnitude_vector]
    ours = torch.autograd.grad(module(x).pow(2).sum(), params)
    for detach, same in ((True, True), (False, False)):
        reference = F.linear(x, _expected_weight(module.weight, layer, detach), module.bias)
        grads = torch.autograd.grad(reference.pow(2).sum(), params)
        close = all(
            torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(ours, grads, strict=True)
        )
        assert close == same


def test_dropout_feeds_the_same_dropped_input_to_both_terms():
    model = tiny_model("bert")
    add_adapter(model, "d", DoraConfig(r=4, dropout=0.5, targets=["query"]))
    perturb(adapter_parameters(model, "d"), scale=0.3)
    module = dict(model.named_modules())[QUERY]
    layer = getattr(module, SLOT)["d"]
    x = torch.randn(2, 3, module.in_features)
    layer.train()
    torch.manual_seed(7)
    ours = module(x)
    torch.manual_seed(7)
    dropped = F.dropout(x, 0.5, training=True)
    assert not torch.equal(dropped, x)
    weight, norm = module.weight, layer.weight_norm(module)
    scale = layer.lora_magnitude_vector / norm
    lora = F.linear(F.linear(dropped, layer.lora_A.weight), layer.lora_B.weight)
    expected = F.linear(x, weight, module.bias) + (scale - 1) * F.linear(dropped, weight)
    expected = expected + scale * lora * layer.scaling
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_files_are_peft_lora_files_with_use_dora(tmp_path):
    model, _, _ = _dora_query()
    save_adapter(model, tmp_path, "d")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["use_dora"] is True
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    assert f"base_model.model.{QUERY}.lora_magnitude_vector" in keys
    assert f"base_model.model.{QUERY}.lora_A.weight" in keys


@pytest.mark.parametrize("arch,task", CASES)
def test_we_load_peft_dora_built_with_peft_defaults(arch, task, tmp_path):
    check_we_load_peft(
        peft, arch, task, peft.LoraConfig(r=4, lora_alpha=16, use_dora=True), tmp_path
    )


def test_peft_dora_loads_as_dora_and_plain_lora_as_lora(tmp_path):
    for use_dora, cls in ((True, DoraConfig), (False, LoraConfig)):
        folder = tmp_path / str(use_dora)
        theirs = peft.get_peft_model(tiny_model("bert"), peft.LoraConfig(r=2, use_dora=use_dora))
        theirs.save_pretrained(folder)
        ours = tiny_model("bert")
        load_adapter(ours, folder)
        assert type(ours._tunesmith_adapters.get("default").config) is cls


def test_unsupported_peft_options_with_dora_are_named(tmp_path):
    config = peft.LoraConfig(r=2, use_dora=True, layers_to_transform=[0])
    peft.get_peft_model(tiny_model("bert"), config).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="DoRA option.*layers_to_transform"):
        load_adapter(tiny_model("bert"), tmp_path)


@pytest.mark.parametrize("arch,task", [("bert", "sequence_classification"), ("gpt2", "causal_lm")])
def test_merged_weights_match_peft_merge(arch, task, tmp_path):
    model = tiny_model(arch, task)
    add_adapter(model, "d", DoraConfig(r=4, alpha=8))
    perturb(adapter_parameters(model, "d"), scale=0.3)
    save_adapter(model, tmp_path, "d")
    batch = make_batch(arch, task)
    theirs = peft.PeftModel.from_pretrained(tiny_model(arch, task), tmp_path).eval()
    torch.testing.assert_close(peft_logits(theirs, batch), logits(model, batch), atol=0, rtol=0)

    ours, theirs = merge_and_unload(model).state_dict(), theirs.merge_and_unload().state_dict()
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        torch.testing.assert_close(value, theirs[key], atol=1e-5, rtol=1e-5)

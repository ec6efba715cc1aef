"""LoRA and IA3 files are PEFT's: PEFT loads ours and we load PEFT's, with identical outputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.adapters import (
    IA3Config,
    LoraConfig,
    adapter_parameters,
    add_adapter,
    head_parameters,
    load_adapter,
    mark_trainable,
    save_adapter,
)
from tunesmith.errors import ModelError

from .helpers import logits, make_batch, perturb, tiny_model

peft = pytest.importorskip("peft")

CASES = [  # (arch, task): BERT and Llama classifiers exercise the head (modules_to_save)
    ("bert", "sequence_classification"),
    ("llama", "sequence_classification"),
    ("llama", "causal_lm"),
    ("gpt2", "causal_lm"),  # Conv1D: fan_in_fan_out
]
CONFIGS = {
    "lora": (LoraConfig(r=4, alpha=16), lambda: peft.LoraConfig(r=4, lora_alpha=16)),
    "lora-all": (LoraConfig(r=2, targets="all-linear"), None),
    "ia3": (IA3Config(), lambda: peft.IA3Config()),
}


def peft_logits(model, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("arch,task", CASES)
@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_peft_loads_ours(arch, task, kind, tmp_path):
    model = tiny_model(arch, task)
    add_adapter(model, "task", CONFIGS[kind][0])
    mark_trainable(model, "task", train_head=True)
    perturb(adapter_parameters(model, "task"), scale=0.3)
    perturb(head_parameters(model), scale=0.3, seed=1)
    batch = make_batch(arch, task)
    save_adapter(model, tmp_path, "task")

    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == kind.split("-")[0].upper()
    assert config["base_model_name_or_path"] == f"tiny-{arch}"
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    assert all(k.startswith("base_model.model.") for k in keys)

    theirs = peft.PeftModel.from_pretrained(tiny_model(arch, task), tmp_path).eval()
    torch.testing.assert_close(peft_logits(theirs, batch), logits(model, batch), atol=0, rtol=0)


@pytest.mark.parametrize("arch,task", CASES)
@pytest.mark.parametrize("kind", ["lora", "ia3"])
def test_we_load_peft(arch, task, kind, tmp_path):
    theirs = peft.get_peft_model(tiny_model(arch, task), CONFIGS[kind][1]())
    trainable = {n: p for n, p in theirs.named_parameters() if p.requires_grad}
    perturb(trainable, scale=0.3)
    theirs.eval()
    theirs.save_pretrained(tmp_path)
    batch = make_batch(arch, task)

    ours = tiny_model(arch, task)
    assert load_adapter(ours, tmp_path) == "default"
    torch.testing.assert_close(logits(ours, batch), peft_logits(theirs, batch), atol=0, rtol=0)


def test_unsupported_peft_options_are_named(tmp_path):
    theirs = peft.get_peft_model(tiny_model("bert"), peft.LoraConfig(r=2, use_dora=True))
    theirs.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="use_dora"):
        load_adapter(tiny_model("bert"), tmp_path)

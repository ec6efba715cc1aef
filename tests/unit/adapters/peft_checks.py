"""Round trips through real ``peft``, shared by the interop tests of every PEFT-format method.

A method declaring a :class:`~tunesmith.adapters.PeftMapping` joins the registry-built cases of
``test_adapter_peft_interop.py``; a method's own test file can call these checks with a PEFT
config written by hand (PEFT's defaults rather than ours).
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from tunesmith.adapters import (
    adapter_parameters,
    add_adapter,
    head_parameters,
    load_adapter,
    mark_trainable,
    save_adapter,
)

from .helpers import implementation, logits, make_batch, perturb, tiny_model

CASES = [  # (arch, task): BERT and Llama classifiers exercise the head (modules_to_save)
    ("bert", "sequence_classification"),
    ("llama", "sequence_classification"),
    ("llama", "causal_lm"),
    ("gpt2", "causal_lm"),  # Conv1D: fan_in_fan_out
]


def peft_logits(model, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        return model(**inputs).logits


def check_peft_loads_ours(peft, arch, task, config, folder) -> None:
    """We save a trained adapter built from ``config``; PEFT loads it with identical outputs."""
    model = tiny_model(arch, task)
    add_adapter(model, "task", config)
    mark_trainable(model, "task", train_head=True)
    perturb(adapter_parameters(model, "task"), scale=0.3)
    perturb(head_parameters(model), scale=0.3, seed=1)
    batch = make_batch(arch, task)
    save_adapter(model, folder, "task")

    written = json.loads((folder / "adapter_config.json").read_text())
    mapping = implementation(config.type).peft
    assert written["peft_type"] == mapping.peft_type
    assert all(written[k] == v for k, v in mapping.selects.items())
    assert written["base_model_name_or_path"] == f"tiny-{arch}"
    keys = set(load_file(folder / "adapter_model.safetensors"))
    assert all(k.startswith("base_model.model.") for k in keys)

    theirs = peft.PeftModel.from_pretrained(tiny_model(arch, task), folder).eval()
    torch.testing.assert_close(peft_logits(theirs, batch), logits(model, batch), atol=0, rtol=0)


def check_we_load_peft(peft, arch, task, peft_config, folder) -> None:
    """PEFT builds and saves a (perturbed) adapter from ``peft_config``; we load it with
    identical outputs, under PEFT's adapter name."""
    theirs = peft.get_peft_model(tiny_model(arch, task), peft_config)
    trainable = {n: p for n, p in theirs.named_parameters() if p.requires_grad}
    assert trainable
    perturb(trainable, scale=0.3)
    theirs.eval()
    theirs.save_pretrained(folder)
    batch = make_batch(arch, task)

    ours = tiny_model(arch, task)
    assert load_adapter(ours, folder) == "default"
    torch.testing.assert_close(logits(ours, batch), peft_logits(theirs, batch), atol=0, rtol=0)

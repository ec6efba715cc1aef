"""Tiny random models (hidden 32, 2 layers), batches and checks shared by the adapter tests."""

from __future__ import annotations

import hashlib

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)

from tunesmith.adapters import ADAPTERS, METHODS, AdapterMethod
from tunesmith.adapters.targets import SLOT
from tunesmith.testing import tiny_config

VOCAB = 120
AUTO = {
    "sequence_classification": AutoModelForSequenceClassification,
    "causal_lm": AutoModelForCausalLM,
    "seq2seq": AutoModelForSeq2SeqLM,
}
DEFAULT_TASK = {
    "bert": "sequence_classification",
    "llama": "causal_lm",
    "gpt2": "causal_lm",
    "t5": "seq2seq",
}
ARCHS = ("bert", "llama", "gpt2", "t5")


def implementation(adapter_type: str) -> AdapterMethod:
    """The registered implementation behind a recipe ``adapter.type`` name."""
    return METHODS.get(ADAPTERS.get(adapter_type).method)


# every registered adapter type (a new method module joins every matrix below by registering);
# composite methods (fusion) are built from trained adapters and have their own tests
TYPES = tuple(t for t in ADAPTERS.names() if not implementation(t).composite)
IDENTITY_AT_INIT = tuple(t for t in TYPES if implementation(t).identity_at_init)
MERGEABLE = tuple(t for t in TYPES if implementation(t).mergeable)
PEFT_TYPES = tuple(t for t in TYPES if implementation(t).peft is not None)


def matrix(methods=TYPES, archs=ARCHS):
    """(adapter type, arch) pairs where the method applies (its ``supports(model_type)``)."""
    return [(m, a) for m in methods for a in archs if implementation(m).supports(a)]


def tiny_model(arch: str, task: str | None = None, seed: int = 0, **kw):
    """A random tiny ``arch`` model in eval mode; same ``seed`` -> same weights."""
    task = task or DEFAULT_TASK[arch]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AUTO[task].from_config(tiny_config(arch, VOCAB, **kw))
    model.config.name_or_path = f"tiny-{arch}"
    return model.eval()


def make_batch(arch: str, task: str | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two sequences of 8 tokens, the second right-padded to 6, with labels for the task."""
    task = task or DEFAULT_TASK[arch]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, VOCAB, (2, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    if task == "sequence_classification":
        batch["labels"] = torch.tensor([0, 1])
    elif task == "causal_lm":
        batch["labels"] = ids.masked_fill(mask == 0, -100)
    else:
        batch["labels"] = torch.randint(7, VOCAB, (2, 5), generator=g)
    return batch


def logits(model, batch) -> torch.Tensor:
    """Eval-mode logits (labels dropped; seq2seq decodes the labels teacher-forced)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if "labels" in batch and batch["labels"].shape != batch["input_ids"].shape:
        inputs["decoder_input_ids"] = batch["labels"]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(**inputs).logits
    model.train(was_training)
    return out


def train_steps(model, batch, steps: int = 3, lr: float = 1e-2) -> None:
    """A few AdamW steps on the task loss over the parameters that require grad."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    for _ in range(steps):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def is_adapter(name: str) -> bool:
    return f".{SLOT}." in f".{name}"


def base_hash(model, skip: tuple[str, ...] = ()) -> str:
    """sha256 over every base (non-adapter) parameter's bytes, except names starting with skip."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if not is_adapter(name) and not name.startswith(skip):
            h.update(name.encode())
            h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def perturb(params, scale: float = 0.5, seed: int = 0) -> None:
    """Add noise to ``params`` (name -> parameter) so an adapter is far from its init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params.values():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def enable_checkpointing(model) -> None:
    """Turn on activation checkpointing by either of transformers' names for it."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()

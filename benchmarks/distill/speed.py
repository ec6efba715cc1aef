"""Inference throughput of a teacher and its students, measured in one process, round-robin.

Protocol (the same for every model of a comparison): inputs tokenised once up front and sorted by
length, batches padded to their longest example; ``torch.inference_mode``; 2 warm-up batches per
model; then 3 timed passes over the whole set, models interleaved pass by pass (so a change in
machine load hits all of them alike); examples/s = examples / median pass time. Only the model's
forward is timed, not tokenisation.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from tunesmith.data.collate import Collator
from tunesmith.models import count_parameters, resolve_model

WARMUP_BATCHES = 2
PASSES = 3


def load(model_dir: str | Path, task: str) -> torch.nn.Module:
    """A plain transformers model from a folder (``best/`` of a run, or an embedded model)."""
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    model = auto.from_pretrained(resolve_model(str(model_dir)))
    model.config.output_hidden_states = False  # a hidden-state student saves it switched on
    return model.eval()


def classification_batches(
    model_dir: str | Path, texts: list[str], batch_size: int = 64, max_length: int = 128
) -> tuple[list[list[int]], list[dict[str, torch.Tensor]]]:
    """(example indices per batch, padded batches) of ``texts``, shortest first."""
    tok = AutoTokenizer.from_pretrained(resolve_model(str(model_dir)))
    enc = tok(texts, truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
    groups = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    batches = [
        tok.pad([{k: enc[k][i] for k in enc} for i in g], return_tensors="pt") for g in groups
    ]
    return groups, [dict(b) for b in batches]


def lm_batches(examples: list[dict], pad_token_id: int, batch_size: int = 8):
    """Padded ``input_ids`` / ``attention_mask`` batches of encoded causal-LM examples."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    collate = Collator(pad_token_id=pad_token_id)
    batches = []
    for s in range(0, len(order), batch_size):
        batch = collate([examples[i] for i in order[s : s + batch_size]])
        batches.append({k: batch[k] for k in ("input_ids", "attention_mask")})
    return batches


def _one_pass(model, batches, on_logits: Callable | None = None) -> float:
    t0 = time.perf_counter()
    for i, batch in enumerate(batches):
        logits = model(**batch).logits
        if on_logits is not None:
            on_logits(i, logits)
    return time.perf_counter() - t0


@torch.inference_mode()
def throughput(
    models: dict[str, torch.nn.Module],
    batches: list[dict[str, torch.Tensor]],
    on_logits: dict[str, Callable] | None = None,
) -> dict[str, dict]:
    """name -> {examples_per_s, pass_s (the 3 timed passes), params}; see the module docstring.

    ``on_logits[name](batch_index, logits)`` is called during that model's last timed pass
    (e.g. to collect predictions for an accuracy cross-check).
    """
    n = sum(len(b["input_ids"]) for b in batches)
    for model in models.values():
        for i in range(WARMUP_BATCHES):
            model(**batches[i % len(batches)])
    times: dict[str, list[float]] = {name: [] for name in models}
    for p in range(PASSES):
        for name, model in models.items():
            hook = (on_logits or {}).get(name) if p == PASSES - 1 else None
            times[name].append(_one_pass(model, batches, hook))
    return {
        name: {
            "examples_per_s": round(n / statistics.median(ts), 1),
            "pass_s": [round(t, 3) for t in ts],
            "params": count_parameters(models[name])[1],
        }
        for name, ts in times.items()
    }


def classification_speeds(
    model_dirs: dict[str, Path], texts: list[str], labels: list[str], max_length: int = 128
) -> dict[str, dict]:
    """Throughput (batch 64) of each classifier on ``texts``, plus its accuracy on ``labels``
    from the timed forward passes (a check that the timed model is the evaluated one)."""
    models = {name: load(d, "sequence_classification") for name, d in model_dirs.items()}
    first = next(iter(model_dirs.values()))  # teacher and students share one tokenizer
    groups, batches = classification_batches(first, texts, 64, max_length)
    preds: dict[str, dict[int, str]] = {name: {} for name in models}

    def collector(name):
        id2label = models[name].config.id2label

        def hook(b, logits):
            for i, k in zip(groups[b], logits.argmax(-1).tolist(), strict=True):
                preds[name][i] = str(id2label[k])

        return hook

    out = throughput(models, batches, {name: collector(name) for name in models})
    for name, r in out.items():
        hits = sum(preds[name][i] == str(y) for i, y in enumerate(labels))
        r["inference_accuracy"] = round(hits / max(len(labels), 1), 4)
    return out

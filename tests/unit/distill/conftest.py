"""Tiny teachers and students built in process (hidden 32, a few layers, no network)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tunesmith.testing import tiny_config, tiny_tokenizer


def build(arch: str, auto, seed: int = 0, **kw):
    tok = tiny_tokenizer(kind="bert" if arch == "bert" else "causal")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(tiny_config(arch, len(tok), **kw), attn_implementation="sdpa")
    return model.eval()


@pytest.fixture(scope="module")
def bert_tok():
    return tiny_tokenizer(kind="bert")


@pytest.fixture(scope="module")
def causal_tok():
    return tiny_tokenizer(kind="causal")


@pytest.fixture
def bert_teacher():
    """4-layer BERT classifier (3 labels)."""
    return build("bert", AutoModelForSequenceClassification, num_hidden_layers=4, num_labels=3)


@pytest.fixture
def llama_teacher():
    """4-layer Llama causal LM with tied embeddings."""
    return build("llama", AutoModelForCausalLM, num_hidden_layers=4)


def lm_examples(tok, n: int = 6) -> list[dict]:
    """Causal-LM examples of different lengths with a masked 2-token prompt."""
    words = "the cat is happy and the dog is sad but the movie is good".split()
    out = []
    for i in range(n):
        ids = tok(" ".join(words[i : i + 4 + i % 3]))["input_ids"]
        labels = [-100, -100] + ids[2:]
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return out


def cls_examples(tok, n: int = 5) -> list[dict]:
    texts = ["good movie", "bad film", "the cat is happy", "sad", "i love the dog a lot"]
    enc = [tok(t) for t in texts[:n]]
    return [
        {"input_ids": e["input_ids"], "attention_mask": e["attention_mask"],
         "token_type_ids": e["token_type_ids"], "labels": i % 3}
        for i, e in enumerate(enc)
    ]  # fmt: skip

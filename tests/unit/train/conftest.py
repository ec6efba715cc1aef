"""Tiny models and datasets on disk, so the whole loop runs in seconds with no network."""

import json
import random

import pytest

from tunesmith.testing import save_tiny_model

POS = "good happy love yes great well right".split()
NEG = "bad sad hate no low off end".split()
FILL = "the movie film book was a very it is this one".split()


def sentence(rng, words):
    return " ".join(rng.sample(FILL, 3) + rng.sample(words, 2))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        ("bert", "sequence_classification"): save_tiny_model(
            root / "bert-cls", "bert", "sequence_classification"
        ),
        ("bert", "token_classification"): save_tiny_model(
            root / "bert-tok", "bert", "token_classification", num_labels=3
        ),
        ("llama", "causal_lm"): save_tiny_model(root / "llama", "llama", "causal_lm"),
        ("gpt2", "sequence_classification"): save_tiny_model(
            root / "gpt2-cls", "gpt2", "sequence_classification"
        ),
        ("t5", "seq2seq"): save_tiny_model(root / "t5", "t5", "seq2seq"),
    }


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(0)
    lines = [f"{i % 2} {sentence(rng, POS if i % 2 else NEG)}" for i in range(96)]
    (root / "sent.txt").write_text("\n".join(lines) + "\n")
    conll = []
    for _ in range(40):
        words = rng.sample(FILL + POS, 5)
        tags = ["B-POS" if w in POS else "O" for w in words]
        conll.append("\n".join(f"{w}\t{t}" for w, t in zip(words, tags, strict=True)))
    (root / "ner.conll").write_text("\n\n".join(conll) + "\n")
    inst = [
        {"instruction": f"say {w}", "input": "", "output": f"{w} {w} yes"} for w in POS + NEG
    ] * 3
    (root / "inst.json").write_text(json.dumps(inst))
    pairs = [{"source": f"copy {w}", "target": w} for w in POS + NEG] * 3
    (root / "s2s.jsonl").write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    return root


def make_recipe(model_dir, task, data_root, run_dir, **over):
    from tunesmith.config import parse_recipe

    data = {
        "sequence_classification": {
            "train": {"path": "sent.txt", "format": "label_text"},
            "split": {"dev": 0.25, "test": 0.25},
        },
        "token_classification": {"train": "ner.conll", "split": {"dev": 0.25}},
        "causal_lm": {"train": "inst.json", "split": {"dev": 0.2}, "max_length": 32},
        "seq2seq": {"train": "s2s.jsonl", "split": {"dev": 0.2}},
    }[task]
    base = {
        "model": str(model_dir),
        "task": task,
        "output_dir": str(run_dir),
        "seed": 3,
        "data": {"root": str(data_root), **data},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        # precision pinned: the tiny runs compare numbers exactly, whatever the CPU has
        "train": {
            "batch_size": 8,
            "epochs": 2,
            "progress": False,
            "tensorboard": False,
            "precision": "fp32",
        },
    }
    overrides = [f"{k}={v}" for k, v in over.items()]
    return parse_recipe(base, overrides)

"""Tiny models and a tiny two-task sequence for the continual-learning tests (no network).

Task ``senti`` (2 labels) tells positive from negative words; task ``topic`` (3 labels) tells
animals, family and nature words apart. Words come from the tiny tokenizer's vocabulary.
"""

import random

import pytest

from tunesmith.testing import save_tiny_model

FILL = "the a very it is this one was".split()
SENTI = {"pos": "good happy love yes great well".split(), "neg": "bad sad hate no low off".split()}
TOPIC = {
    "animal": "cat dog animal".split(),
    "family": "mother father boy man".split(),
    "nature": "water land earth air".split(),
}


def _lines(rng: random.Random, words: dict[str, list[str]], n: int) -> str:
    labels = sorted(words)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        out.append(f"{label} " + " ".join(rng.sample(FILL, 3) + rng.sample(words[label], 2)))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return save_tiny_model(root / "bert", "bert", "sequence_classification", num_labels=2)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "llama", "llama", "causal_lm")


@pytest.fixture(scope="session")
def two_tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(0)
    (root / "senti.txt").write_text(_lines(rng, SENTI, 96))
    (root / "topic.txt").write_text(_lines(rng, TOPIC, 96))
    return root


def sequence_dict(model_dir, data_root, out_dir, method="naive", **continual):
    """A two-stage sequence recipe (as parsed YAML): senti, then topic."""

    def stage(name):
        source = {"path": f"{name}.txt", "format": "label_text"}
        return {"name": name, "data": {"train": source, "split": {"dev": 0.25, "test": 0.25}}}

    return {
        "model": str(model_dir),
        "task": "sequence_classification",
        "output_dir": str(out_dir),
        "seed": 3,
        "data": {"root": str(data_root), "max_length": 16},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "train": {"batch_size": 8, "epochs": 1, "progress": False, "tensorboard": False},
        "continual": {"method": method, **continual},
        "stages": [stage("senti"), stage("topic")],
    }

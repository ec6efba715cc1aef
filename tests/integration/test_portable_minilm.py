"""A MiniLM LoRA run's ``best/`` loads in ``peft`` by the code its own model card gives, with the
base fetched by its hub id (``sentence-transformers/all-MiniLM-L6-v2``) from a local hub cache
that mirrors the embedded copy, with label names and tunesmith's logits. A few seconds of
training; run with ``-m integration``."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tunesmith.config import parse_recipe  # noqa: E402
from tunesmith.embedded import EMBEDDED  # noqa: E402
from tunesmith.predict import load_run  # noqa: E402
from tunesmith.testing import mirror_in_hub_cache  # noqa: E402
from tunesmith.train.loop import train  # noqa: E402

pytestmark = pytest.mark.integration

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["the film was good and happy", "the film was sad and awful", "a film"]


def minilm_lora_run(root):
    rng = random.Random(0)
    pos, neg = "good happy love great fine".split(), "bad sad hate awful poor".split()
    lines = [
        f"{i % 2} the film was {' '.join(rng.sample(pos if i % 2 else neg, 2))}" for i in range(48)
    ]
    (root / "sent.txt").write_text("\n".join(lines) + "\n")
    recipe = {
        "model": "minilm",
        "task": "sequence_classification",
        "output_dir": str(root / "run"),
        "seed": 1,
        "data": {
            "root": str(root),
            "train": {"path": "sent.txt", "format": "label_text"},
            "split": {"dev": 0.25},
            "label_names": {"0": "negative", "1": "positive"},
            "max_length": 16,
        },
        "adapter": {"type": "lora", "r": 4, "alpha": 8},
        "head": {"pooling": "pooler"},  # what plain transformers / peft rebuild (see the card)
        "optim": {"lr": 1e-3},
        "train": {"batch_size": 8, "max_steps": 3, "progress": False, "tensorboard": False},
    }
    train(parse_recipe(recipe))
    return root / "run"


def peft_snippet(card: str) -> str:
    """The card's ``With peft`` code block."""
    after = card.split("With peft", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_minilm_lora_best_loads_in_peft_from_its_card(tmp_path):
    pytest.importorskip("peft")
    if "minilm" not in EMBEDDED:
        pytest.skip("no embedded minilm")
    try:
        minilm = EMBEDDED.get("minilm")()
    except Exception as exc:  # the package is not installed
        pytest.skip(str(exc))
    run = minilm_lora_run(tmp_path)
    best = run / "best"
    assert json.loads((best / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        HUB_ID
    )
    card = (best / "README.md").read_text()
    meta = yaml.safe_load(card[4:].partition("\n---\n")[0])
    assert meta["base_model"] == HUB_ID and meta["library_name"] == "peft"

    cache = tmp_path / "hub-cache"
    mirror_in_hub_cache(cache, HUB_ID, minilm)
    code = peft_snippet(card) + (
        "import json, torch\n"
        f"enc = tokenizer({TEXTS!r}, return_tensors='pt', padding=True)\n"
        "with torch.no_grad():\n"
        "    logits = model.eval()(**enc).logits\n"
        "print(json.dumps({'labels': model.config.id2label, 'logits': logits.tolist()}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs["labels"] == {"0": "negative", "1": "positive"}

    _, model, tokenizer, _ = load_run(run)
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        ours = model(**enc).logits
    torch.testing.assert_close(torch.tensor(theirs["logits"]), ours, atol=1e-5, rtol=0)

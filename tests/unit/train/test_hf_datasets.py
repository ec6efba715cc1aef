"""Data from 🤗 datasets (issue 15, item 1): a recipe trains from a local parquet file, a
``save_to_disk`` folder and a ``DatasetDict`` passed in from Python; dataset sources are tokenised
once (the cache), a hub name offline is a one-line error, a bad row is named ``NAME[split] row N``."""

from __future__ import annotations

import json
import logging

import pytest

from tunesmith.cli import main
from tunesmith.data.pipeline import build_datasets, load_raw_splits
from tunesmith.errors import ConfigError, DataError
from tunesmith.models import load_tokenizer
from tunesmith.train.loop import train
from tunesmith.train.runfolder import RunFolderError

from .conftest import make_recipe

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")

CLS = "sequence_classification"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test its own tunesmith cache (datasets' caches and the tokenisation cache)."""
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))


def sentences(tiny_data) -> list[dict]:
    """The toy sentiment task as records (label, text)."""
    lines = (tiny_data / "sent.txt").read_text().splitlines()
    return [{"label": line[0], "text": line[2:]} for line in lines]


def recipe_for(tiny_models, tiny_data, run, data: dict, **over):
    r = make_recipe(tiny_models["bert", CLS], CLS, tiny_data, run, **over)
    r.data.train, r.data.split = None, {}
    for key, value in data.items():
        setattr(r.data, key, value)
    return r


def source(**kw):
    from tunesmith.config import SplitSource

    src = SplitSource(**kw)
    src.validate("data.x")
    return src


def test_train_from_a_local_parquet_file(tiny_models, tiny_data, tmp_path):
    """`data.train: {path: x.parquet}` used to validate and then fail with `cannot infer the data
    format`; now the parquet reader reads it (and `dataset: x.parquet` reads it through
    datasets)."""
    recs = sentences(tiny_data)
    pq.write_table(pa.Table.from_pylist(recs[:72]), tmp_path / "train.parquet")
    pq.write_table(pa.Table.from_pylist(recs[72:]), tmp_path / "dev.parquet")
    by_reader = {
        "train": source(path=str(tmp_path / "train.parquet")),
        "dev": source(path=str(tmp_path / "dev.parquet")),
    }
    train(recipe_for(tiny_models, tiny_data, tmp_path / "run", by_reader))
    assert (tmp_path / "run" / "best").is_dir()
    by_datasets = {
        "train": source(dataset=str(tmp_path / "train.parquet")),
        "dev": source(dataset=str(tmp_path / "dev.parquet")),
    }
    r = recipe_for(tiny_models, tiny_data, tmp_path / "run2", by_datasets)
    raw = load_raw_splits(r)
    assert raw["train"] == recs[:72] and raw["dev"] == recs[72:]
    train(r)
    assert (tmp_path / "run2" / "best").is_dir()


def test_train_from_a_save_to_disk_folder(tiny_models, tiny_data, tmp_path):
    recs = [{"sentence": r["text"], "label": r["label"]} for r in sentences(tiny_data)]
    dd = datasets.Dataset.from_list(recs).train_test_split(test_size=0.25, seed=0)
    dd.save_to_disk(str(tmp_path / "saved"))
    columns = {"text": "sentence"}
    data = {
        "train": source(dataset=str(tmp_path / "saved"), columns=columns),
        "dev": source(dataset=str(tmp_path / "saved"), split="test", columns=columns),
    }
    r = recipe_for(tiny_models, tiny_data, tmp_path / "run", data)
    raw = load_raw_splits(r)
    assert len(raw["train"]) == 72 and len(raw["dev"]) == 24
    assert set(raw["train"][0]) == {"text", "label"}
    train(r)
    assert (tmp_path / "run" / "best").is_dir()


def test_train_from_a_datasetdict_passed_in_python(tiny_models, tiny_data, tmp_path):
    """No data.train in the recipe: the DatasetDict's train and validation (as dev) are used;
    a resume with different data refuses."""
    from accelerate import Accelerator

    from tunesmith.train.modes import build_mode

    recs = sentences(tiny_data)
    dd = datasets.DatasetDict(
        train=datasets.Dataset.from_list(recs[:72]),
        validation=datasets.Dataset.from_list(recs[72:]),
    )
    r = recipe_for(tiny_models, tiny_data, tmp_path / "run", {})
    assert r.data.train is None
    tok = load_tokenizer(str(tiny_models["bert", CLS]))
    mode = build_mode(r, tok, Accelerator(cpu=True), datasets=dd)
    assert len(mode.data.train) == 72 and len(mode.data.dev) == 24
    assert mode.data.vocab.labels == ["0", "1"]
    train(r, datasets=dd)
    fingerprint = json.loads((tmp_path / "run" / "fingerprint.json").read_text())
    assert fingerprint["data"]["data.train"]["digest"] == dd["train"]._fingerprint
    other = {"train": recs[:70], "dev": recs[72:]}  # lists of dicts work too
    with pytest.raises(RunFolderError, match=r"data\.train .* changed"):
        train(r, resume=True, datasets=other)


def test_recipe_without_train_and_without_datasets_is_a_clear_error(tiny_data, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: minilm\ntask: {CLS}\ndata: {{max_length: 32}}\n")
    assert main(["validate", str(recipe)]) == 2


def test_dataset_tokenisation_is_cached(tiny_models, tiny_data, tmp_path, monkeypatch, caplog):
    """The second build of the same dataset through the same tokenizer reads the cache (map is
    never called); a changed setting tokenises again."""
    recs = sentences(tiny_data)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    data = {"train": source(dataset=str(tmp_path / "train.jsonl"))}
    r = recipe_for(tiny_models, tiny_data, tmp_path / "run", data)
    tok = load_tokenizer(str(tiny_models["bert", CLS]))
    first = build_datasets(r, tok)
    assert len(list((tmp_path / "cache" / "tokenized").glob("*.arrow"))) == 1
    in_memory = build_datasets(r, tok, given={"train": recs})  # a list: in memory, not cached
    assert in_memory.train == first.train

    def no_map(*a, **k):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(datasets.Dataset, "map", no_map)
    with caplog.at_level(logging.INFO, logger="tunesmith.data.tokcache"):
        second = build_datasets(r, tok)
    assert second.train == first.train and "from the cache" in caplog.text
    monkeypatch.undo()
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    r.data.max_length = 16  # another setting: another key
    build_datasets(r, tok)
    assert len(list((tmp_path / "cache" / "tokenized").glob("*.arrow"))) == 2


def test_hub_name_offline_is_a_one_line_error(tiny_models, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = {"train": source(dataset="someorg/some_dataset", config="plain")}
    r = recipe_for(tiny_models, tiny_data, tmp_path / "run", data)
    with pytest.raises(DataError) as err:
        load_raw_splits(r)
    msg = str(err.value)
    assert "\n" not in msg and "someorg/some_dataset" in msg and "HF_HUB_OFFLINE" in msg
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: minilm\ntask: {CLS}\ndata: {{train: {{dataset: someorg/some_dataset}}}}\n"
    )
    assert main(["validate", str(recipe)]) == 2


def test_cli_prints_the_offline_error_as_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: minilm\ntask: {CLS}\ndata: {{train: {{dataset: nyu-mll/glue, config: sst2}}}}\n"
    )
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: data.train.dataset: 'nyu-mll/glue'")


def test_dataset_records_get_the_file_checks_with_row_places(tiny_models, tiny_data, tmp_path):
    recs = sentences(tiny_data)
    recs[5] = {"text": "no label here", "label": ""}
    datasets.Dataset.from_list(recs).save_to_disk(str(tmp_path / "saved"))
    r = recipe_for(
        tiny_models, tiny_data, tmp_path / "run", {"train": source(dataset=str(tmp_path / "saved"))}
    )
    with pytest.raises(DataError, match=r"saved\[train\] row 5: no label"):
        load_raw_splits(r)
    with pytest.raises(DataError, match=r"datasets\[train\] row 5: no label"):
        load_raw_splits(r, given={"train": recs})


def test_dataset_split_choice_and_errors(tiny_models, tiny_data, tmp_path):
    recs = sentences(tiny_data)
    datasets.DatasetDict(
        train=datasets.Dataset.from_list(recs[:80]),
        validation=datasets.Dataset.from_list(recs[80:]),
    ).save_to_disk(str(tmp_path / "dd"))
    where = str(tmp_path / "dd")
    data = {"train": source(dataset=where), "dev": source(dataset=where)}
    raw = load_raw_splits(recipe_for(tiny_models, tiny_data, tmp_path / "run", data))
    assert len(raw["dev"]) == 16  # dev found the validation split
    data = {"train": source(dataset=where, split="nope")}
    with pytest.raises(
        DataError, match=r"no split 'nope'; the dataset has \['train', 'validation'\]"
    ):
        load_raw_splits(recipe_for(tiny_models, tiny_data, tmp_path / "run", data))
    data = {"train": source(dataset=where, columns={"text": "sentence"})}
    with pytest.raises(DataError, match=r"data.train.columns: .* no column 'sentence'"):
        load_raw_splits(recipe_for(tiny_models, tiny_data, tmp_path / "run", data))


def test_split_source_needs_exactly_one_of_path_and_dataset():
    from tunesmith.config import parse_recipe

    base = {"model": "minilm", "task": CLS}
    for train_ in ({"path": "a.jsonl", "dataset": "b"}, {"format": "jsonl"}):
        with pytest.raises(ConfigError, match=r"^data\.train: give either path"):
            parse_recipe({**base, "data": {"train": train_}})
    with pytest.raises(ConfigError, match=r"^data\.train\.config: only for dataset sources"):
        parse_recipe({**base, "data": {"train": {"path": "a.jsonl", "config": "x"}}})


def test_columns_mapping_renames_file_fields(tiny_models, tiny_data, tmp_path):
    (tmp_path / "t.jsonl").write_text(
        "".join(
            json.dumps({"sentence": r["text"], "y": r["label"]}) + "\n"
            for r in sentences(tiny_data)
        )
    )
    data = {
        "train": source(path=str(tmp_path / "t.jsonl"), columns={"text": "sentence", "label": "y"})
    }
    raw = load_raw_splits(recipe_for(tiny_models, tiny_data, tmp_path / "run", data))
    assert raw["train"][0] == sentences(tiny_data)[0]


def test_given_datasets_are_for_single_task_recipes(tiny_models, tiny_data, tmp_path):
    from tunesmith.train.modes import build_mode

    r = recipe_for(tiny_models, tiny_data, tmp_path / "run", {})
    r.tasks = [object()]  # any multi-task recipe
    with pytest.raises(ConfigError, match="single-task"):
        build_mode(r, None, None, datasets={"train": []})
    with pytest.raises(ConfigError, match=r"datasets\['extra'\]: unknown split"):
        load_raw_splits(recipe_for(tiny_models, tiny_data, tmp_path / "run", {}), {"extra": []})

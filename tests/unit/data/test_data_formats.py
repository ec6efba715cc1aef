"""The data-format table: every built-in format is one registered record, and a new format joins
recipe validation, extension inference, ``read_records`` and ``tunesmith list`` by registering
itself — no list to edit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tunesmith
from tunesmith.cli import main
from tunesmith.config import parse_recipe
from tunesmith.data import read_records
from tunesmith.data.readers import Bad, DataFormat, ReadOptions, infer_format, read_lines
from tunesmith.errors import ConfigError, DataError
from tunesmith.registry import FORMATS


def recipe_with_format(fmt: str, path: str = "x.toy") -> dict[str, Any]:
    return {
        "model": "minilm",
        "task": "sequence_classification",
        "data": {"train": {"path": path, "format": fmt}},
    }


def test_importing_tunesmith_fills_the_format_table() -> None:
    assert tunesmith.data.FORMATS is FORMATS and tunesmith.data.readers.FORMATS is FORMATS
    assert "jsonl" in FORMATS and "folder" in FORMATS


@pytest.mark.parametrize("entry", list(FORMATS), ids=lambda e: e.name)
def test_every_format_is_complete(entry) -> None:
    fmt = entry.obj
    assert isinstance(fmt, DataFormat) and callable(fmt.read) and entry.help
    assert all(ext.startswith(".") and ext == ext.lower() for ext in fmt.extensions)
    for ext in fmt.extensions:  # each declared extension infers this format
        assert infer_format(Path(f"data{ext.upper()}")) == entry.name


def test_recipe_format_is_checked_against_the_registry() -> None:
    with pytest.raises(ConfigError, match=r"data\.train\.format: invalid value 'jsnl'") as e:
        parse_recipe(recipe_with_format("jsnl"))
    assert "did you mean 'jsonl'?" in str(e.value)
    with pytest.raises(ConfigError, match=r"data\.dev\.format: invalid value 'xml'") as e:
        parse_recipe(
            {
                "model": "minilm",
                "task": "sequence_classification",
                "data": {"train": "a.jsonl", "dev": {"path": "b.xml", "format": "xml"}},
            }
        )
    assert f"choose one of {FORMATS.names()}" in str(e.value)
    assert parse_recipe(recipe_with_format("label_text")).data.train.format == "label_text"


def read_toy(path: Path, opts: ReadOptions) -> Iterator[dict[str, Any] | Bad]:
    """``label|text`` lines."""
    for i, line in read_lines(path, opts):
        label, sep, text = line.partition("|")
        yield {"label": label, "text": text} if sep else Bad(i, "no '|' between label and text")


@pytest.fixture
def toy_format(monkeypatch):
    monkeypatch.setattr(FORMATS, "_entries", dict(FORMATS._entries))  # restored after the test
    FORMATS.register("toy", DataFormat(read_toy, (".toy",)), "a format registered by a test")
    return "toy"


def test_a_new_format_joins_without_editing_a_list(toy_format, tmp_path: Path, capsys) -> None:
    assert parse_recipe(recipe_with_format(toy_format)).data.train.format == "toy"
    path = tmp_path / "train.TOY"
    path.write_text("pos|good film\nneg|bad film\n", encoding="utf-8")
    assert infer_format(path) == "toy"
    assert read_records(path) == [
        {"label": "pos", "text": "good film"},
        {"label": "neg", "text": "bad film"},
    ]
    assert read_records(path, "toy") == read_records(path)
    path.write_text("pos|good film\nbroken\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.TOY:2: no '\|' between label and text"):
        read_records(path)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "a format registered by a test" in out


def test_an_extension_declared_twice_asks_for_format(toy_format, tmp_path: Path) -> None:
    FORMATS.register("toy2", DataFormat(read_toy, (".toy",)), "the same extension")
    path = tmp_path / "a.toy"
    path.write_text("pos|x\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"several data formats \['toy', 'toy2'\].*set format"):
        read_records(path)
    assert read_records(path, "toy2") == [{"label": "pos", "text": "x"}]


def test_the_toy_format_is_gone_after_the_test() -> None:
    assert "toy" not in FORMATS and "toy2" not in FORMATS

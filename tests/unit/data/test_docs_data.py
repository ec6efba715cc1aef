"""docs/data.md is true: its sample files are read with its recipe sections, giving the records (or
errors) it shows, and it documents every reader and every data option."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from tunesmith.config import parse_recipe
from tunesmith.config.sections import DataConfig, SplitSource
from tunesmith.data import FORMATS
from tunesmith.data.pipeline import check_data, load_raw_splits
from tunesmith.errors import TunesmithError

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "data.md"
BLOCK = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[int, str, dict[str, str], str]]:
    """(line, language, info options such as file=..., body) of every fenced block."""
    text = DOC.read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        opts = dict(kv.split("=", 1) for kv in m.group(2).split())
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1), opts, m.group(3)))
    return out


SAMPLES = [(opts, body) for _, lang, opts, body in blocks() if lang == "text" and "file" in opts]
RECIPES = [(line, body) for line, lang, _, body in blocks() if lang == "yaml"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("docs-data")
    names = [opts["file"] for opts, _ in SAMPLES]
    assert len(names) == len(set(names)), "each sample file in docs/data.md has its own name"
    for opts, body in SAMPLES:
        path = root / opts["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body.encode(opts.get("encoding", "utf-8")))
    return root


@pytest.mark.filterwarnings("ignore::UserWarning")  # on_error: skip warns, as documented
@pytest.mark.parametrize(("line", "body"), RECIPES, ids=[f"line{line}" for line, _ in RECIPES])
def test_recipe_example_reads_as_documented(data_root: Path, line: int, body: str) -> None:
    spec = yaml.safe_load(body)
    first = re.search(r"^# first train record: (.*)$", body, re.MULTILINE)
    error = re.search(r"^# error: (.*)$", body, re.MULTILINE)
    assert bool(first) != bool(error), "each example says what it reads or which error it gives"
    task = spec.pop("task", "sequence_classification")
    data = {"root": str(data_root), **spec.pop("data")}
    if error:
        with pytest.raises(TunesmithError, match=error.group(1)):
            check_data(parse_recipe({"model": "minilm", "task": task, "data": data, **spec}))
        return
    recipe = parse_recipe({"model": "minilm", "task": task, "data": data, **spec})
    check_data(recipe)  # what `tunesmith validate` runs
    assert load_raw_splits(recipe)["train"][0] == json.loads(first.group(1))


def test_every_reader_and_data_option_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in FORMATS.names():
        assert f"| `{name}` |" in text, f"reader {name} missing from the readers table"
    for cls in (DataConfig, SplitSource):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text, f"data option {f.name} missing from docs/data.md"
    assert "docs/data.md" in (ROOT / "README.md").read_text(encoding="utf-8")

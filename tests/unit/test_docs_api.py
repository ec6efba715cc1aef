"""docs/python-api.md is true: its Python blocks run in order (one namespace, like a notebook)
with a tiny BERT in place of the embedded ``minilm`` and a tiny copy of the SST-2 files."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tunesmith.testing import save_tiny_model

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python-api.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
WORDS = {
    "0": "bad sad hate no low dull mess".split(),
    "1": "good happy love yes great witty".split(),
}


def python_blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def write_sst2(root: Path) -> None:
    rng = random.Random(0)
    for split, n in (("train", 48), ("dev", 16), ("test", 16)):
        lines = []
        for i in range(n):
            label = str(i % 2)
            lines.append(f"{label} the film was {' '.join(rng.sample(WORDS[label], 2))}")
        path = root / "sst2_sentences" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def doc_world(tmp_path, monkeypatch) -> Path:
    """A working folder with recipes/sst2_minilm.yaml (its model: the tiny BERT) and the data."""
    model = save_tiny_model(tmp_path / "tiny-bert", "bert", "sequence_classification")
    write_sst2(tmp_path / "data")
    recipe = (ROOT / "recipes" / "sst2_minilm.yaml").read_text(encoding="utf-8")
    recipe = recipe.replace("model: minilm", f"model: {model}")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "sst2_minilm.yaml").write_text(recipe, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNESMITH_DATA", str(tmp_path / "data"))
    return model


def test_the_doc_has_examples():
    assert len(python_blocks()) >= 3


def test_python_examples_run(doc_world, capsys):
    namespace: dict = {}
    for i, block in enumerate(python_blocks()):
        code = block.replace('"minilm"', repr(str(doc_world)))
        exec(compile(code, f"{DOC}:block{i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "True 1 1" in out  # the callback stopped the run at its first evaluation
    assert Path("runs/sst2_api/summary.json").is_file()
    assert Path("runs/sst2_object/best/config.json").is_file()
    assert json.loads(Path("runs/sst2_datasets/summary.json").read_text())["train_examples"] == 40
    assert namespace["summary"]["steps"] > 1 and Path("runs/sst2_stop/summary.json").is_file()

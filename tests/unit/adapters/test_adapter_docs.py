"""docs/adapters.md: every Python example in it runs and its assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "adapters.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


# what each example prints, in order
PRINTS = [
    "trainable%:",
    "was saved from base model",
    "fusion attention per layer:",
    "per-example logits:",
]


def test_the_doc_has_the_examples():
    assert len(BLOCKS) == len(PRINTS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, capsys):
    exec(compile(BLOCKS[index], f"{DOC.name}[python block {index}]", "exec"), {})
    assert PRINTS[index] in capsys.readouterr().out

"""JSON records: ``jsonl`` (one object per line) and ``json`` (a list of objects)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith.data.readers import Bad, DataFormat, ReadOptions, Row, read_lines, read_text
from tunesmith.registry import FORMATS


def read_jsonl(path: Path, opts: ReadOptions) -> Iterator[Row | Bad]:
    """One JSON object per non-blank line."""
    for i, line in read_lines(path, opts):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield Bad(i, f"invalid JSON ({e.msg} at column {e.colno})")
            continue
        yield (
            Row(obj, i)
            if isinstance(obj, dict)
            else Bad(i, f"expected a JSON object, got {obj!r:.40}")
        )


def read_json(path: Path, opts: ReadOptions) -> Iterator[dict[str, Any] | Bad]:
    """A whole-file JSON list of objects."""
    text = read_text(path, opts.encoding)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        yield Bad(e.lineno, f"invalid JSON ({e.msg} at column {e.colno})")
        return
    if not isinstance(data, list):
        yield Bad(1, "expected a JSON list of objects (use .jsonl for one object per line)")
        return
    for n, obj in enumerate(data):
        # json keeps no line numbers; name the item instead.
        yield obj if isinstance(obj, dict) else Bad(1, f"item {n} is not an object: {obj!r:.40}")


FORMATS.register("jsonl", DataFormat(read_jsonl, (".jsonl",)), "one JSON object per line")
FORMATS.register("json", DataFormat(read_json, (".json",)), "a JSON list of objects")

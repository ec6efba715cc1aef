"""``label_text``: ``<label> <text>`` or ``<text>;<label>`` lines (TREC, emotion, SST-style)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tunesmith.data.readers import Bad, DataFormat, ReadOptions, Row, read_lines
from tunesmith.errors import ConfigError
from tunesmith.registry import FORMATS


def read_label_text(path: Path, opts: ReadOptions) -> Iterator[Row | Bad]:
    """One ``{"label", "text"}`` record per non-blank line; no extension is inferred (``.txt``
    is too common), so recipes name this format."""
    sep = opts.separator
    if opts.label_position == "last" and not sep:
        raise ConfigError("separator", "label_position 'last' needs a separator (e.g. ';')")
    skip_header = bool(opts.header)
    for i, line in read_lines(path, opts):
        if not line.strip():
            continue
        if skip_header:
            skip_header = False
            continue
        if opts.label_position == "first":
            parts = line.strip().split(sep, 1) if sep else line.strip().split(None, 1)
            label, text = (parts + [""])[:2]
        else:
            assert sep is not None
            if sep not in line:
                yield Bad(i, f"no {sep!r} separator between text and label")
                continue
            text, _, label = line.rpartition(sep)
        if opts.label_sep and opts.label_sep in label:
            label = label.split(opts.label_sep, 1)[0]
        label, text = label.strip(), text.strip()
        if not label:
            yield Bad(i, "missing label")
        elif not text:
            where = "after" if opts.label_position == "first" else "before"
            yield Bad(i, f"empty text {where} the label (separator {sep or 'whitespace'!r})")
        else:
            yield Row({"label": label, "text": text}, i)


FORMATS.register(
    "label_text", DataFormat(read_label_text), "'<label> <text>' or '<text>;<label>' lines"
)

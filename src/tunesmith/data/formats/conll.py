"""``conll``: ``token<TAB>tag`` lines, a blank line between sentences (token classification).

Also reads CoNLL-2003's space-separated ``token POS chunk tag`` lines (the token is the first
column, the tag the last) and drops its ``-DOCSTART-`` document separators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tunesmith.data.readers import Bad, DataFormat, ReadOptions, Row, read_lines
from tunesmith.registry import FORMATS


def read_conll(path: Path, opts: ReadOptions) -> Iterator[Row | Bad]:
    """One ``{"tokens": [...], "tags": [...]}`` record per sentence; token first, tag last column."""
    tokens: list[str] = []
    tags: list[str] = []
    bad: Bad | None = None
    start = 0  # line of the sentence's first token: token k is on line start + k
    for i, line in read_lines(path, opts):
        line = line.replace("\ufeff", "")  # a stray BOM line ends WNUT-17's dev.conll
        if not line.strip():
            if bad is not None:
                yield bad  # a broken line invalidates its whole sentence
            elif tokens:
                yield Row({"tokens": tokens, "tags": tags}, start)
            tokens, tags, bad = [], [], None
            continue
        if line.startswith("-DOCSTART-"):
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) < 2 or not cols[0] or not cols[-1].strip():
            bad = bad or Bad(i, "expected 'token<TAB>tag' (token first, tag last column)")
            continue
        start = start if tokens else i
        tokens.append(cols[0])
        tags.append(cols[-1].strip())
    if bad is not None:
        yield bad
    elif tokens:
        yield Row({"tokens": tokens, "tags": tags}, start)


FORMATS.register(
    "conll",
    DataFormat(read_conll, (".conll",)),
    "token<TAB>tag lines (or CoNLL-2003 'token POS chunk tag'), blank line between sentences",
)

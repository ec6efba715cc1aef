"""Delimited text: ``csv`` and ``tsv`` (header row gives the keys, or ``columns``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith.data.readers import Bad, DataFormat, ReadOptions, Row, read_text
from tunesmith.registry import FORMATS


def read_delimited(path: Path, opts: ReadOptions, default_delimiter: str) -> Iterator[Any]:
    """Rows of ``default_delimiter`` (or ``opts.delimiter``) separated fields as records."""
    text = read_text(path, opts.encoding)
    rows = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=opts.delimiter or default_delimiter,
        quoting=csv.QUOTE_MINIMAL if opts.quoting else csv.QUOTE_NONE,
    )
    names = opts.columns
    header_pending = opts.header if opts.header is not None else True
    try:
        for row in rows:
            line = rows.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header_pending:
                header_pending = False
                if names is None:  # explicit columns replace the header row's names
                    names = [c.strip() for c in row]
                continue
            if names is None:
                names = [f"col{k}" for k in range(len(row))]
            if len(row) != len(names):
                yield Bad(line, f"expected {len(names)} columns {names}, found {len(row)}")
                continue
            yield Row(dict(zip(names, row, strict=True)), line)
    except csv.Error as e:
        yield Bad(rows.line_num, f"unparseable row ({e}); try quoting: false")


def read_csv(path: Path, opts: ReadOptions) -> Iterator[Any]:
    return read_delimited(path, opts, ",")


def read_tsv(path: Path, opts: ReadOptions) -> Iterator[Any]:
    return read_delimited(path, opts, "\t")


FORMATS.register(
    "csv", DataFormat(read_csv, (".csv",)), "comma-separated; header row gives keys (else columns)"
)
FORMATS.register(
    "tsv", DataFormat(read_tsv, (".tsv",)), "tab-separated; header row gives keys (else columns)"
)
